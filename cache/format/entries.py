"""What a stored array is: entries along one axis of each example, for each stored layer.

Every stored array is one entry per real token (TOKEN), per real (head, query) row (ROW) or per
real (head, query, key) triple (CELL) of each example, so a block has no padding whatever the
encoding (`cache.format.encoding`), and every reader gathers examples the same way.
"""

from dataclasses import dataclass
from math import prod

import numpy as np

from cache.format.dtypes import numpy_dtype

TOKEN, ROW, CELL = "token", "row", "cell"
HIDDEN, ATTENTION = "hidden", "attention"
"""Which layers an array has: the stored hidden layers or the stored attention layers."""


def axis_sizes(axis: str, lengths: np.ndarray, heads: int) -> np.ndarray:
    """Entries of each example along an axis: L, h L or h L^2."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return {TOKEN: lengths, ROW: heads * lengths, CELL: heads * lengths**2}[axis]


@dataclass(frozen=True)
class ArraySpec:
    """One stored array of a block: (layers, entries along `axis`, *trailing), in `dtype`."""

    axis: str
    trailing: tuple[int, ...]
    dtype: str
    """A `cache.format.dtypes` name."""
    layers: str
    """HIDDEN or ATTENTION."""

    @property
    def entry_bytes(self) -> int:
        return prod(self.trailing) * numpy_dtype(self.dtype).itemsize


def specs_bytes(specs: dict[str, ArraySpec], lengths: np.ndarray, heads: int, layers: dict[str, int]) -> np.ndarray:
    """Bytes of each example in the arrays `specs`, `layers[spec.layers]` layers each."""
    total = np.zeros(len(lengths), dtype=np.int64)
    for spec in specs.values():
        total += layers[spec.layers] * axis_sizes(spec.axis, lengths, heads) * spec.entry_bytes
    return total
