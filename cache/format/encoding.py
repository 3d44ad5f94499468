"""How targets are stored: each encoding one class, its encode and decode side by side.

Hidden states (and the queries, keys and values of factored attention) are rows of d values
(`VectorEncoding`), stored in a float type (`FloatVectors`) or in 8 bits with one float32 scale per
group of values (`ScaledVectors`): per row for hidden states, per head for queries and keys, so
that one large value costs precision only in its group.

Attention (`AttentionEncoding`) is stored as one of:
- `Maps` (`maps:TYPE`, `uint8`): the scores or probabilities of every real (head, query, key)
  triple, h L per token per layer, in a float type, or uint8 (probabilities rounded to 1/255);
- `Factored` (`qk:ENC`, `qkv:ENC`): each mapped layer's queries and keys (and values) per token,
  2d (3d) values whatever L. Decoding computes the scores QK^T / sqrt(d_k) of the batch: exact to
  float rounding, and smaller than maps whenever L > 2d/h;
- `TopK` (`topk:K`): the K largest probabilities of each (head, query) row with their key
  positions; the other keys decode as 0 (lossy; probabilities only).

A name is parsed once (`vector_encoding`, `attention_encoding`) into one of these objects, which
configs, the layout and the manifest hold; `str()` gives the name back. Encoding runs on the
teacher's device and decoding on the training device, on entries already gathered from or
scattered into padded tensors by `cache.format.transfer.PaddedSlots`. torch is imported when
first needed: the command line's checks parse encodings without it.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from cache.format.dtypes import to_float, to_stored_type, torch_dtype
from cache.format.entries import ATTENTION, CELL, HIDDEN, ROW, TOKEN, ArraySpec, specs_bytes
from cache.runtime.errors import UserError
from cache.runtime.kinds import AttentionKind, Capture, Factors

if TYPE_CHECKING:
    import torch

    from cache.format.transfer import PaddedSlots

FLOAT_TYPES = ("float16", "bfloat16", "float32")
EIGHT_BITS = ("int8", "fp8")
VECTOR_ENCODINGS = (*FLOAT_TYPES, *EIGHT_BITS)
LARGEST = {"int8": 127.0, "fp8": 448.0}
"""The largest value each 8-bit type holds: a group's largest magnitude is scaled to it."""
SCALE_DTYPE = "float32"
MAP_TYPES = (*FLOAT_TYPES, "uint8")
AUTO = "auto"


class VectorEncoding(ABC):
    """Rows of `width` values as the entries of one array (and of its scales): `name` is a
    `cache.format.dtypes` name."""

    name: str

    def __str__(self) -> str:
        return self.name

    @abstractmethod
    def specs(self, array: str, width: int, group: int, layers: str) -> dict[str, ArraySpec]: ...

    @abstractmethod
    def encode(self, array: str, rows: "torch.Tensor", group: int) -> dict[str, "torch.Tensor"]:
        """(n, width) float rows -> the entries of `array` (and of its scales), on the rows' device."""

    @abstractmethod
    def decode(self, array: str, parts: dict[str, "torch.Tensor"], group: int) -> "torch.Tensor":
        """The stored entries of `array` (and of its scales), in their stored types -> (n, width) float32."""


@dataclass(frozen=True)
class FloatVectors(VectorEncoding):
    """Rows in a float type."""

    name: str = "float16"

    def specs(self, array: str, width: int, group: int, layers: str) -> dict[str, ArraySpec]:
        return {array: ArraySpec(TOKEN, (width,), self.name, layers)}

    def encode(self, array: str, rows: "torch.Tensor", group: int) -> dict[str, "torch.Tensor"]:
        return {array: to_stored_type(rows, self.name)}

    def decode(self, array: str, parts: dict[str, "torch.Tensor"], group: int) -> "torch.Tensor":
        return parts[array].float()


