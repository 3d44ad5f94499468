"""How targets are stored: the encodings a dump chooses and the training device decodes.

Hidden states (and the queries, keys and values of factored attention) are rows of d values,
stored in a float type or in 8 bits with one float32 scale per group of values: per row for hidden
states, per head for queries and keys, so that one large value costs precision only in its group.

Attention is stored as one of:
- `maps`: the scores or probabilities of every real (head, query, key) triple, h L per token per
  layer, in a float type, or `uint8` (probabilities rounded to 1/255);
- `qk` / `qkv`: each mapped layer's queries and keys (and values) per token, 2d (3d) values
  whatever L. The training device computes the scores QK^T / sqrt(d_k) of the batch, and softmaxes
  them over each example's real length when probabilities are wanted: exact to float rounding, and
  smaller than maps whenever L > 2d/h;
- `topk:K`: the K largest probabilities of each (head, query) row with their key positions; the
  other keys decode as 0 (lossy; probabilities only).

The embedding output (hidden layer 0) is either stored per token like every other layer, or
recomputed on the training device from the teacher's embedding tables, stored once per cache
(`cache.format.embeddings`): exact, and no bytes per token.

Every stored array is one entry per real token (TOKEN), per real (head, query) row (ROW) or per
real (head, query, key) triple (CELL) of each example, so a block has no padding whatever the
encoding, and every reader gathers examples the same way.
"""

from dataclasses import dataclass
from math import prod

import numpy as np

from cache.format.dtypes import numpy_dtype
from cache.runtime.errors import UserError

FLOAT_TYPES = ("float16", "bfloat16", "float32")
EIGHT_BITS = ("int8", "fp8")
VECTOR_ENCODINGS = (*FLOAT_TYPES, *EIGHT_BITS)
LARGEST = {"int8": 127.0, "fp8": 448.0}
"""The largest value each 8-bit type holds: a group's largest magnitude is scaled to it."""
SCALE_DTYPE = "float32"

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


@dataclass(frozen=True)
class VectorEncoding:
    """Rows of `width` values: a float type, or 8 bits with a scale per `group` values."""

    name: str

    @property
    def scaled(self) -> bool:
        return self.name in EIGHT_BITS

    def specs(self, array: str, width: int, group: int, layers: str) -> dict[str, ArraySpec]:
        specs = {array: ArraySpec(TOKEN, (width,), self.name, layers)}
        if self.scaled:
            specs[f"{array}_scale"] = ArraySpec(TOKEN, (width // group,), SCALE_DTYPE, layers)
        return specs


MAPS, QK, QKV, TOPK = "maps", "qk", "qkv", "topk"
MAP_TYPES = (*FLOAT_TYPES, "uint8")
AUTO = "auto"


@dataclass(frozen=True)
class AttentionEncoding:
    """How attention is stored (module docstring); `str()` is its name in flags and manifests."""

    kind: str
    form: str = "float16"
    """maps: a float type or uint8; qk, qkv: a vector encoding; topk: the probabilities' float type."""
    k: int = 0
    """topk: entries kept per row."""

    @classmethod
    def parse(cls, spec: str, option: str = "--attention-encoding") -> "AttentionEncoding":
        """maps[:TYPE] | uint8 | qk[:ENC] | qkv[:ENC] | topk:K (AUTO is resolved by `choose_attention`)."""
        kind, _, form = spec.partition(":")
        if spec == "uint8":
            return cls(MAPS, "uint8")
        if kind == MAPS and (form or "float16") in MAP_TYPES:
            return cls(MAPS, form or "float16")
        if kind in (QK, QKV) and (form or "float16") in VECTOR_ENCODINGS:
            return cls(kind, form or "float16")
        if kind == TOPK and form.isdigit() and int(form) >= 1:
            return cls(TOPK, "float16", int(form))
        raise UserError(f"{option} {spec}: choose maps[:{'|'.join(MAP_TYPES)}], uint8, "
                        f"qk[:{'|'.join(VECTOR_ENCODINGS)}], qkv[:...], topk:K or {AUTO}")

    def __str__(self) -> str:
        return f"{TOPK}:{self.k}" if self.kind == TOPK else f"{self.kind}:{self.form}"

    @property
    def factored(self) -> bool:
        return self.kind in (QK, QKV)

    @property
    def probabilities_only(self) -> bool:
        """uint8 maps and top-k hold probabilities; nothing turns them back into scores."""
        return self.kind == TOPK or self.form == "uint8"

    @property
    def captured(self) -> tuple[str, ...]:
        """What the teacher's attention function hands over per layer (`cache.runtime.attention`)."""
        return {QK: ("query", "key"), QKV: ("query", "key", "value")}.get(self.kind, ())

    def specs(self, hidden_size: int, num_heads: int, max_seq_len: int) -> dict[str, ArraySpec]:
        if self.kind == MAPS:
            return {"attention": ArraySpec(CELL, (), self.form, ATTENTION)}
        if self.kind == TOPK:
            index = "uint8" if max_seq_len <= 256 else "int16"
            return {"topk_index": ArraySpec(ROW, (self.k,), index, ATTENTION),
                    "topk_prob": ArraySpec(ROW, (self.k,), self.form, ATTENTION)}
        vectors = VectorEncoding(self.form)
        return {name: spec for array in self.captured
                for name, spec in vectors.specs(array, hidden_size, hidden_size // num_heads, ATTENTION).items()}


def choose_attention(spec: str, lengths: np.ndarray, hidden_size: int, num_heads: int,
                     max_seq_len: int) -> AttentionEncoding:
    """The encoding a flag names; AUTO: the smallest exact float16 one for these lengths."""
    if spec != AUTO:
        return AttentionEncoding.parse(spec)
    candidates = [AttentionEncoding(MAPS), AttentionEncoding(QK)]
    return min(candidates, key=lambda e: specs_bytes(e.specs(hidden_size, num_heads, max_seq_len), lengths,
                                                     num_heads, {ATTENTION: 1}).sum())


STORED, TABLES = "stored", "tables"
EMBEDDING_OUTPUTS = (STORED, TABLES, AUTO)


def choose_embedding_output(spec: str, lengths: np.ndarray, hidden: VectorEncoding, hidden_size: int,
                            tables_bytes: int) -> str:
    """STORED or TABLES; AUTO: whichever takes fewer bytes for these lengths (float32 tables against
    layer 0 in the hidden encoding: the tables win past about twice the vocabulary in tokens with
    float16, four times with 8 bits)."""
    if spec != AUTO:
        return spec
    stored = specs_bytes(hidden.specs(HIDDEN, hidden_size, hidden_size, HIDDEN), lengths, 1, {HIDDEN: 1}).sum()
    return TABLES if tables_bytes < stored else STORED


def check_hidden(name: str) -> VectorEncoding:
    if name not in VECTOR_ENCODINGS:
        raise UserError(f"--hidden-encoding {name}: choose {', '.join(VECTOR_ENCODINGS)}")
    return VectorEncoding(name)


def specs_bytes(specs: dict[str, ArraySpec], lengths: np.ndarray, heads: int, layers: dict[str, int]) -> np.ndarray:
    """Bytes of each example in the arrays `specs`, `layers[spec.layers]` layers each."""
    total = np.zeros(len(lengths), dtype=np.int64)
    for spec in specs.values():
        total += layers[spec.layers] * axis_sizes(spec.axis, lengths, heads) * spec.entry_bytes
    return total
