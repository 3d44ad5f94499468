"""Targets of several examples, flat as stored: what a block read returns, what a training
batch gathers from a window of blocks, and what crosses from a reader process to the trainer."""

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cache.format.entries import TOKEN, axis_sizes
from cache.format.layout import Geometry
from cache.runtime.arrays import offsets, ragged_positions

ArrayKey = tuple[str, int | None]
"""(field or stored array, teacher layer or None)."""
_PER_EXAMPLE = ("input_ids", "token_type_ids", "labels", "logits")


@dataclass(frozen=True)
class RaggedExamples:
    """Examples' targets with their entries concatenated along each array's axis (`cache.format.entries`)."""

    indices: np.ndarray  # (B,) example numbers in the cache
    lengths: np.ndarray  # (B,)
    input_ids: np.ndarray  # (T,)
    token_type_ids: np.ndarray  # (T,)
    labels: np.ndarray | None  # (B,)
    logits: np.ndarray | None  # (B, C)
    targets: dict[str, dict[int, np.ndarray]]
    """Stored array name -> teacher layer -> the examples' entries, in the stored type."""
    geometry: Geometry

    def __len__(self) -> int:
        return len(self.lengths)

    def offsets(self, axis: str) -> np.ndarray:
        return offsets(axis_sizes(axis, self.lengths, self.geometry.num_heads))

    def take(self, rows: np.ndarray) -> "RaggedExamples":
        """The examples `rows`, gathered with one fancy index per array."""
        lengths = self.lengths[rows]
        specs = self.geometry.arrays()
        axes = {TOKEN} | {specs[name].axis for name in self.targets}
        at = {axis: ragged_positions(self.offsets(axis)[rows], axis_sizes(axis, lengths, self.geometry.num_heads))
              for axis in axes}
        return replace(
            self, indices=self.indices[rows], lengths=lengths,
            input_ids=self.input_ids[at[TOKEN]], token_type_ids=self.token_type_ids[at[TOKEN]],
            labels=self.labels[rows] if self.labels is not None else None,
            logits=self.logits[rows] if self.logits is not None else None,
            targets={name: {layer: a[at[specs[name].axis]] for layer, a in layers.items()}
                     for name, layers in self.targets.items()})

    def arrays(self) -> dict[ArrayKey, np.ndarray]:
        """Every array but `indices` and `lengths` (small, and needed on the host), by key."""
        out: dict[ArrayKey, np.ndarray] = {(name, None): getattr(self, name) for name in _PER_EXAMPLE
                                           if getattr(self, name) is not None}
        return out | {(name, layer): a for name, layers in self.targets.items() for layer, a in layers.items()}

    def with_arrays(self, arrays: dict) -> "RaggedExamples":
        """These examples with their arrays replaced by `arrays` (as `arrays()` keys them), of any type."""
        targets: dict[str, dict[int, Any]] = {}
        for (name, layer), a in arrays.items():
            if layer is not None:
                targets.setdefault(name, {})[layer] = a
        per_example: dict[str, Any] = {name: arrays.get((name, None)) for name in _PER_EXAMPLE}
        return replace(self, targets=targets, **per_example)


def concatenate(parts: list[RaggedExamples]) -> RaggedExamples:
    """Several reads (blocks) as one: every array concatenated along its axis."""
    each = [p.arrays() for p in parts]
    arrays = {key: np.concatenate([a[key] for a in each]) for key in each[0]}
    return replace(parts[0].with_arrays(arrays), indices=np.concatenate([p.indices for p in parts]),
                   lengths=np.concatenate([p.lengths for p in parts]))
