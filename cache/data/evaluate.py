"""Evaluate a sequence classifier (any saved student or teacher, PyTorch or exported) on a task split."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cache.data.checkpoints import check_head, check_length, load_config, load_tokenizer, recorded_head
from cache.data.families import forward_inputs
from cache.data.metrics import glue_metrics
from cache.data.readers import Examples, evaluation_columns, load_examples
from cache.data.served import load_classifier, served_format
from cache.data.tasks import GLUE_TASKS
from cache.data.tokenize import tokenize
from cache.runtime.device import resolve_device
from cache.runtime.errors import UserError
from cache.runtime.paths import model_folder


def metric_for(task: str) -> str:
    return GLUE_TASKS[task].metric if task in GLUE_TASKS else "accuracy"


@torch.inference_mode()
def predict(model, tokenizer, examples: Examples, max_seq_len: int, batch_size: int = 128) -> np.ndarray:
    """Logits (n, C) for every example, in batches sorted by length; `model` a PyTorch model or an
    `OnnxClassifier`."""
    tokens = tokenize(examples, tokenizer, max_seq_len)
    device = model.device
    was_training = model.training
    model.eval()
    order = np.argsort(tokens.lengths, kind="stable")
    out = np.empty((len(order), model.config.num_labels), np.float32)
    for batch in np.split(order, range(batch_size, len(order), batch_size)):
        ids, types, mask = tokens.padded(batch)
        logits = model(**forward_inputs(model, ids.to(device), types.to(device), mask.long().to(device))).logits
        out[batch] = logits.float().cpu().numpy()
    model.train(was_training)
    return out


def evaluate(model, tokenizer, examples: Examples, max_seq_len: int) -> dict[str, float]:
    if examples.labels is None:
        raise UserError(f"{examples.path}: no labels to evaluate against")
    return glue_metrics(metric_for(examples.task), predict(model, tokenizer, examples, max_seq_len), examples.labels)


@dataclass(frozen=True)
class SavedClassifier:
    """A model folder checked against the task it is to score: config, tokenizer and head fit."""

    folder: Path
    config: object
    tokenizer: object

    @classmethod
    def check(cls, folder: Path, examples: Examples, max_seq_len: int, option: str = "--model") -> "SavedClassifier":
        """Everything but the weights, so that every model of a comparison is checked before any work."""
        if examples.labels is None:
            raise UserError(f"{examples.path}: no labels to evaluate against")
        folder = model_folder(folder, option)
        config = load_config(folder, option)
        check_head(config, examples, f"{option}: {folder}")
        check_length(config, max_seq_len, f"{option}: {folder}")
        return cls(folder, config, load_tokenizer(folder, option, config))

    def load(self, threads: int | None = None):
        """The PyTorch model, or ONNX Runtime's for an exported folder (`threads` per operator)."""
        return load_classifier(self.folder, self.config, threads)


def examples_to_score(task: str, data: Path, split: str, folder: Path, option: str) -> Examples:
    """A split to score a saved model on: its gold labels mapped by the class names the model was
    trained on (recorded in its config), not by their order in this file."""
    head = recorded_head(load_config(model_folder(folder, option), option))
    return load_examples(task, data, split, columns=evaluation_columns(None, head.label_names if head else None))


def evaluate_saved(model_dir: Path, task: str, data: Path, split: str, max_seq_len: int) -> dict:
    """Load a saved sequence classifier (PyTorch on the best device, or an export on ONNX Runtime)
    with its tokenizer and evaluate it."""
    examples = examples_to_score(task, data, split, model_dir, "--model")
    saved = SavedClassifier.check(model_dir, examples, max_seq_len)
    served = served_format(saved.folder)
    model = saved.load() if served != "pytorch" else saved.load().to(resolve_device("auto"))
    metrics = evaluate(model, saved.tokenizer, examples, max_seq_len)
    return {"model": str(saved.folder), "format": served, "task": examples.task, "data": str(examples.path),
            "split": split, "examples": len(examples), **metrics}
