"""Host arrays onto a device, and where a ragged batch's values sit in its padded tensors.

Shared by the two directions of the same mapping: the dump gathers a padded teacher output into
ragged rows, the student's stream scatters ragged rows into padded targets. Both run on the device
and take every size from the host, so nothing here waits for a GPU: Python queues the next batch
while the last one still runs.
"""

import numpy as np
import torch

from cache.format.entries import CELL, ROW, TOKEN, axis_sizes

Slot = tuple[int, np.dtype, tuple[int, ...]]
"""Where an array sits in a packed buffer: byte offset, dtype, shape."""


def pack(arrays: list[np.ndarray], pin: bool = False, shared: bool = False) -> tuple[torch.Tensor, list[Slot]]:
    """The arrays copied into one byte tensor (pinned, or in shared memory to cross processes as
    one segment), each at an 8-byte-aligned offset so that a view of any dtype works."""
    slots, end = [], 0
    for a in arrays:
        offset = -(-end // 8) * 8
        slots.append((offset, a.dtype, a.shape))
        end = offset + a.nbytes
    buffer = torch.empty(end, dtype=torch.uint8, pin_memory=pin)
    if shared:
        buffer.share_memory_()
    host = buffer.numpy()
    for a, (offset, _, _) in zip(arrays, slots, strict=True):
        host[offset:offset + a.nbytes] = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    return buffer, slots


def unpack(buffer: torch.Tensor, slots: list[Slot]) -> list[np.ndarray]:
    """Numpy views of a packed host buffer (no copy)."""
    host = buffer.numpy()
    return [host[offset:offset + dtype.itemsize * int(np.prod(shape))].view(dtype).reshape(shape)
            for offset, dtype, shape in slots]


def to_device(arrays: dict, device: torch.device) -> dict:
    """Host arrays as tensors on `device` (same bits, same dtype). To a GPU: one asynchronous copy
    of one pinned buffer; a pageable copy waits for the GPU, and pinning and copying each array
    apart costs more than a small student's training step."""
    tensors = {key: torch.from_numpy(np.ascontiguousarray(a)) for key, a in arrays.items()}
    if device.type == "cpu":
        return tensors
    buffer, slots = pack(list(arrays.values()), pin=True)
    on_device = buffer.to(device, non_blocking=True)
    return {key: on_device[offset:offset + t.nbytes].view(t.dtype).view(t.shape)
            for (key, t), (offset, _, _) in zip(tensors.items(), slots, strict=True)}


def token_slots(lengths: torch.Tensor, total: int, longest: int) -> torch.Tensor:
    """Flat positions in (B, L) of each example's real tokens; `total` = lengths.sum() on the host."""
    example, position = _ragged_cells(lengths, total)
    return example * longest + position


def attention_slots(lengths: torch.Tensor, total: int, heads: int, longest: int) -> torch.Tensor:
    """Flat positions in (B, h, L, L) of each example's (h, L_i, L_i) cells, in stored order;
    `total` = (heads * lengths**2).sum() on the host."""
    example, local = _ragged_cells(heads * lengths**2, total)
    length = lengths[example]
    head, cell = local // length**2, local % length**2
    query, key = cell // length, cell % length
    return ((example * heads + head) * longest + query) * longest + key


def _ragged_cells(sizes: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(example, index within the example) of every cell of examples holding `sizes` cells each,
    in stored order; `total`, their sum known on the host, keeps repeat_interleave from syncing a GPU."""
    example = torch.repeat_interleave(torch.arange(len(sizes), device=sizes.device), sizes, output_size=total)
    starts = torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes, output_size=total)
    return example, torch.arange(total, device=sizes.device) - starts


def row_slots(lengths: torch.Tensor, total: int, heads: int, longest: int) -> torch.Tensor:
    """Flat positions in (B, h, L) of each example's (h, L_i) (head, query) rows, in stored order;
    `total` = (heads * lengths).sum() on the host."""
    example, local = _ragged_cells(heads * lengths, total)
    length = lengths[example]
    return (example * heads + local // length) * longest + local % length


class PaddedSlots:
    """Where a batch's entries along each axis (`cache.format.entries`) sit in its padded tensors:
    (B, L) for tokens, (B, h, L) for rows, (B, h, L, L) for cells, in stored order.

    Each axis's flat positions are computed once per batch from lengths known on the host, and one
    gather or scatter moves every entry without waiting for a GPU. Computing the positions of every
    (head, query, key) cell takes several passes over them, which on a CPU costs more than moving
    them: there each example's cells are copied as one slice instead (B copies, one pass)."""

    def __init__(self, lengths: torch.Tensor, host_lengths: np.ndarray, heads: int):
        self.lengths, self.host_lengths, self.heads = lengths, np.asarray(host_lengths, dtype=np.int64), heads
        self.longest = int(self.host_lengths.max(initial=0))
        self.sliced = {CELL} if lengths.device.type == "cpu" else set()
        self._positions: dict[str, torch.Tensor] = {}

    def padded_shape(self, axis: str) -> tuple[int, ...]:
        b, h, n = len(self.host_lengths), self.heads, self.longest
        return {TOKEN: (b, n), ROW: (b, h, n), CELL: (b, h, n, n)}[axis]

    def of(self, axis: str) -> torch.Tensor:
        """Flat positions in the padded layout of the batch's entries along `axis`."""
        if axis not in self._positions:
            total = int(axis_sizes(axis, self.host_lengths, self.heads).sum())
            make = {TOKEN: lambda: token_slots(self.lengths, total, self.longest),
                    ROW: lambda: row_slots(self.lengths, total, self.heads, self.longest),
                    CELL: lambda: attention_slots(self.lengths, total, self.heads, self.longest)}
            self._positions[axis] = make[axis]()
        return self._positions[axis]

    def _examples(self, padded: torch.Tensor, axis: str):
        """Each example's real part of a padded tensor shaped (`padded_shape`, ...), as views."""
        for i, n in enumerate(self.host_lengths.tolist()):
            yield padded[i, :n] if axis == TOKEN else padded[i, :, :n] if axis == ROW else padded[i, :, :n, :n]

    def gather(self, padded: torch.Tensor, axis: str, trailing: tuple[int, ...] = ()) -> torch.Tensor:
        """The real entries (each of shape `trailing`) of a padded tensor laid out as above."""
        if axis not in self.sliced:
            return padded.reshape(-1, *trailing).index_select(0, self.of(axis))
        shaped = padded.reshape(*self.padded_shape(axis), *trailing)
        return torch.cat([part.reshape(-1, *trailing) for part in self._examples(shaped, axis)])

    def scatter(self, values: torch.Tensor, axis: str) -> torch.Tensor:
        """Real entries into zeros of the padded size, flat over the padded leading dimensions."""
        trailing = values.shape[1:]
        out = torch.zeros((*self.padded_shape(axis), *trailing), dtype=values.dtype, device=values.device)
        if axis not in self.sliced:
            return out.view(-1, *trailing).index_copy_(0, self.of(axis), values)
        start = 0
        for part in self._examples(out, axis):
            size = part.numel() // max(trailing.numel(), 1)
            part.copy_(values[start:start + size].view(part.shape))
            start += size
        return out.view(-1, *trailing)
