"""Fine-tune a pretrained encoder (any family in `cache.data.families`) into a task teacher (a
classification or regression head).

The packaged MiniLM has no task head; TinyBERT's task-specific distillation needs a fine-tuned
teacher. This recipe shares tokenisation, padding, optimiser, schedule and evaluation with the
student trainer and writes a plain `save_pretrained` folder that `dump-teacher --teacher` takes.
"""

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModelForSequenceClassification

from cache.data.checkpoints import (
    TaskHead,
    check_length,
    default_teacher_path,
    load_config,
    load_tokenizer,
    record_head,
)
from cache.data.evaluate import evaluate
from cache.data.families import forward_inputs
from cache.data.readers import canonical_task, evaluation_columns, load_examples, resolve_data_file
from cache.data.tokenize import tokenize
from cache.runtime.device import resolve_device
from cache.runtime.errors import UserError
from cache.runtime.log import RunLog
from cache.runtime.precision import autocast, resolve_precision
from cache.runtime.records import save_model, write_record
from cache.runtime.schedule import linear_schedule, seed_everything
from cache.teacher.config import FinetuneConfig


def finetune_teacher(config: FinetuneConfig, command: str, progress: bool = True) -> dict:
    """Fine-tune, evaluate on the dev split after each epoch, save; returns the last evaluation."""
    config.check()
    seed_everything(config.seed)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    base = config.base or default_teacher_path()
    train = load_examples(config.task, config.data, "train", limit=config.limit)
    dev = _dev_examples(config, train.label_names)
    if train.labels is None:
        raise UserError(f"{train.path}: no labels to fine-tune on")
    base_config = load_config(base, "--base")
    check_length(base_config, config.max_seq_len, f"--base: {base}")
    tokenizer = load_tokenizer(base, "--base", base_config)
    names = train.label_names
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=1 if names is None else len(names),
        problem_type="regression" if names is None else "single_label_classification").to(device)
    tokens = tokenize(train, tokenizer, config.max_seq_len)
    steps = config.epochs * -(-len(train) // config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  fused=device.type == "cuda")
    scheduler = linear_schedule(optimizer, steps, int(config.warmup * steps))
    config.out.mkdir(parents=True, exist_ok=True)
    log = RunLog(config.out, tensorboard=False)
    log.path.unlink(missing_ok=True)  # left by an interrupted run
    rng, metrics = np.random.default_rng(config.seed), {}
    bar = tqdm(total=steps, desc="finetune-teacher", unit="step", disable=not progress, dynamic_ncols=True)
    for epoch in range(config.epochs):
        model.train()
        order = rng.permutation(len(train))
        for batch in np.split(order, range(config.batch_size, len(order), config.batch_size)):
            loss = _step(model, tokens, batch, train.labels, device, precision)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            bar.update(1)
            if bar.n % 50 == 0:  # reading the loss syncs a GPU
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if dev is not None:
            metrics = evaluate(model, tokenizer, dev, config.max_seq_len)
            log.write({"epoch": epoch + 1, "eval": metrics})
    bar.close()
    record_head(model.config, TaskHead(train.task, train.label_names, trained=True))
    save_model(config.out, model, tokenizer)
    write_record(config.out / "finetune_config.json", config, command, base_resolved=base,
                 precision_resolved=precision)
    return metrics


def _dev_examples(config: FinetuneConfig, label_names: tuple[str, ...] | None):
    """The dev split beside the training file, its labels mapped by the training data's class
    names; None without one (a single --data file has no dev split: the run is not evaluated)."""
    if Path(config.data).is_file():
        return None
    try:
        resolve_data_file(canonical_task(config.task), Path(config.data), config.eval_split)
    except UserError:
        return None  # no dev file beside the training data: train without evaluating
    return load_examples(config.task, config.data, config.eval_split, columns=evaluation_columns(None, label_names))


def _step(model, tokens, batch: np.ndarray, labels: np.ndarray, device: torch.device,
          precision: str) -> torch.Tensor:
    ids, types, mask = tokens.padded(batch)
    targets = torch.from_numpy(labels[batch])
    with autocast(precision, device):
        out = model(**forward_inputs(model, ids.to(device), types.to(device), mask.long().to(device)),
                    labels=targets.to(device))
    return out.loss
