"""Student models (plain Hugging Face BertForSequenceClassification) and the W_e / W_h projections.

Building and projecting; a student initialised from teacher layers comes from `init-student`
(cache/init_student.py) as a checkpoint folder, so training never loads a teacher.
"""

from pathlib import Path

from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from cache.errors import UserError
from student.config import StudentShape


def build_student(student: StudentShape | Path, teacher_config: dict, num_labels: int) -> BertForSequenceClassification:
    """A student on the teacher's vocabulary, from a shape (random init) or a checkpoint folder."""
    if isinstance(student, Path):
        # a head of another size (a general student, another task) starts afresh: the prediction stage trains it
        model = BertForSequenceClassification.from_pretrained(student, num_labels=num_labels,
                                                              ignore_mismatched_sizes=True)
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


class Projections(nn.Module):
    """W_e (embeddings) and W_h (hidden states): student width -> teacher width.

    Separate by default, as in the paper; `shared=True` uses one matrix for both, as the
    reference code's `fit_dense` does.
    """

    def __init__(self, student_width: int, teacher_width: int, shared: bool = False):
        super().__init__()
        self.hidden = nn.Linear(student_width, teacher_width)
        self.embedding = self.hidden if shared else nn.Linear(student_width, teacher_width)
