"""Student models (plain Hugging Face BertForSequenceClassification) and the W_e / W_h projections.

Only the math lives here: building, initialising and projecting. No I/O beyond from_pretrained.
"""

from pathlib import Path

from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from cache.errors import UserError, describe
from student.config import StudentShape


def build_student(student: StudentShape | Path, teacher_config: dict, num_labels: int) -> BertForSequenceClassification:
    """A student on the teacher's vocabulary, from a shape (random init) or a checkpoint folder."""
    if isinstance(student, Path):
        model = BertForSequenceClassification.from_pretrained(student, num_labels=num_labels)
        if model.config.vocab_size != teacher_config["vocab_size"]:
            raise UserError(f"--student: {student} has a vocabulary of {model.config.vocab_size}, "
                            f"the cache's tokenizer {teacher_config['vocab_size']}")
        return model
    config = BertConfig(
        vocab_size=teacher_config["vocab_size"],
        type_vocab_size=teacher_config.get("type_vocab_size", 2),
        max_position_embeddings=teacher_config.get("max_position_embeddings", 512),
        pad_token_id=teacher_config.get("pad_token_id", 0),
        num_hidden_layers=student.layers, hidden_size=student.hidden, intermediate_size=student.ffn,
        num_attention_heads=student.heads,
    )
    config.num_labels = num_labels
    return BertForSequenceClassification(config)


def init_from_teacher(student: BertForSequenceClassification, teacher_dir: str, layer_map: list[int]) -> None:
    """Copy the teacher's embeddings and its layers g(1..M) into the student (same widths only)."""
    from transformers import AutoModel

    try:
        teacher = AutoModel.from_pretrained(teacher_dir)
    except (OSError, ValueError) as e:
        raise UserError(f"--init teacher: the cache's teacher {teacher_dir} cannot be loaded ({describe(e)}); "
                        "use --init random or a --student checkpoint") from None
    s, t = student.config, teacher.config
    if (s.hidden_size, s.intermediate_size, s.num_attention_heads) != (t.hidden_size, t.intermediate_size,
                                                                       t.num_attention_heads):
        raise UserError(f"--init teacher: student (d={s.hidden_size}, d'={s.intermediate_size}, "
                        f"h={s.num_attention_heads}) "
                        f"and teacher (d={t.hidden_size}, d'={t.intermediate_size}, h={t.num_attention_heads}) differ")
    student.bert.embeddings.load_state_dict(teacher.embeddings.state_dict())
    for m, n in enumerate(layer_map):
        student.bert.encoder.layer[m].load_state_dict(teacher.encoder.layer[n - 1].state_dict())


class Projections(nn.Module):
    """W_e (embeddings) and W_h (hidden states): student width -> teacher width.

    Separate by default, as in the paper; `shared=True` uses one matrix for both, as the
    reference code's `fit_dense` does.
    """

    def __init__(self, student_width: int, teacher_width: int, shared: bool = False):
        super().__init__()
        self.hidden = nn.Linear(student_width, teacher_width)
        self.embedding = self.hidden if shared else nn.Linear(student_width, teacher_width)
