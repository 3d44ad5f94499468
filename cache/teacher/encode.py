"""Teacher outputs -> the stored entries of every target array: the dump's side of `cache.read.decode`.

Everything runs on the teacher's device on the batch's padded outputs: real entries are gathered
(`cache.format.transfer.PaddedSlots`), then cast or quantised, so only stored bytes cross to the host,
once per block.
"""

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from cache.format.dtypes import to_stored_type, torch_dtype
from cache.format.encoding import CELL, HIDDEN, LARGEST, MAPS, ROW, TOKEN, TOPK, VectorEncoding
from cache.format.layout import Geometry
from cache.format.transfer import PaddedSlots
from cache.teacher.runner import TeacherOutput


def encode_batch(out: TeacherOutput, slots: PaddedSlots, geometry: Geometry) -> Iterator[tuple[str, int, torch.Tensor]]:
    """(array name, position of the layer among the array's stored layers, real entries) for every
    stored array and layer of one batch."""
    d = geometry.hidden_size
    for i, layer in enumerate(geometry.stored_hidden_layers):
        rows = slots.gather(out.hidden[layer], TOKEN, (d,))
        for name, values in encode_vectors(geometry.hidden, HIDDEN, rows, d).items():
            yield name, i, values
    for i, layer in enumerate(geometry.attention_layers):
        for name, values in _encode_attention(out.attention[layer - 1], slots, geometry).items():
            yield name, i, values


def _encode_attention(weights: torch.Tensor, slots: PaddedSlots, geometry: Geometry) -> dict[str, torch.Tensor]:
    """One layer's captured attention (`cache.runtime.attention`: maps (B, h, L, L), or queries, keys and
    values side by side (B, h, L, n d_k)) as the entries of its stored arrays."""
    encoding, specs = geometry.attention, geometry.arrays()
    if encoding.kind == MAPS:
        return {"attention": to_stored_type(slots.gather(weights, CELL), encoding.form)}
    if encoding.kind == TOPK:
        kept = min(encoding.k, weights.shape[-1])
        prob, index = weights.topk(kept, dim=-1, sorted=False)
        # Keys past an example's end hold probability 0: point them at key 0, where they add nothing.
        index = index.masked_fill(index >= slots.lengths[:, None, None, None], 0)
        prob, index = (F.pad(t, (0, encoding.k - kept)) for t in (prob, index))  # a batch shorter than K
        return {"topk_index": slots.gather(index, ROW, (encoding.k,)).to(torch_dtype(specs["topk_index"].dtype)),
                "topk_prob": to_stored_type(slots.gather(prob, ROW, (encoding.k,)), encoding.form)}
    dk, vectors = geometry.head_dim, VectorEncoding(encoding.form)
    per_token = weights.transpose(1, 2)  # (B, L, h, n d_k)
    out: dict[str, torch.Tensor] = {}
    for n, name in enumerate(encoding.captured):
        rows = slots.gather(per_token[..., n * dk:(n + 1) * dk], TOKEN, (geometry.hidden_size,))
        out |= encode_vectors(vectors, name, rows, dk)
    return out


def encode_vectors(encoding: VectorEncoding, array: str, rows: torch.Tensor, group: int) -> dict[str, torch.Tensor]:
    """(n, width) float rows -> the entries of `array` (and of its scale), on the rows' device."""
    if not encoding.scaled:
        return {array: to_stored_type(rows, encoding.name)}
    groups = rows.float().view(len(rows), -1, group)
    scale = groups.abs().amax(-1).clamp_min(torch.finfo(torch.float32).tiny) / LARGEST[encoding.name]
    scaled = groups / scale[..., None]
    values = scaled.round_().to(torch.int8) if encoding.name == "int8" else scaled.to(torch.float8_e4m3fn)
    return {array: values.view(rows.shape), f"{array}_scale": scale}
