"""Host arrays onto a device, and where a ragged batch's values sit in its padded tensors.

Shared by the two directions of the same mapping: the dump gathers a padded teacher output into
ragged rows, the student's stream scatters ragged rows into padded targets. Both run on the device
and take every size from the host, so nothing here waits for a GPU: Python queues the next batch
while the last one still runs.
"""

import numpy as np
import torch

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
