"""Where each example's targets live: blocks of examples, ragged offsets, chunk shapes.

A cache is cut into blocks: contiguous example ranges of about `block_bytes` each, planned from
the token lengths alone, so every run over the same data (a resumed one included) computes the
same plan. A block is the unit of writing, committing and streaming. Inside a block, example j's
entries along each axis (its tokens, its (head, query) rows, its (head, query, key) cells: see
`cache.format.entries`) are `[offset[j], offset[j+1])`: only real tokens are stored, so there is no
padding and no mask on disk.
"""

from dataclasses import dataclass

import numpy as np

from cache.format.encoding import AttentionEncoding, FloatVectors, Maps, VectorEncoding
from cache.format.entries import ATTENTION, CELL, HIDDEN, ROW, TOKEN, ArraySpec, axis_sizes, specs_bytes
from cache.runtime.arrays import offsets
from cache.runtime.kinds import AttentionKind

CHUNK_BYTES = 1 << 20
"""Target chunk size: large enough for fast block reads, small enough for cheap random reads."""


@dataclass(frozen=True)
class Geometry:
    """What a block stores: the teacher's shapes, the stored layers and their encodings."""

    hidden_size: int
    num_heads: int
    hidden_layers: tuple[int, ...]
    """Hidden-state layers the cache gives (0 = embedding output)."""
    attention_layers: tuple[int, ...]
    """Stored attention layers (>= 1; the embedding layer has none)."""
    hidden: VectorEncoding = FloatVectors()
    attention: AttentionEncoding = Maps()
    max_seq_len: int = 512
    embedding_tables: bool = False
    """Layer 0 is recomputed from the teacher's embedding tables (`cache.format.embeddings`), not stored."""
    attention_kind: AttentionKind = AttentionKind.SCORES
    """What the teacher was asked for; `decodes_to` says what decoding gives."""
    windows: tuple[int | None, ...] = ()
    """The teacher's attention window per layer 1..N (`TeacherRecord.windows`): decoding leaves the
    cells outside a layer's window out, as its attention did."""

    def window(self, layer: int) -> int | None:
        """Layer `layer`'s window, None where it attends to every key."""
        return self.windows[layer - 1] if self.windows else None

    @property
    def decodes_to(self) -> AttentionKind:
        """Scores from queries and keys, else the kind the teacher gave."""
        return self.attention.decodes_to(self.attention_kind)

    @property
    def stored_hidden_layers(self) -> tuple[int, ...]:
        """The hidden layers stored per token: all but 0 when the embedding tables give it."""
        return tuple(layer for layer in self.hidden_layers if not (self.embedding_tables and layer == 0))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    def arrays(self) -> dict[str, ArraySpec]:
        """Every target array of a block, by name."""
        specs: dict[str, ArraySpec] = {}
        if self.stored_hidden_layers:
            specs |= self.hidden.specs(HIDDEN, self.hidden_size, self.hidden_size, HIDDEN)
        if self.attention_layers:
            specs |= self.attention.specs(self.hidden_size, self.num_heads, self.max_seq_len)
        return specs

    def layer_count(self, spec: ArraySpec) -> int:
        return len(self.stored_hidden_layers if spec.layers == HIDDEN else self.attention_layers)

    def example_bytes(self, lengths: np.ndarray, kind: str | None = None) -> np.ndarray:
        """Stored bytes of each example's targets (of one kind, HIDDEN or ATTENTION): the ragged ideal."""
        specs = {name: s for name, s in self.arrays().items() if kind in (None, s.layers)}
        return specs_bytes(specs, lengths, self.num_heads,
                           {HIDDEN: len(self.stored_hidden_layers), ATTENTION: len(self.attention_layers)})


def plan_blocks(lengths: np.ndarray, geometry: Geometry, block_bytes: int) -> np.ndarray:
    """Block start indices (n_blocks + 1,), each block holding about `block_bytes` of targets."""
    sizes = geometry.example_bytes(lengths)
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
    """Offsets inside one block along each axis (`cache.format.entries`), from its examples' lengths."""

    start: int
    heads: int
    lengths: np.ndarray  # (B,)
    tokens: np.ndarray  # (B+1,) offsets of each example's tokens
    rows: np.ndarray  # (B+1,) of its (head, query) rows
    cells: np.ndarray  # (B+1,) of its (head, query, key) cells

    @classmethod
    def build(cls, start: int, lengths: np.ndarray, num_heads: int) -> "BlockIndex":
        return cls(start, num_heads, lengths.astype(np.int64),
                   *(offsets(axis_sizes(axis, lengths, num_heads)) for axis in (TOKEN, ROW, CELL)))

    def along(self, axis: str) -> np.ndarray:
        return {TOKEN: self.tokens, ROW: self.rows, CELL: self.cells}[axis]

    def __len__(self) -> int:
        return len(self.lengths)


