"""Stream distillation targets from a cache: shuffled windows of blocks, batches padded per batch.

An epoch's order is a pure function of (seed, epoch) and the cache's lengths: blocks in random
order, grouped into windows of `window_blocks` (the shuffle buffer), examples shuffled inside a
window and cut into batches. A window is one DataLoader item, so workers read and gather whole
windows ahead of the trainer, memory stays bounded by a few windows whatever the cache size, and
the batch sequence does not depend on the number of workers: resuming skips windows, then batches.
"""

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cache import Cache, RaggedExamples
from cache.errors import CacheError
from cache.layout import ragged_positions
from student.losses import probabilities_from_scores


@dataclass
class Batch:
    """A padded batch on one device; `mask` is True on real tokens."""

    input_ids: torch.Tensor  # (B, L)
    token_type_ids: torch.Tensor  # (B, L)
    mask: torch.Tensor  # (B, L) bool
    labels: torch.Tensor | None  # (B,)
    logits: torch.Tensor | None  # (B, C)
    hidden: dict[int, torch.Tensor]  # layer -> (B, L, d) float32
    attention: dict[int, torch.Tensor]  # layer -> (B, h, L, L) float32

    def __len__(self) -> int:
        return self.input_ids.shape[0]


class EpochPlan:
    """Which examples form which batch, for every epoch, computed from lengths alone."""

    def __init__(self, block_starts: np.ndarray, batch_size: int, window_blocks: int, seed: int):
        self.block_starts, self.batch_size, self.window_blocks, self.seed = block_starts, batch_size, window_blocks, seed

    def windows(self, epoch: int) -> list[np.ndarray]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.block_starts) - 1)
        return [order[i:i + self.window_blocks] for i in range(0, len(order), self.window_blocks)]

    def batches(self, epoch: int, window: int, blocks: np.ndarray) -> list[np.ndarray]:
        """Example indices (into the window's concatenated blocks) of each batch of a window."""
        size = int(sum(self.block_starts[k + 1] - self.block_starts[k] for k in blocks))
        order = np.random.default_rng([self.seed, epoch, window]).permutation(size)
        return [order[i:i + self.batch_size] for i in range(0, size, self.batch_size)]

    def steps_per_epoch(self, epoch: int) -> int:
        return sum(len(self.batches(epoch, w, blocks)) for w, blocks in enumerate(self.windows(epoch)))


class WindowDataset(Dataset):
    """Item w: the ragged batches of window w of one epoch (read in a DataLoader worker)."""

    def __init__(self, cache: Cache, plan: EpochPlan, epoch: int):
        self.cache, self.plan, self.epoch = cache, plan, epoch
        self.windows = plan.windows(epoch)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, w: int) -> list[RaggedExamples] | CacheError:
        try:
            blocks = [self.cache.read_block(int(k)) for k in self.windows[w]]
        except CacheError as error:  # handed back as a value: a worker's raise would add its traceback
            return error
        window = _concatenate(blocks)
        return [_as_tensors(_take(window, rows)) for rows in self.plan.batches(self.epoch, w, self.windows[w])]


def _map_arrays(ragged: RaggedExamples, fn) -> RaggedExamples:
    def apply(a):
        return fn(a) if a is not None else None

    return replace(ragged, indices=apply(ragged.indices), lengths=apply(ragged.lengths),
                   input_ids=apply(ragged.input_ids), token_type_ids=apply(ragged.token_type_ids),
                   labels=apply(ragged.labels), logits=apply(ragged.logits),
                   hidden={k: apply(v) for k, v in ragged.hidden.items()},
                   attention={k: apply(v) for k, v in ragged.attention.items()})


def _as_tensors(ragged: RaggedExamples) -> RaggedExamples:
    """Torch views of a batch's arrays: a worker hands tensors over in shared memory, where numpy
    arrays would be pickled through a pipe (four copies of every value instead of one)."""
    return _map_arrays(ragged, lambda a: torch.from_numpy(a.view(np.int16) if a.dtype == np.uint16 else a))


def _as_arrays(ragged: RaggedExamples) -> RaggedExamples:
    """The numpy views back, bfloat16 bits as uint16 again (no other array is 16-bit integer)."""
    return _map_arrays(ragged, lambda t: t.numpy().view(np.uint16) if t.dtype == torch.int16 else t.numpy())


def _concatenate(blocks: list[RaggedExamples]) -> RaggedExamples:
    def cat(arrays):
        return np.concatenate(arrays) if arrays[0] is not None else None

    first = blocks[0]
    return RaggedExamples(
        indices=cat([b.indices for b in blocks]), lengths=cat([b.lengths for b in blocks]),
        input_ids=cat([b.input_ids for b in blocks]), token_type_ids=cat([b.token_type_ids for b in blocks]),
        labels=cat([b.labels for b in blocks]), logits=cat([b.logits for b in blocks]),
        hidden={layer: cat([b.hidden[layer] for b in blocks]) for layer in first.hidden},
        attention={layer: cat([b.attention[layer] for b in blocks]) for layer in first.attention},
        num_heads=first.num_heads, dtype=first.dtype, attention_dtype=first.attention_dtype,
    )


