"""Online distillation: the baseline that the cache is measured against.

`OnlineTargets` gives the trainer the same batches, in the same order, as `CachedTargets`, but the
teacher computes them at every step, as the reference code and TextBrewer do. Everything else
(losses, optimiser, schedule, seeds) is the trainer's own code, so a cached and an online run
differ only in where the targets come from (and the cache's float16 rounding).
"""

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import torch

from cache.data.readers import load_examples
from cache.read.decode import probabilities_from_scores
from cache.runtime.kinds import AttentionKind, Capture
from cache.teacher.dump import DumpConfig, prepare_dump
from cache.teacher.runner import teacher_forward
from student.stream import Batch, BatchOrder, BatchTotals


class OnlineTargets:
    """Targets from a live teacher, planned exactly as `dump-teacher` would store them."""

    def __init__(self, config: DumpConfig):
        examples = load_examples(config.task, config.data, config.split, columns=config.columns, limit=config.limit)
        prepared = prepare_dump(config, examples, command="online")
        self.model, self._tokenizer = prepared.model, prepared.tokenizer
        self.tokens, self.device = prepared.tokens, prepared.device
        self.block_starts, self.labels = prepared.block_starts, examples.labels
        self.manifest = replace(prepared.manifest, complete=True)

    def load_tokenizer(self):
        return self._tokenizer

    def batches(self, order: BatchOrder, epoch: int, skip: int, workers: int, device: torch.device,
                attention: Capture | None, intermediate: bool) -> Iterator[Batch]:
        """Same windows and batches as the cache stream, attention as the kind `attention`; the
        teacher runs for each (workers unused) and hands over its layers only for the intermediate
        stage."""
        softmax = attention == AttentionKind.PROBS and self.manifest.geometry.decodes_to == AttentionKind.SCORES
        done = 0
        for w, blocks in enumerate(order.windows(epoch)):
            window = np.concatenate([np.arange(self.block_starts[k], self.block_starts[k + 1]) for k in blocks])
            for rows in order.batches(epoch, w, blocks):
                done += 1
                if done > skip:
                    yield self._batch(window[rows], device, softmax, intermediate)

    def _batch(self, indices: np.ndarray, device: torch.device, softmax: bool, intermediate: bool) -> Batch:
        ids, types, mask = (t.to(self.device) for t in self.tokens.padded(indices))
        out = teacher_forward(self.model, ids, types, mask.long())
        hidden = {n: out.hidden[n].float().clone().to(device) for n in self.manifest.layers if intermediate}
        attention = {n: out.attention[n - 1].float().clone().to(device) for n in self.manifest.attention_layers
                     if intermediate}
        if softmax:
            windows = self.manifest.geometry.window
            attention = {n: probabilities_from_scores(a, mask.to(device), windows(n)) for n, a in attention.items()}
        return Batch(
            input_ids=ids.to(device), token_type_ids=types.to(device), mask=mask.to(device),
            labels=torch.from_numpy(self.labels[indices]).to(device) if self.labels is not None else None,
            logits=out.logits.float().clone().to(device) if out.logits is not None else None,
            hidden=hidden, attention=attention, totals=BatchTotals.of(self.tokens.lengths[indices]),
        )
