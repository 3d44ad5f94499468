"""Stream distillation targets from a cache: shuffled windows of blocks, batches padded per batch.

An epoch's order is a pure function of (seed, epoch) and the cache's lengths: blocks in random
order, grouped into windows of `window_blocks` (the shuffle buffer), examples shuffled inside a
window and cut into batches. A window is one DataLoader item, so workers read and gather whole
windows ahead of the trainer, memory stays bounded by a few windows whatever the cache size, and
the batch sequence does not depend on the number of workers: resuming skips windows, then batches.

Under DDP the order is the same global batches; rank r trains on the r-th of K near-equal parts of
each (a `Share`), and every loss divides by the global batch's sizes (`BatchTotals`), so K ranks'
gradients, averaged by DDP, are the one-process gradient of the same batch.
"""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cache import Cache, RaggedExamples
from cache.format.embeddings import EmbeddingTables
from cache.format.transfer import Slot, pack, unpack
from cache.read.decode import PaddedTargets, decode_batch
from cache.read.ragged import ArrayKey, concatenate
from cache.runtime.distributed import ONE_PROCESS, Ranks
from cache.runtime.errors import CacheError
from cache.runtime.kinds import Capture


@dataclass(frozen=True)
class BatchTotals:
    """Sizes of a whole (global) batch: what its loss means divide by, on every rank's share."""

    examples: int
    tokens: int
    pairs: int
    """(query, key) pairs of real tokens: sum of L_i^2."""

    @classmethod
    def of(cls, lengths: np.ndarray) -> "BatchTotals":
        lengths = lengths.astype(np.int64)
        return cls(len(lengths), int(lengths.sum()), int((lengths**2).sum()))


@dataclass
class Batch(PaddedTargets):
    """A padded batch on one device (a rank's share of a global batch under DDP)."""

    totals: BatchTotals = BatchTotals(0, 0, 0)
    """Of the global batch this one is a share of (of this batch itself without DDP)."""
    counts: bool = True
    """False for a stand-in share, whose losses are multiplied by 0 (see `BatchOrder.share`)."""

    def __len__(self) -> int:
        return self.input_ids.shape[0]


class BatchOrder:
    """Which examples form which batch, for every epoch, computed from lengths alone.

    `batch_size` is the global batch; with K ranks, `share` cuts each into K parts.
    """

    def __init__(self, block_starts: np.ndarray, batch_size: int, window_blocks: int, seed: int,
                 ranks: Ranks = ONE_PROCESS):
        self.block_starts, self.batch_size = block_starts, batch_size
        self.window_blocks, self.seed, self.ranks = window_blocks, seed, ranks

    def windows(self, epoch: int) -> list[np.ndarray]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.block_starts) - 1)
        return [order[i:i + self.window_blocks] for i in range(0, len(order), self.window_blocks)]

    def batches(self, epoch: int, window: int, blocks: np.ndarray) -> list[np.ndarray]:
        """Example indices (into the window's concatenated blocks) of each global batch of a window."""
        size = int(sum(self.block_starts[k + 1] - self.block_starts[k] for k in blocks))
        order = np.random.default_rng([self.seed, epoch, window]).permutation(size)
        return [order[i:i + self.batch_size] for i in range(0, size, self.batch_size)]

    def share(self, rows: np.ndarray) -> tuple[np.ndarray, bool]:
        """This rank's part of a global batch, and whether it counts. A batch smaller than the ranks
        (a window's last) leaves some with nothing; DDP needs every rank in every step, so such a
        rank steps on a stand-in (the batch's first example) whose losses are multiplied by 0."""
        part = np.array_split(rows, self.ranks.world)[self.ranks.rank]
        return (part, True) if len(part) else (rows[:1], False)

    def steps_per_epoch(self, epoch: int) -> int:
        return sum(len(self.batches(epoch, w, blocks)) for w, blocks in enumerate(self.windows(epoch)))


@dataclass
class PackedBatch:
    """A ragged batch in one shared-memory byte tensor: what a reader process hands over. One
    tensor per batch, not one per array: each tensor crosses processes as its own shared-memory
    segment and file descriptor, which cost the GPU trainer more than its training step."""

    skeleton: RaggedExamples  # arrays replaced by (offset, dtype, shape)
    buffer: torch.Tensor  # uint8

    @classmethod
    def of(cls, ragged: RaggedExamples) -> "PackedBatch":
        arrays = ragged.arrays()
        buffer, slots = pack(list(arrays.values()))
        return cls(ragged.with_arrays(dict(zip(arrays, slots, strict=True))), buffer)

    def unpack(self) -> RaggedExamples:
        """Numpy views of the buffer (no copy)."""
        slots = cast(dict[ArrayKey, Slot], self.skeleton.arrays())  # the skeleton holds slots
        return self.skeleton.with_arrays(dict(zip(slots, unpack(self.buffer, list(slots.values())), strict=True)))


