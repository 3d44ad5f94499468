"""The objective: the intermediate losses (TinyBERT's layer-to-layer terms over the layer map,
MiniLMv2's self-attention relations of one layer, or the pooled sentence vector, alone or beside
either) and the prediction loss, as one module DDP wraps (`Distiller`), and the held-out losses
that evaluate the intermediate stages."""

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
from student.config import Relations
from student.losses import (
    attention_mse,
    hidden_mse,
    pooled_embedding_loss,
    regression_mse,
    relation_kl,
    soft_cross_entropy,
)
from student.model import Projections
from student.setup import Run
from student.stream import Batch, BatchOrder


class LayerLosses:
    """TinyBERT's intermediate terms: embeddings and hidden states through the projections, and
    attention, over the layer map."""

    hidden_states, attentions = True, True

    def __init__(self, run: Run):
        self.run = run

    def __call__(self, out, batch: Batch, projections: Projections) -> dict[str, torch.Tensor]:
        run = self.run
        return intermediate_losses(out.hidden_states, out.attentions, batch, run.layer_map, run.weights,
                                   projections, run.windows)

    @staticmethod
    def counts(lengths: torch.Tensor) -> dict[str, int]:
        """What each part is a mean over in a batch of these lengths (real tokens, real pairs)."""
        tokens, cells = int(lengths.sum()), int(lengths.square().sum())
        return {"embd": tokens, "hidn": tokens, "attn": cells}


class RelationLosses:
    """MiniLMv2's: the Q-Q, K-K and V-V relations of one teacher layer against one student layer's
    (the student's attention captures its queries, keys and values: `Run.attention`)."""

    hidden_states, attentions = False, True

    def __init__(self, relations: Relations):
        self.relations = relations

    def __call__(self, out, batch: Batch, projections: Projections) -> dict[str, torch.Tensor]:
        m, n, heads = self.relations.student_layer, self.relations.teacher_layer, self.relations.heads
        return {"rel": relation_kl(out.attentions[m - 1].float(), batch.attention[n], batch.mask, heads,
                                   batch.totals.tokens)}

    @staticmethod
    def counts(lengths: torch.Tensor) -> dict[str, int]:
        return {"rel": int(lengths.sum())}


class SentenceVector:
    """The pooled sentence-vector term (`--embedding-loss`, or `--objective embedding` alone): the
    student's mean-pooled last layer through W_h (the projection of its last layer) against the
    teacher's mean-pooled last layer."""

    hidden_states, attentions = True, False

    def __init__(self, run: Run):
        self.kind, self.weight = str(run.config.pooled_loss), run.config.embedding_weight
        self.layer, self.student_layer = run.teacher.num_layers, run.student.config.num_hidden_layers

    def __call__(self, out, batch: Batch, projections: Projections) -> dict[str, torch.Tensor]:
        return {"emb": self.weight * pooled_embedding_loss(out.hidden_states[-1].float(), batch.hidden[self.layer],
                                                           batch.mask, projections.layer(self.student_layer),
                                                           self.kind, batch.totals.examples)}

    @staticmethod
    def counts(lengths: torch.Tensor) -> dict[str, int]:
        return {"emb": len(lengths)}


Objective = LayerLosses | RelationLosses | SentenceVector


class WithSentenceVector:
    """An objective's terms plus the sentence-vector term."""

    hidden_states, attentions = True, True

    def __init__(self, objective: LayerLosses | RelationLosses, run: Run):
        self.objective, self.vector = objective, SentenceVector(run)

    def __call__(self, out, batch: Batch, projections: Projections) -> dict[str, torch.Tensor]:
        return self.objective(out, batch, projections) | self.vector(out, batch, projections)

    def counts(self, lengths: torch.Tensor) -> dict[str, int]:
        return self.objective.counts(lengths) | self.vector.counts(lengths)


def intermediate_objective(run: Run) -> Objective | WithSentenceVector:
    if run.config.objective == "embedding":
        return SentenceVector(run)
    objective = RelationLosses(run.relations) if run.relations else LayerLosses(run)
    return WithSentenceVector(objective, run) if run.config.embedding_loss else objective


class Distiller(torch.nn.Module):
    """The student and its projections as one module whose forward returns the loss parts: what
    DDP wraps, so that its gradient hooks cover the projections (used after the student's forward)."""

    def __init__(self, run: Run):
        super().__init__()
        self.student, self.projections = run.student, run.projections
        self.run = [run]  # in a list: not a submodule
        self.objective = intermediate_objective(run)

    def forward(self, batch: Batch, intermediate: bool) -> dict[str, torch.Tensor]:
        run = self.run[0]
        inputs = forward_inputs(self.student, batch.input_ids, batch.token_type_ids, batch.mask.long())
        out = self.student(**inputs, output_hidden_states=intermediate and self.objective.hidden_states,
                           output_attentions=intermediate and self.objective.attentions)
        if intermediate:
            parts = self.objective(out, batch, self.projections)
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
    """The intermediate losses over the whole --eval-cache: each batch's means weighted by what
    they are means over (real tokens, or real pairs for attention), so that they are the means over
    the whole cache, whatever the batch size."""
    assert run.eval_targets is not None
    order = BatchOrder(run.eval_targets.block_starts, run.config.batch_size, run.config.window_blocks, seed=0)
    objective = intermediate_objective(run)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    run.student.eval()
    for batch in run.eval_targets.batches(order, 0, 0, run.workers, run.device, run.attention, intermediate=True):
        with autocast(run.precision, run.device):
            inputs = forward_inputs(run.student, batch.input_ids, batch.token_type_ids, batch.mask.long())
            out = run.student(**inputs, output_hidden_states=objective.hidden_states,
                              output_attentions=objective.attentions)
        parts = objective(out, batch, run.projections)
        for name, count in objective.counts(batch.mask.sum(1)).items():
            sums[name] = sums.get(name, 0.0) + parts[name].item() * count
            counts[name] = counts.get(name, 0) + count
    run.student.train()
    means = {name: sums[name] / counts[name] for name in sums}
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
