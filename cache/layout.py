"""Where each example's targets live: blocks of examples, ragged offsets, chunk shapes.

A cache is cut into blocks: contiguous example ranges of about `block_bytes` each, planned from
the token lengths alone, so every run over the same data (a resumed one included) computes the
same plan. A block is the unit of writing, committing and streaming. Inside a block, example j's
hidden rows are `[tok[j], tok[j+1])` and its attention values `[att[j], att[j+1])`, flattened as
(head, query, key): only real tokens are stored, so there is no padding and no mask on disk.
"""

from dataclasses import dataclass

import numpy as np

CHUNK_BYTES = 1 << 20
"""Target chunk size: large enough for fast block reads, small enough for cheap random reads."""


@dataclass(frozen=True)
class Geometry:
    """Shapes of the stored targets."""

    hidden_size: int
    num_heads: int
    hidden_layers: tuple[int, ...]
    """Stored hidden-state layers (0 = embedding output)."""
    attention_layers: tuple[int, ...]
    """Stored attention layers (>= 1; the embedding layer has none)."""
    itemsize: int
    """Bytes per stored value."""

    def example_values(self, lengths: np.ndarray) -> np.ndarray:
        """Hidden + attention values of each example over all stored layers: the ragged ideal."""
        lengths = lengths.astype(np.int64)
        hidden = len(self.hidden_layers) * lengths * self.hidden_size
        attention = len(self.attention_layers) * self.num_heads * lengths**2
        return hidden + attention


def offsets(sizes: np.ndarray) -> np.ndarray:
    """(n,) sizes -> (n+1,) int64 start offsets with the total last."""
    out = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def ragged_positions(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n), without a Python loop."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - offsets(sizes)[:-1], sizes)
    return np.arange(total, dtype=np.int64) + shift


def plan_blocks(lengths: np.ndarray, geometry: Geometry, block_bytes: int) -> np.ndarray:
    """Block start indices (n_blocks + 1,), each block holding about `block_bytes` of targets."""
    sizes = geometry.example_values(lengths) * geometry.itemsize
    end = np.cumsum(sizes)
    block_of = (end - sizes) // max(block_bytes, 1)  # block of each example, by where it starts
    starts = np.flatnonzero(np.diff(block_of, prepend=-1))
    return np.append(starts, len(lengths)).astype(np.int64)


def chunk_length(extent: int, row_bytes: int) -> int:
    """Rows per chunk for an axis of `extent` rows: about CHUNK_BYTES, balanced so that the last
    chunk is nearly full (both Zarr and HDF5 store edge chunks at full size)."""
    if extent == 0:
        return 1
    target = max(1, CHUNK_BYTES // max(row_bytes, 1))
    n_chunks = -(-extent // target)
    return -(-extent // n_chunks)


@dataclass(frozen=True)
class BlockIndex:
    """Offsets inside one block, derived from its examples' lengths."""

    start: int
    lengths: np.ndarray  # (B,)
    tokens: np.ndarray  # (B+1,) token offsets
    attention: np.ndarray  # (B+1,) attention-value offsets

    @classmethod
    def build(cls, start: int, lengths: np.ndarray, num_heads: int) -> "BlockIndex":
        lengths = lengths.astype(np.int64)
        return cls(start, lengths, offsets(lengths), offsets(num_heads * lengths**2))

    def __len__(self) -> int:
        return len(self.lengths)


def pad_ragged(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray, pad: int = 0) -> np.ndarray:
    """Rows `flat[starts[i] : starts[i] + lengths[i]]` right-padded into a (B, max length) array."""
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.full((len(lengths), int(lengths.max(initial=0))), pad, dtype=flat.dtype)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = ragged_positions(np.zeros_like(lengths), lengths)
    out[rows, cols] = flat[ragged_positions(starts, lengths)]
    return out
