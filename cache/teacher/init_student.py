"""A student initialised from teacher layers, written as an ordinary checkpoint folder.

Copying the teacher's embeddings and its layers g(1..M) into a student of the teacher's width is
the teacher-side half of what the reference code's general distillation provides: a starting point
far better than random weights for a student distilled from a small cache. Done here, once, so
that `train-student --student FOLDER` starts from it without ever loading the teacher.
"""

import shlex
import sys
from operator import attrgetter
from pathlib import Path

import torch
from transformers import AutoModel, AutoModelForSequenceClassification

from cache.data.checkpoints import TaskHead, load_config, load_tokenizer, record_head, recorded_head
from cache.data.families import family_of
from cache.runtime.errors import UserError
from cache.runtime.layer_map import resolve_layer_map
from cache.runtime.records import write_record
from cache.teacher.config import InitConfig

INIT_RECORD = "init_config.json"


def init_student(config: InitConfig, command: str | None = None) -> list[int]:
    """Write the student into `config.out`; returns the layer map used."""
    config.check()
    teacher_config = load_config(config.teacher, "--teacher")
    family = family_of(teacher_config, f"--teacher: {config.teacher}")
    tokenizer = load_tokenizer(config.teacher, "--teacher", teacher_config)
    layer_map = resolve_layer_map(config.layer_map, config.layers, teacher_config.num_hidden_layers)
    try:
        teacher = AutoModel.from_pretrained(config.teacher, **family.encoder_options())
    except (OSError, ValueError) as e:
        raise UserError(f"--teacher: {config.teacher} cannot be loaded ({e})") from None
    shape: dict[str, object] = {family.size_names[0]: len(layer_map)}
    if getattr(teacher_config, "layer_types", None):  # each copied layer keeps its attention, global or local
        shape["layer_types"] = [teacher_config.layer_types[n - 1] for n in layer_map]
    student_config = type(teacher_config)(**(teacher_config.to_dict() | shape))
    torch.manual_seed(config.seed)
    student = AutoModelForSequenceClassification.from_config(student_config)
    encoder, layers = student.base_model, attrgetter(family.layers)
    for name in family.shared_parts:
        source, target = _part(teacher, name), _part(encoder, name)
        if source is not None and target is not None:
            target.load_state_dict(source.state_dict())
    for m, n in enumerate(layer_map):
        _copy_layer(layers(teacher)[n - 1], layers(encoder)[m])
    head = recorded_head(teacher_config)
    record_head(student.config, TaskHead(head.task if head else "none", head.label_names if head else None,
                                         trained=False))
    student.save_pretrained(config.out)
    tokenizer.save_pretrained(config.out)
    write_record(Path(config.out) / INIT_RECORD, config, command or shlex.join(sys.argv), layer_map=layer_map)
    return layer_map


def _part(module: torch.nn.Module, name: str) -> torch.nn.Module | None:
    """The submodule at a dotted `name`, None where this model has none (an ELECTRA without a
    projection, a model without relative positions)."""
    try:
        return attrgetter(name)(module)
    except AttributeError:
        return None


INPUT_NORM = "attn_norm."
"""A pre-norm (ModernBERT) layer's input norm, which its first layer lacks: the embedding output
comes normalised. A deeper layer copied first leaves its norm behind; teacher layer 1 copied deeper
starts a fresh one."""


def _copy_layer(source: torch.nn.Module, target: torch.nn.Module) -> None:
    copied = target.load_state_dict(source.state_dict(), strict=False)
    unfit = [key for key in (*copied.missing_keys, *copied.unexpected_keys) if not key.startswith(INPUT_NORM)]
    if unfit:
        raise RuntimeError(f"a teacher layer does not fit the student's: {', '.join(unfit[:3])}")
