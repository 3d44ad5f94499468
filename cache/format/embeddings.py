"""The teacher's embedding layer as tables stored once in a cache, giving hidden layer 0 exactly.

The embedding output of every family in `cache.data.families` is LayerNorm(word[id] +
token_type[type] + position[first + i]) (DistilBERT has no types, ModernBERT neither types nor
absolute positions: a row of zeros stands for them; RoBERTa's first position is its padding
index + 1; DeBERTa-v3 has no absolute positions either): a function of the token ids the cache already
holds. An ELECTRA or a DeBERTa whose embeddings are narrower than its layers projects them: the
tables alone do not give its layer 0, and it is stored. Storing its tables once (vocabulary x d
values, a fixed size) instead of d values per token takes a whole hidden layer off every token of a
corpus, and the training device recomputes the layer for each batch with two gathers and a layer
norm, in float32 as the teacher computed it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from cache.format.layout import chunk_length
from cache.format.store import EMBEDDINGS, Store

TABLES = ("word", "position", "token_type", "norm_weight", "norm_bias")
"""The stored arrays, named as the fields below."""


@dataclass(frozen=True)
class EmbeddingTables:
    """The embedding layer's weights, float32; dropout is off in the teacher, so these are all it does."""

    word: torch.Tensor  # (vocabulary, d)
    position: torch.Tensor  # (positions, d)
    token_type: torch.Tensor  # (types, d)
    norm_weight: torch.Tensor  # (d,)
    norm_bias: torch.Tensor  # (d,)
    eps: float
    first_position: int = 0
    """The position of a sequence's first token (`Family.position_offset`)."""

    @classmethod
    def of(cls, model: PreTrainedModel, first_position: int) -> "EmbeddingTables | None":
        """The tables of the teacher, float32 on its device; None where they do not give its
        embedding output."""
        layer = model.base_model.embeddings
        if hasattr(model.base_model, "embeddings_project") or getattr(layer, "embed_proj", None) is not None:
            return None  # an ELECTRA's or DeBERTa's narrower embeddings, projected
        word = (layer.word_embeddings if hasattr(layer, "word_embeddings") else layer.tok_embeddings).weight
        norm = layer.LayerNorm if hasattr(layer, "LayerNorm") else layer.norm
        zeros = word.new_zeros(1, word.shape[1])  # stands for what a family does not add (it broadcasts)
        positions, types = (getattr(layer, name, None) for name in ("position_embeddings", "token_type_embeddings"))
        weights = cls(word, positions.weight if positions is not None else zeros,
                      types.weight if types is not None else zeros, norm.weight,
                      norm.bias if norm.bias is not None else zeros[0], float(norm.eps), first_position)
        return weights.map(lambda w: w.detach().float())

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], eps: float, first_position: int) -> "EmbeddingTables":
        """The tables as `write` stored them."""
        tables: dict[str, Any] = {name: torch.from_numpy(np.ascontiguousarray(arrays[name])) for name in TABLES}
        return cls(**tables, eps=eps, first_position=first_position)

    def map(self, f: Callable[[torch.Tensor], torch.Tensor]) -> "EmbeddingTables":
        return EmbeddingTables(f(self.word), f(self.position), f(self.token_type), f(self.norm_weight),
                               f(self.norm_bias), self.eps, self.first_position)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in TABLES}

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def to(self, device: torch.device) -> "EmbeddingTables":
        return self.map(lambda t: t.to(device))

    def output(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L) ids and types, (B, L) mask -> the teacher's embedding output (B, L, d), float32,
        zero on padding (as decoded stored layers are). Positions count from `first_position` in
        every example, as the teacher's did."""
        positions = self.position[self.first_position:self.first_position + input_ids.shape[1]]
        summed = self.word[input_ids] + self.token_type[token_type_ids] + positions
        out = F.layer_norm(summed, (summed.shape[-1],), self.norm_weight, self.norm_bias, self.eps)
        return out * mask[..., None]

    def write(self, store: Store, attrs: dict) -> None:
        """As one unit, committed atomically with its checksums like a block; `attrs` bind it to its cache."""
        arrays = {name: (t.numpy(), (chunk_length(len(t), t[0].numel() * 4), *t.shape[1:]))
                  for name, t in self.tensors().items()}
        store.write_unit(EMBEDDINGS, arrays, {"eps": self.eps, "first_position": self.first_position} | attrs)
