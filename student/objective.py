"""The objective: TinyBERT's loss terms composed over the layer map, as one module DDP wraps
(`Distiller`), and the held-out losses that evaluate the intermediate stages."""

import functools
import math
import operator
from collections.abc import Iterable, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel

from cache.data.families import forward_inputs
from cache.runtime.distributed import Ranks, sum_over_ranks
from cache.runtime.errors import UserError
from cache.runtime.precision import autocast
from student.losses import attention_mse, hidden_mse, regression_mse, soft_cross_entropy
from student.model import Projections
from student.setup import Run
from student.stream import Batch, BatchOrder


class Distiller(torch.nn.Module):
    """The student and its projections as one module whose forward returns the loss parts: what
    DDP wraps, so that its gradient hooks cover the projections (used after the student's forward)."""

    def __init__(self, run: Run):
        super().__init__()
        self.student, self.projections = run.student, run.projections
        self.run = [run]  # in a list: not a submodule

    def forward(self, batch: Batch, intermediate: bool) -> dict[str, torch.Tensor]:
        run = self.run[0]
        inputs = forward_inputs(self.student, batch.input_ids, batch.token_type_ids, batch.mask.long())
        out = self.student(**inputs, output_hidden_states=intermediate, output_attentions=intermediate)
        if intermediate:
            parts = intermediate_losses(out.hidden_states, out.attentions, batch, run.layer_map, run.weights,
                                        self.projections, run.windows)
        else:
            parts = prediction_losses(out.logits, batch, run.regression, run.config.temperature, run.weights[-1])
        return parts if batch.counts else {name: value * 0 for name, value in parts.items()}


def distiller_of(run: Run) -> torch.nn.Module:
    """The module a step calls: the `Distiller`, wrapped by DDP under torchrun."""
    distiller = Distiller(run)
    if not run.ranks.distributed:
        return distiller
    return DistributedDataParallel(distiller, device_ids=[run.device.index] if run.device.type == "cuda" else None,
                                   find_unused_parameters=True)  # a stage leaves the projections or the head unused


def intermediate_losses(hidden: Sequence[torch.Tensor], attention: Sequence[torch.Tensor], batch: Batch,
                        layer_map: list[int], weights: list[float], projections: Projections,
                        windows: dict[int, int | None]) -> dict[str, torch.Tensor]:
    """lambda_0 L_embd + sum_m lambda_m (L_hidn + L_attn), as named parts.

    hidden: the student's M+1 hidden states (B, L, d'), embeddings first; attention: its M maps
    (B, h, L, L); layer_map: g(1..M); weights: lambda_0..lambda_{M+1}; windows: the attention
    window of each mapped teacher layer (None: global).
    """
    mask, pairs, totals = batch.mask, list(enumerate(layer_map, start=1)), batch.totals
    embd = weights[0] * hidden_mse(hidden[0].float(), batch.hidden[0], mask, projections.layer(0), totals.tokens)
    hidn = total(weights[m] * hidden_mse(hidden[m].float(), batch.hidden[n], mask, projections.layer(m),
                                          totals.tokens) for m, n in pairs)
    attn = total(weights[m] * attention_mse(attention[m - 1].float(), batch.attention[n], mask, totals.pairs,
                                            windows[n]) for m, n in pairs)
    return {"embd": embd, "hidn": hidn, "attn": attn}


def prediction_losses(logits: torch.Tensor, batch: Batch, regression: bool, temperature: float,
                      weight: float) -> dict[str, torch.Tensor]:
    """lambda_{M+1} L_pred: soft cross-entropy on the teacher's logits (MSE for regression). logits: (B, C)."""
    if batch.logits is None:
        raise UserError("the cache has no teacher logits for the prediction stage")
    targets = batch.logits
    examples = batch.totals.examples
    loss = regression_mse(logits.float(), targets, examples) if regression else \
        soft_cross_entropy(logits.float(), targets, temperature, examples)
    return {"pred": weight * loss}


def total(values: Iterable[torch.Tensor]) -> torch.Tensor:
    """The sum of loss terms (as `sum`, without its leading integer 0)."""
    return functools.reduce(operator.add, values)


@torch.no_grad()
def held_out_losses(run: Run) -> dict[str, float]:
    """The intermediate losses over the whole --eval-cache: each batch's means weighted by its real
    tokens (embedding, hidden) or cells (attention), so that they are the means over the whole
    cache, whatever the batch size."""
    assert run.eval_targets is not None
    order = BatchOrder(run.eval_targets.block_starts, run.config.batch_size, run.config.window_blocks, seed=0)
    sums = {"embd": 0.0, "hidn": 0.0, "attn": 0.0}
    tokens = cells = 0
    run.student.eval()
    for batch in run.eval_targets.batches(order, 0, 0, run.workers, run.device, run.attention, intermediate=True):
        with autocast(run.precision, run.device):
            inputs = forward_inputs(run.student, batch.input_ids, batch.token_type_ids, batch.mask.long())
            out = run.student(**inputs, output_hidden_states=True, output_attentions=True)
        parts = intermediate_losses(out.hidden_states, out.attentions, batch, run.layer_map, run.weights,
                                    run.projections, run.windows)
        lengths = batch.mask.sum(1)
        batch_tokens, batch_cells = int(lengths.sum()), int(lengths.square().sum())
        sums["embd"] += parts["embd"].item() * batch_tokens
        sums["hidn"] += parts["hidn"].item() * batch_tokens
        sums["attn"] += parts["attn"].item() * batch_cells
        tokens, cells = tokens + batch_tokens, cells + batch_cells
    run.student.train()
    means = {"embd": sums["embd"] / tokens, "hidn": sums["hidn"] / tokens, "attn": sums["attn"] / cells}
    return {"loss": sum(means.values())} | means


def check_finite(parts: dict[str, float], stage: str, step: int) -> None:
    """A NaN or infinite loss is refused before anything is saved: the last checkpoint stays good."""
    bad = {name: value for name, value in parts.items() if not math.isfinite(value)}
    if bad:
        values = ", ".join(f"{k} {v}" for k, v in bad.items())
        raise UserError(f"{stage} step {step}: the loss is not finite ({values}); "
                        "nothing was saved after the last checkpoint: lower the learning rate or check the cache")


def over_ranks(ranks: Ranks, parts: dict[str, torch.Tensor]) -> dict[str, float]:
    """The global batch's loss parts: the sum of the ranks' shares (a collective: every rank calls it)."""
    totals = sum_over_ranks(ranks, torch.stack(list(parts.values())).float())
    return dict(zip(parts, totals.tolist(), strict=True))