def _take(window: RaggedExamples, rows: np.ndarray) -> RaggedExamples:
    """The examples `rows` of a window, gathered with one fancy index per array."""
    lengths = window.lengths[rows]
    tokens = ragged_positions(window.token_offsets[rows], lengths)
    cells = ragged_positions(window.attention_offsets[rows], window.num_heads * lengths.astype(np.int64) ** 2)
    return RaggedExamples(
        indices=window.indices[rows], lengths=lengths,
        input_ids=window.input_ids[tokens], token_type_ids=window.token_type_ids[tokens],
        labels=window.labels[rows] if window.labels is not None else None,
        logits=window.logits[rows] if window.logits is not None else None,
        hidden={layer: h[tokens] for layer, h in window.hidden.items()},
        attention={layer: a[cells] for layer, a in window.attention.items()},
        num_heads=window.num_heads, dtype=window.dtype, attention_dtype=window.attention_dtype,
    )


def pad_batch(ragged: RaggedExamples, device: torch.device, probabilities: bool) -> Batch:
    """Pad a ragged batch to its longest example (dynamic padding), as float32 targets on `device`.

    The padding runs on `device`: only the real tokens cross to a GPU, in the stored type, from
    pinned memory, and the scatter into (B, h, L, L) happens there. Every size comes from the
    host's lengths, so nothing here waits for the GPU: the next batch is queued while the last
    step still runs. With `probabilities`, cached scores become probabilities (softmax over real keys).
    """
    from cache.dtypes import from_storage, to_float

    heads, dtype = ragged.num_heads, ragged.dtype
    host_lengths = ragged.lengths.astype(np.int64)
    b, longest = len(host_lengths), int(host_lengths.max())
    lengths = _to_device(torch.from_numpy(host_lengths), device)
    mask = torch.arange(longest, device=device)[None, :] < lengths[:, None]  # (B, L)
    token_slots = _token_slots(lengths, int(host_lengths.sum()), longest)
    cell_slots = _attention_slots(lengths, int(heads * (host_lengths**2).sum()), heads, longest)

    def on_device(values: np.ndarray | None) -> torch.Tensor | None:
        return None if values is None else _to_device(torch.from_numpy(values), device)

    def tokens(values: np.ndarray) -> torch.Tensor:
        out = torch.zeros(b * longest, dtype=torch.long, device=device)
        return out.index_copy_(0, token_slots, on_device(values.astype(np.int64))).view(b, longest)

    def hidden(values: np.ndarray) -> torch.Tensor:
        flat = _to_device(from_storage(values, dtype), device).float()  # (T, d)
        out = torch.zeros(b * longest, flat.shape[1], device=device)
        return out.index_copy_(0, token_slots, flat).view(b, longest, -1)

    def attention(values: np.ndarray) -> torch.Tensor:
        flat = to_float(_to_device(from_storage(values, ragged.attention_dtype), device), ragged.attention_dtype)
        out = torch.zeros(b * heads * longest * longest, device=device)
        out = out.index_copy_(0, cell_slots, flat).view(b, heads, longest, longest)
        return probabilities_from_scores(out, mask) if probabilities else out

    return Batch(
        input_ids=tokens(ragged.input_ids), token_type_ids=tokens(ragged.token_type_ids), mask=mask,
        labels=on_device(ragged.labels), logits=on_device(ragged.logits),
        hidden={layer: hidden(h) for layer, h in ragged.hidden.items()},
        attention={layer: attention(a) for layer, a in ragged.attention.items()},
    )


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """An asynchronous copy to a GPU (through pinned memory: a pageable copy would wait for the GPU)."""
    return t if device.type == "cpu" else t.pin_memory().to(device, non_blocking=True)


def _ragged_cells(sizes: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(example, index within the example) of every cell of examples holding `sizes` cells each,
    in stored order; `total`, their sum known on the host, keeps repeat_interleave from syncing a GPU."""
    example = torch.repeat_interleave(torch.arange(len(sizes), device=sizes.device), sizes, output_size=total)
    starts = torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes, output_size=total)
    return example, torch.arange(total, device=sizes.device) - starts


def _token_slots(lengths: torch.Tensor, total: int, longest: int) -> torch.Tensor:
    """Flat positions in (B, L) of each example's real tokens."""
    example, position = _ragged_cells(lengths, total)
    return example * longest + position


def _attention_slots(lengths: torch.Tensor, total: int, heads: int, longest: int) -> torch.Tensor:
    """Flat positions in (B, h, L, L) of each example's (h, L_i, L_i) cells, in stored order."""
    example, local = _ragged_cells(heads * lengths**2, total)
    length = lengths[example]
    head, cell = local // length**2, local % length**2
    query, key = cell // length, cell % length
    return ((example * heads + head) * longest + query) * longest + key


def _as_is(window: list[RaggedExamples]) -> list[RaggedExamples]:
    """A window's batches are already batches: no collation."""
    return window


def stream_batches(cache: Cache, plan: EpochPlan, epoch: int, skip: int, workers: int) -> Iterator[RaggedExamples]:
    """The epoch's ragged batches in plan order, after skipping the first `skip` (for resume)."""
    dataset = WindowDataset(cache, plan, epoch)
    first, counted = 0, 0
    for w, blocks in enumerate(dataset.windows):  # whole windows to skip, from lengths alone
        n = len(plan.batches(epoch, w, blocks))
        if counted + n > skip:
            break
        first, counted = w + 1, counted + n
    # Its own generator: a DataLoader otherwise draws its base seed from the global torch RNG,
    # which would shift the student's dropout masks after a resume.
    loader = DataLoader(dataset, batch_size=None, sampler=range(first, len(dataset)), num_workers=workers,
                        prefetch_factor=2 if workers else None, collate_fn=_as_is,
                        generator=torch.Generator().manual_seed(plan.seed))
    to_skip = skip - counted
    for window in loader:
        if isinstance(window, CacheError):
            raise window
        for ragged in window:
            if to_skip:
                to_skip -= 1
                continue
            yield _as_arrays(ragged)
