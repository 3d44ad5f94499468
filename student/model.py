"""Student models (plain Hugging Face models of the teacher's family, `cache.data.families`) and the
W_e / W_h projections.

Building and projecting; a student initialised from teacher layers comes from `init-student`
(cache/teacher/init_student.py) as a checkpoint folder, so training never loads a teacher.
"""

import json
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PreTrainedModel

from cache.data.families import family_of
from cache.runtime.errors import UserError, describe
from student.config import PROJECTION_SHARING, StudentShape

PROJECTIONS_FILE = "projections.pt"
REFERENCE_WEIGHTS = "pytorch_model.bin"
"""Where the reference TinyBERT code saves a student: BERT weights plus `fit_dense` (one projection
for everything) or `fit_denses.<m>` (one per layer m = 0..M)."""


def build_student(student: StudentShape | Path, teacher_config: dict, num_labels: int,
                  head: bool = True) -> PreTrainedModel:
    """A student on the teacher's vocabulary, from a shape (random init: a model of the teacher's
    family) or a checkpoint folder; without `head`, the bare encoder that general distillation trains."""
    if isinstance(student, Path):
        model = _load_checkpoint(student, num_labels, head)
        if model.config.vocab_size != teacher_config["vocab_size"]:
            raise UserError(f"--student: {student} has a vocabulary of {model.config.vocab_size}, "
                            f"the cache's tokenizer {teacher_config['vocab_size']}")
        return model
    model_type = teacher_config["model_type"]
    family = family_of(AutoConfig.for_model(model_type), "--cache")
    config = AutoConfig.for_model(model_type, **family.student_config(
        teacher_config, student.layers, student.hidden, student.ffn, student.heads))
    config.num_labels = num_labels
    return AutoModelForSequenceClassification.from_config(config) if head else AutoModel.from_config(config)


FRESH_PARTS = ("classifier", "pre_classifier", "pooler")
"""What a checkpoint student may lack, or hold in another size: a task head (a general student has
none; another task's has other outputs) starts afresh, and the prediction stage trains it."""


def _load_checkpoint(folder: Path, num_labels: int, head: bool) -> PreTrainedModel:
    """The checkpoint's weights, every one of them but the head's: a config whose sizes differ from
    its weights is refused, not re-initialised."""
    model_class = AutoModelForSequenceClassification if head else AutoModel
    options = {"num_labels": num_labels} if head else {}
    try:
        kind = json.loads((folder / "config.json").read_text()).get("model_type", "bert")  # the reference code: none
        config = type(AutoConfig.for_model(kind)).from_pretrained(folder, **options)
        model, info = model_class.from_pretrained(folder, config=config, ignore_mismatched_sizes=True,
                                                  output_loading_info=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"--student: {folder} cannot be loaded ({describe(e)})") from None
    redone = [*info["missing_keys"], *(key for key, *_ in info["mismatched_keys"])]
    unfit = sorted(key for key in redone if not set(key.split(".")[:2]) & set(FRESH_PARTS))
    if unfit:
        raise UserError(f"--student: {folder}: {len(unfit)} weights are missing or of another size than its "
                        f"config.json says ({', '.join(unfit[:3])}{', ...' if len(unfit) > 3 else ''}); only a task "
                        "head may start afresh")
    return model


class Projections(nn.Module):
    """Student width -> teacher width for each matched student layer m = 0..M (0: embeddings).

    `separate` (the paper): W_e, and one W_h shared by every layer; `shared` (the reference code's
    `fit_dense`): one matrix for all; `per-layer` (`fit_denses`): one per layer. Layer m uses map
    min(m, maps - 1), which gives all three.

    A student of the teacher's width starts with identity maps: one copied from teacher layers
    (`init-student`) already matches them, and a random map would make its first steps undo that.
    """

    def __init__(self, student_width: int, teacher_width: int, student_layers: int, sharing: str = "separate"):
        super().__init__()
        count = {"separate": 2, "shared": 1, "per-layer": student_layers + 1}[sharing]
        self.sharing = sharing
        maps = [nn.Linear(student_width, teacher_width) for _ in range(count)]
        if student_width == teacher_width:
            for linear in maps:
                nn.init.eye_(linear.weight)
                nn.init.zeros_(linear.bias)
        self.maps = nn.ModuleList(maps)

    def layer(self, m: int) -> nn.Linear:
        return self.maps[min(m, len(self.maps) - 1)]  # type: ignore[return-value]

    def save(self, folder: Path) -> None:
        torch.save({"sharing": self.sharing, "state": self.state_dict()}, folder / PROJECTIONS_FILE)


def saved_projections(folder: Path) -> tuple[str, dict] | None:
    """(sharing, state dict) of the projections saved with a student, or None when it has none:
    ours (projections.pt), else the reference code's `fit_dense` / `fit_denses` in its weights."""
    try:
        if (folder / PROJECTIONS_FILE).is_file():
            saved = torch.load(folder / PROJECTIONS_FILE, weights_only=True)
            return saved["sharing"], saved["state"]
        if (folder / REFERENCE_WEIGHTS).is_file():
            return _reference_projections(torch.load(folder / REFERENCE_WEIGHTS, weights_only=True))
    except Exception as e:  # noqa: BLE001 - a damaged file fails in many ways; all mean the same
        raise UserError(f"--student: the projections in {folder} cannot be read ({describe(e)}); "
                        "add --fresh-projections to start new ones") from None
    return None


def _reference_projections(weights: dict) -> tuple[str, dict] | None:
    if "fit_dense.weight" in weights:
        return "shared", {f"maps.0.{p}": weights[f"fit_dense.{p}"] for p in ("weight", "bias")}
    layers = sorted({int(key.split(".")[1]) for key in weights if key.startswith("fit_denses.")})
    if not layers:
        return None
    return "per-layer", {f"maps.{m}.{p}": weights[f"fit_denses.{m}.{p}"] for m in layers for p in ("weight", "bias")}


def load_projections(student: StudentShape | Path, student_width: int, teacher_width: int, student_layers: int,
                     requested: str | None, fresh: bool) -> Projections:
    """The student folder's projections unless `fresh` (or it has none); new ones of the requested
    sharing otherwise. Saved projections of another sharing or width are refused, not reshaped."""
    saved = saved_projections(student) if isinstance(student, Path) and not fresh else None
    if saved is None:
        return Projections(student_width, teacher_width, student_layers, requested or PROJECTION_SHARING[0])
    sharing, state = saved
    if requested is not None and requested != sharing:
        raise UserError(f"--projections {requested}: {student} holds {sharing} projections; add --fresh-projections "
                        "to start new ones")
    projections = Projections(student_width, teacher_width, student_layers, sharing)
    expected = {name: tuple(p.shape) for name, p in projections.state_dict().items()}
    found = {name: tuple(p.shape) for name, p in state.items()}
    if found != expected:
        raise UserError(f"--student: the projections in {student} do not fit a {student_layers}-layer student of "
                        f"width {student_width} and a teacher of width {teacher_width}; add --fresh-projections")
    projections.load_state_dict(state)
    return projections
