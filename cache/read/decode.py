"""Stored targets -> the padded float32 tensors the losses compare, on the training device.

Only the stored entries cross to a GPU (in their stored types, in one copy from pinned memory);
8-bit values are scaled, factored attention multiplied out and top-k rows scattered there. Every
size comes from the host's lengths, so nothing here waits for the GPU: the next batch is queued
while the last step still runs.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from cache.format.dtypes import from_storage
from cache.format.embeddings import EmbeddingTables
from cache.format.encoding import Factored
from cache.format.entries import ATTENTION, HIDDEN, TOKEN
from cache.format.transfer import PaddedSlots, to_device
from cache.read.ragged import RaggedExamples
from cache.runtime.kinds import AttentionKind, Capture, Factors

QKV = ("query", "key", "value")


@dataclass
class PaddedTargets:
    """A batch padded to its longest example; `mask` is True on real tokens."""

    input_ids: torch.Tensor  # (B, L)
    token_type_ids: torch.Tensor  # (B, L)
    mask: torch.Tensor  # (B, L) bool
    labels: torch.Tensor | None  # (B,)
    logits: torch.Tensor | None  # (B, C)
    hidden: dict[int, torch.Tensor]  # layer -> (B, L, d) float32
    attention: dict[int, torch.Tensor]  # layer -> (B, h, L, L) float32, zero outside real pairs and windows;
    # or, asked for the queries, keys and values: (B, h, L, 3 d_k), zero on padding


def decode_batch(ragged: RaggedExamples, device: torch.device, attention: Capture | None = None,
                 embeddings: EmbeddingTables | None = None) -> PaddedTargets:
    """Decode and pad a batch on `device`. Attention comes as `attention` asks (None: as the cache
    decodes, `Geometry.decodes_to`): scores (stored, or computed from queries and keys) become
    probabilities by a softmax over each example's real keys; `Factors.QKV` hands over a `qkv`
    cache's vectors as the capture gives them. With `embeddings` (on `device`), hidden layer 0 is
    recomputed from the teacher's tables."""
    geometry = ragged.geometry
    host_lengths = ragged.lengths.astype(np.int64)
    arrays = to_device(ragged.arrays() | {("lengths", None): host_lengths}, device)
    lengths = arrays[("lengths", None)]
    b, longest = len(host_lengths), int(host_lengths.max())
    mask = torch.arange(longest, device=device)[None, :] < lengths[:, None]
    specs = geometry.arrays()
    slots = PaddedSlots(lengths, host_lengths, geometry.num_heads)
    if attention == AttentionKind.SCORES and geometry.decodes_to == AttentionKind.PROBS:
        raise ValueError("a cache of probabilities cannot give scores (`resolve_attention_kind` refuses this)")
    softmax = attention == AttentionKind.PROBS and geometry.decodes_to == AttentionKind.SCORES

    def parts(names: Iterable[str], layer: int) -> dict[str, torch.Tensor]:
        """The layer's stored entries of the arrays `names`, viewed in their stored types."""
        return {name: from_storage(arrays[(name, layer)], specs[name].dtype) for name in names}

    def hidden(layer: int) -> torch.Tensor:
        names = [name for name, spec in specs.items() if spec.layers == HIDDEN]
        values = geometry.hidden.decode(HIDDEN, parts(names, layer), geometry.hidden_size)
        return slots.scatter(values, TOKEN).view(b, longest, -1)

    def attention_maps(layer: int) -> torch.Tensor:
        names = [name for name in ragged.targets if specs[name].layers == ATTENTION]
        if attention == Factors.QKV:
            if not (isinstance(geometry.attention, Factored) and geometry.attention.with_values):
                raise ValueError(f"a cache of {geometry.attention} holds no values (`check_relations` refuses this)")
            return torch.cat(geometry.attention.factors(parts(names, layer), slots, mask, QKV), dim=-1)
        maps = geometry.attention.decode(parts(names, layer), slots, mask)
        window = geometry.window(layer)
        if softmax:
            return probabilities_from_scores(maps, mask, window)
        return maps if window is None else maps.masked_fill(~attended(mask, window), 0.0)

    def tokens(name: str) -> torch.Tensor:
        return slots.scatter(arrays[(name, None)].long(), TOKEN).view(b, longest)

    input_ids, token_type_ids = tokens("input_ids"), tokens("token_type_ids")
    recomputed = {0: embeddings.output(input_ids, token_type_ids, mask)} if embeddings is not None else {}
    return PaddedTargets(
        input_ids=input_ids, token_type_ids=token_type_ids, mask=mask,
        labels=arrays.get(("labels", None)), logits=arrays.get(("logits", None)),
        hidden=recomputed | {layer: hidden(layer) for layer in ragged.targets.get(HIDDEN, {})},
        attention={layer: attention_maps(layer) for layer in _attention_layers(ragged)},
    )


def _attention_layers(ragged: RaggedExamples) -> list[int]:
    specs = ragged.geometry.arrays()
    return sorted({layer for name, layers in ragged.targets.items() if specs[name].layers == ATTENTION
                   for layer in layers})


def probabilities_from_scores(scores: torch.Tensor, mask: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Softmax over real keys (those within `window` of the query, for a local layer): turns scores
    into the probabilities a PROBS loss needs.

    scores: (B, h, L, L); mask: (B, L) bool. Rows of padding queries come out as zeros.
    """
    keys = attended(torch.ones_like(mask), window) & mask[:, None, None, :]  # (B, 1, L, L)
    probs = scores.float().masked_fill(~keys, float("-inf")).softmax(dim=-1)
    return probs.masked_fill(~mask[:, None, :, None], 0.0).to(scores.dtype)


def attended(mask: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """(B, 1, L, L) True on the (query, key) pairs of real tokens that attention covers: all of
    them, or within `window` of each other in a local layer (`Geometry.windows`). mask: (B, L) bool."""
    pairs = mask[:, None, :, None] & mask[:, None, None, :]
    if window is None:
        return pairs
    positions = torch.arange(mask.shape[1], device=mask.device)
    return pairs & ((positions[:, None] - positions[None, :]).abs() <= window)


def decode_example(ragged: RaggedExamples, j: int, embeddings: EmbeddingTables | None = None) -> dict:
    """The j-th example as torch tensors, its targets decoded to float32 (hidden (L, d),
    attention (h, L, L) as the cache decodes: scores for factored attention); layer 0 from
    `embeddings` when given."""
    one = decode_batch(ragged.take(np.array([j])), torch.device("cpu"), embeddings=embeddings)
    item = {"input_ids": one.input_ids[0], "token_type_ids": one.token_type_ids[0],
            "hidden": {layer: h[0] for layer, h in one.hidden.items()},
            "attention": {layer: a[0] for layer, a in one.attention.items()}}
    if one.labels is not None:
        item["label"] = one.labels[0]
    if one.logits is not None:
        item["logits"] = one.logits[0]
    return item