@dataclass
class Share:
    """This rank's part of one global batch (the whole batch without DDP)."""

    examples: RaggedExamples | PackedBatch
    totals: BatchTotals
    """Of the global batch."""
    counts: bool = True
    """False for a stand-in (`BatchOrder.share`)."""


class WindowDataset(Dataset):
    """Item w: the ragged batches of window w of one epoch, packed when a reader process reads it;
    its blocks read `prefetch` at a time."""

    def __init__(self, cache: Cache, order: BatchOrder, epoch: int, pack: bool, prefetch: int = 1):
        self.cache, self.order, self.epoch, self.pack, self.prefetch = cache, order, epoch, pack, prefetch
        self.windows = order.windows(epoch)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, w: int) -> list[Share] | CacheError:
        try:
            blocks = read_blocks(self.cache, self.windows[w], self.prefetch)
        except CacheError as error:  # handed back as a value: a worker's raise would add its traceback
            return error
        window = concatenate(blocks)
        shares = []
        for rows in self.order.batches(self.epoch, w, self.windows[w]):
            part, counts = self.order.share(rows)
            examples = window.take(part)
            shares.append(Share(PackedBatch.of(examples) if self.pack else examples,
                                BatchTotals.of(window.lengths[rows]), counts))
        return shares


def read_blocks(cache: Cache, blocks: np.ndarray, concurrent: int) -> list[RaggedExamples]:
    """Blocks read `concurrent` at a time: an object store answers each request after a round trip,
    which threads overlap (zarr and numpy release the GIL while they wait and decode)."""
    if concurrent <= 1:
        return [cache.read_block(int(k)) for k in blocks]
    with ThreadPoolExecutor(min(concurrent, len(blocks))) as pool:
        return list(pool.map(lambda k: cache.read_block(int(k)), blocks))


def pad_batch(ragged: RaggedExamples, device: torch.device, attention: Capture | None,
              share: Share | None = None, embeddings: EmbeddingTables | None = None) -> Batch:
    """Decode and pad a ragged batch on `device` (`cache.read.decode`), its attention as the kind
    `attention` (None: as the cache decodes). `share`: the global batch's totals and whether this
    share counts (default: a whole batch). `embeddings` (on `device`): the teacher's tables, where
    the cache recomputes layer 0."""
    targets = decode_batch(ragged, device, attention, embeddings)
    return Batch(**vars(targets), totals=share.totals if share else BatchTotals.of(ragged.lengths),
                 counts=share.counts if share else True)


def _read_ahead(dataset: WindowDataset, first: int) -> Iterator:
    """The windows from `first` on, each read on a thread while the one before it is consumed."""
    with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as pool:
        pending = pool.submit(dataset.__getitem__, first) if first < len(dataset) else None
        for w in range(first, len(dataset)):
            assert pending is not None
            window = pending.result()
            pending = pool.submit(dataset.__getitem__, w + 1) if w + 1 < len(dataset) else None
            yield window


def _as_is(window: list) -> list:
    """A window's batches are already batches: no collation."""
    return window


def stream_batches(cache: Cache, order: BatchOrder, epoch: int, skip: int, workers: int,
                   prefetch: int = 1) -> Iterator[Share]:
    """This rank's shares of the epoch's batches in order, with their examples unpacked,
    after skipping the first `skip` (for resume). With `prefetch` > 1, blocks are read that many at
    a time and, without reader processes, the next window is read on a thread while this one trains."""
    dataset = WindowDataset(cache, order, epoch, pack=workers > 0, prefetch=prefetch)
    first, counted = 0, 0
    for w, blocks in enumerate(dataset.windows):  # whole windows to skip, from lengths alone
        n = len(order.batches(epoch, w, blocks))
        if counted + n > skip:
            break
        first, counted = w + 1, counted + n
    # Its own generator: a DataLoader otherwise draws its base seed from the global torch RNG,
    # which would shift the student's dropout masks after a resume.
    loader = DataLoader(dataset, batch_size=None, sampler=range(first, len(dataset)), num_workers=workers,
                        prefetch_factor=2 if workers else None, collate_fn=_as_is,
                        generator=torch.Generator().manual_seed(order.seed))
    to_skip = skip - counted
    for window in loader if workers or prefetch <= 1 else _read_ahead(dataset, first):
        if isinstance(window, CacheError):
            raise window
        for share in window:
            if to_skip:
                to_skip -= 1
                continue
            if isinstance(share.examples, PackedBatch):
                share.examples = share.examples.unpack()
            yield share
