"""The layer map g(m): which teacher layer each student layer learns from (Jiao et al., 2020, 3.1).

Shared by both sides: the trainer matches layers through it, and `init-student` copies the teacher
layers it names into a new student.
"""

from cache.runtime.errors import UserError


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """g(m) = m * N / M for m = 1..M (rounded down when M does not divide N)."""
    return [m * teacher_layers // student_layers for m in range(1, student_layers + 1)]


def resolve_layer_map(text: str, student_layers: int | None, teacher_layers: int) -> list[int]:
    """g(1..M) from `uniform` or an explicit list (which may start with g(0) = 0). `student_layers`
    None takes M from the list's length."""
    if text == "uniform":
        if student_layers is None:
            raise UserError("--layer-map uniform needs the number of student layers (--layers)")
        if student_layers > teacher_layers:
            raise UserError(f"--layer-map uniform: a student of {student_layers} layers is deeper than the teacher's "
                            f"{teacher_layers}; give fewer layers, or an explicit --layer-map (layers may repeat)")
        return uniform_layer_map(student_layers, teacher_layers)
    try:
        layers = [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--layer-map: {text!r} is not 'uniform' or a list of teacher layers") from None
    if layers and layers[0] == 0 and len(layers) == (student_layers or len(layers) - 1) + 1:
        layers = layers[1:]
    expected = student_layers if student_layers is not None else len(layers)
    if not layers or len(layers) != expected or not all(1 <= n <= teacher_layers for n in layers):
        raise UserError(f"--layer-map: need {expected} teacher layers in 1..{teacher_layers} "
                        f"(one per student layer), got {text!r}")
    return layers