@dataclass(frozen=True)
class ScaledVectors(VectorEncoding):
    """Rows in int8 or fp8, each group of `group` values scaled so that its largest magnitude is
    the type's largest value; the float32 scales are a second array, `<array>_scale`."""

    name: str = "int8"

    def specs(self, array: str, width: int, group: int, layers: str) -> dict[str, ArraySpec]:
        return {array: ArraySpec(TOKEN, (width,), self.name, layers),
                f"{array}_scale": ArraySpec(TOKEN, (width // group,), SCALE_DTYPE, layers)}

    def encode(self, array: str, rows: "torch.Tensor", group: int) -> dict[str, "torch.Tensor"]:
        import torch

        groups = rows.float().view(len(rows), -1, group)
        scale = groups.abs().amax(-1).clamp_min(torch.finfo(torch.float32).tiny) / LARGEST[self.name]
        scaled = groups / scale[..., None]
        values = scaled.round_().to(torch.int8) if self.name == "int8" else scaled.to(torch.float8_e4m3fn)
        return {array: values.view(rows.shape), f"{array}_scale": scale}

    def decode(self, array: str, parts: dict[str, "torch.Tensor"], group: int) -> "torch.Tensor":
        values = parts[array].float()
        return (values.view(len(values), -1, group) * parts[f"{array}_scale"][..., None]).view(values.shape)


def vector_encoding(name: str, option: str = "--hidden-encoding") -> VectorEncoding:
    """The encoding a name gives: a float type or an 8-bit one."""
    if name in FLOAT_TYPES:
        return FloatVectors(name)
    if name in EIGHT_BITS:
        return ScaledVectors(name)
    raise UserError(f"{option} {name}: choose {', '.join(VECTOR_ENCODINGS)}")


class AttentionEncoding(ABC):
    """How each stored layer's attention is kept; `str()` is its name in flags and manifests."""

    probabilities_only: bool = False
    """Whether it holds probabilities only (nothing turns them back into scores)."""

    @abstractmethod
    def __str__(self) -> str: ...

    def capture(self, kind: AttentionKind) -> Capture:
        """What the teacher's attention function hands over for it (`cache.runtime.attention`)."""
        return kind

    def decodes_to(self, kind: AttentionKind) -> AttentionKind:
        """What decoding gives for a dump that asked for `kind`."""
        return kind

    @abstractmethod
    def specs(self, hidden_size: int, num_heads: int, max_seq_len: int) -> dict[str, ArraySpec]: ...

    @abstractmethod
    def encode(self, captured: "torch.Tensor", slots: "PaddedSlots",
               specs: dict[str, ArraySpec]) -> dict[str, "torch.Tensor"]:
        """One layer's captured attention (maps (B, h, L, L), or queries, keys and values side by
        side (B, h, L, n d_k)) -> the real entries of its stored arrays `specs` (`specs()`)."""

    @abstractmethod
    def decode(self, parts: dict[str, "torch.Tensor"], slots: "PaddedSlots", mask: "torch.Tensor") -> "torch.Tensor":
        """One layer's stored entries (in their stored types) -> (B, h, L, L) float32 maps, zero
        outside real (query, key) pairs; `mask` (B, L) is True on real tokens."""


@dataclass(frozen=True)
class Maps(AttentionEncoding):
    """Every real (head, query, key) cell, in a float type or uint8 (probabilities to 1/255)."""

    form: str = "float16"

    def __str__(self) -> str:
        return f"maps:{self.form}"

    @property
    def probabilities_only(self) -> bool:  # type: ignore[override]
        return self.form == "uint8"

    def specs(self, hidden_size: int, num_heads: int, max_seq_len: int) -> dict[str, ArraySpec]:
        return {"attention": ArraySpec(CELL, (), self.form, ATTENTION)}

    def encode(self, captured: "torch.Tensor", slots: "PaddedSlots",
               specs: dict[str, ArraySpec]) -> dict[str, "torch.Tensor"]:
        return {"attention": to_stored_type(slots.gather(captured, CELL), self.form)}

    def decode(self, parts: dict[str, "torch.Tensor"], slots: "PaddedSlots", mask: "torch.Tensor") -> "torch.Tensor":
        return slots.scatter(to_float(parts["attention"], self.form), CELL).view(slots.padded_shape(CELL))


@dataclass(frozen=True)
class Factored(AttentionEncoding):
    """Each layer's queries and keys (and values, `with_values`) per token, as vectors."""

    vectors: VectorEncoding = field(default_factory=FloatVectors)
    with_values: bool = False

    def __str__(self) -> str:
        return f"{'qkv' if self.with_values else 'qk'}:{self.vectors}"

    @property
    def captured(self) -> tuple[str, ...]:
        return ("query", "key", "value") if self.with_values else ("query", "key")

    def capture(self, kind: AttentionKind) -> Capture:
        return Factors.QKV if self.with_values else Factors.QK

    def decodes_to(self, kind: AttentionKind) -> AttentionKind:
        return AttentionKind.SCORES  # and probabilities by a softmax, when a loss wants them

    def specs(self, hidden_size: int, num_heads: int, max_seq_len: int) -> dict[str, ArraySpec]:
        head_dim = hidden_size // num_heads
        return {name: spec for array in self.captured
                for name, spec in self.vectors.specs(array, hidden_size, head_dim, ATTENTION).items()}

    def encode(self, captured: "torch.Tensor", slots: "PaddedSlots",
               specs: dict[str, ArraySpec]) -> dict[str, "torch.Tensor"]:
        width = specs["query"].trailing[0]
        head_dim = width // slots.heads
        per_token = captured.transpose(1, 2)  # (B, L, h, n d_k)
        out: dict[str, torch.Tensor] = {}
        for n, name in enumerate(self.captured):
            rows = slots.gather(per_token[..., n * head_dim:(n + 1) * head_dim], TOKEN, (width,))
            out |= self.vectors.encode(name, rows, head_dim)
        return out

    def decode(self, parts: dict[str, "torch.Tensor"], slots: "PaddedSlots", mask: "torch.Tensor") -> "torch.Tensor":
        q, k = self.factors(parts, slots, mask, ("query", "key"))
        head_dim = q.shape[-1]
        pairs = mask[:, None, :, None] & mask[:, None, None, :]
        return (q @ k.transpose(2, 3) * head_dim**-0.5).masked_fill_(~pairs, 0.0)  # what BERT's attention computes

    def factors(self, parts: dict[str, "torch.Tensor"], slots: "PaddedSlots", mask: "torch.Tensor",
                names: tuple[str, ...]) -> list["torch.Tensor"]:
        """The stored vectors `names` (query, key, value), each (B, h, L, d_k), zero on padding."""
        b, longest = mask.shape
        head_dim = parts["query"].shape[-1] // slots.heads
        return [slots.scatter(self.vectors.decode(name, parts, head_dim), TOKEN)
                .view(b, longest, slots.heads, head_dim).transpose(1, 2) for name in names]


@dataclass(frozen=True)
class TopK(AttentionEncoding):
    """The `k` largest probabilities of each (head, query) row, with their key positions."""

    k: int
    form: str = "float16"
    probabilities_only = True

    def __str__(self) -> str:
        return f"topk:{self.k}"

    def specs(self, hidden_size: int, num_heads: int, max_seq_len: int) -> dict[str, ArraySpec]:
        index = "uint8" if max_seq_len <= 256 else "int16"
        return {"topk_index": ArraySpec(ROW, (self.k,), index, ATTENTION),
                "topk_prob": ArraySpec(ROW, (self.k,), self.form, ATTENTION)}

    def encode(self, captured: "torch.Tensor", slots: "PaddedSlots",
               specs: dict[str, ArraySpec]) -> dict[str, "torch.Tensor"]:
        import torch.nn.functional as F

        kept = min(self.k, captured.shape[-1])
        prob, index = captured.topk(kept, dim=-1, sorted=False)
        # Keys past an example's end hold probability 0: point them at key 0, where they add nothing.
        index = index.masked_fill(index >= slots.lengths[:, None, None, None], 0)
        prob, index = (F.pad(t, (0, self.k - kept)) for t in (prob, index))  # a batch shorter than K
        return {"topk_index": slots.gather(index, ROW, (self.k,)).to(torch_dtype(specs["topk_index"].dtype)),
                "topk_prob": to_stored_type(slots.gather(prob, ROW, (self.k,)), self.form)}

    def decode(self, parts: dict[str, "torch.Tensor"], slots: "PaddedSlots", mask: "torch.Tensor") -> "torch.Tensor":
        import torch

        index = slots.scatter(parts["topk_index"].long(), ROW)  # (B * h * L, K)
        prob = slots.scatter(parts["topk_prob"].float(), ROW)
        maps = torch.zeros(len(index), slots.longest, device=index.device).scatter_add_(1, index, prob)
        return maps.view(slots.padded_shape(CELL))


@dataclass(frozen=True)
class NoAttention(AttentionEncoding):
    """No attention at all: hidden states only, what the sentence-vector objective reads. The
    teacher runs its fused attention kernel, and the cache holds no attention layer."""

    def __str__(self) -> str:
        return NONE

    def specs(self, hidden_size: int, num_heads: int, max_seq_len: int) -> dict[str, ArraySpec]:
        return {}

    def encode(self, captured: "torch.Tensor", slots: "PaddedSlots",
               specs: dict[str, ArraySpec]) -> dict[str, "torch.Tensor"]:
        raise AssertionError("a cache without attention encodes none")

    def decode(self, parts: dict[str, "torch.Tensor"], slots: "PaddedSlots", mask: "torch.Tensor") -> "torch.Tensor":
        raise AssertionError("a cache without attention decodes none")


NONE = "none"


def attention_encoding(spec: str, option: str = "--attention-encoding") -> AttentionEncoding:
    """maps[:TYPE] | uint8 | qk[:ENC] | qkv[:ENC] | topk:K | none (AUTO is resolved by `choose_attention`)."""
    kind, _, form = spec.partition(":")
    if spec == NONE:
        return NoAttention()
    if spec == "uint8":
        return Maps("uint8")
    if kind == "maps" and (form or "float16") in MAP_TYPES:
        return Maps(form or "float16")
    if kind in ("qk", "qkv") and (form or "float16") in VECTOR_ENCODINGS:
        return Factored(vector_encoding(form or "float16", option), with_values=kind == "qkv")
    if kind == "topk" and form.isdigit() and int(form) >= 1:
        return TopK(int(form))
    raise UserError(f"{option} {spec}: choose maps[:{'|'.join(MAP_TYPES)}], uint8, "
                    f"qk[:{'|'.join(VECTOR_ENCODINGS)}], qkv[:...], topk:K, {NONE} or {AUTO}")


def choose_attention(requested: AttentionEncoding | None, lengths: np.ndarray, hidden_size: int, num_heads: int,
                     max_seq_len: int, factored: bool = True) -> AttentionEncoding:
    """The encoding asked for; None (auto): the smallest exact float16 one for these lengths
    (maps where queries and keys do not give the scores: not `factored`)."""
    if requested is not None:
        return requested
    candidates = [Maps(), Factored()] if factored else [Maps()]
    return min(candidates, key=lambda e: specs_bytes(e.specs(hidden_size, num_heads, max_seq_len),
                                                     lengths, num_heads, {ATTENTION: 1}).sum())


STORED, TABLES = "stored", "tables"
EMBEDDING_OUTPUTS = (STORED, TABLES, AUTO)


def choose_embedding_output(spec: str, lengths: np.ndarray, hidden: VectorEncoding, hidden_size: int,
                            tables_bytes: int | None) -> str:
    """STORED or TABLES; AUTO: whichever takes fewer bytes for these lengths (float32 tables against
    layer 0 in the hidden encoding: the tables win past about twice the vocabulary in tokens with
    float16, four times with 8 bits). `tables_bytes` None: the tables do not give the teacher's
    layer 0 (`cache.format.embeddings`), and it is stored."""
    if tables_bytes is None:
        if spec == TABLES:
            raise UserError("--embedding-output tables: this teacher projects its embeddings to its layers' width, "
                            "so its tables alone do not give layer 0; use stored (or auto)")
        return STORED
    if spec != AUTO:
        return spec
    stored = specs_bytes(hidden.specs(HIDDEN, hidden_size, hidden_size, HIDDEN), lengths, 1, {HIDDEN: 1}).sum()
    return TABLES if tables_bytes < stored else STORED
