"""The processes of one job, as torchrun starts them: who this is, and the few collectives both
recipes need.

torchrun (or any launcher that sets the same environment: SLURM with `srun torchrun`, mpirun with
the variables exported) gives every process RANK, WORLD_SIZE and LOCAL_RANK; a plain `python
cli.py` has none of them and is the one rank of a one-process job, where every collective here
is a no-op. The process group is torch.distributed's: gloo for the dump (its ranks only agree on
who owns the cache and when it is complete) and for CPU training, NCCL for CUDA training.
"""

import datetime
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from cache.runtime.errors import UserError

T = TypeVar("T")

COORDINATION_TIMEOUT = datetime.timedelta(hours=6)
"""How long a rank waits for the others at a collective: a dump's ranks meet only at its start
and its end, which can be hours apart when one node is slower. A rank that dies does not make
the others wait this long: torchrun stops the whole job when any rank fails."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in its job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one that owns the cache's manifest, logs, checkpoints and evaluates."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def __str__(self) -> str:
        return f"rank {self.rank} of {self.world}"


ONE_PROCESS = Ranks()


def current_ranks() -> Ranks:
    """From torchrun's environment; one rank of one when it is not set."""
    try:
        ranks = Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                      int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise UserError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them)") from None
    if not 0 <= ranks.rank < ranks.world:
        raise UserError(f"RANK={ranks.rank} is not in 0..WORLD_SIZE-1={ranks.world - 1}")
    return ranks


@contextmanager
def process_group(ranks: Ranks, backend: str = "gloo") -> Iterator[None]:
    """torch.distributed's default group for the job's ranks, torn down on the way out (nothing
    when the job has one rank, or when the caller already made the group)."""
    if not ranks.distributed or dist.is_initialized():
        yield
        return
    dist.init_process_group(backend, timeout=COORDINATION_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def broadcast(ranks: Ranks, value: object) -> object:
    """Rank 0's `value` on every rank (a picklable object)."""
    if not ranks.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_over_ranks(ranks: Ranks, values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of every rank's `values` (a new tensor; `values` is left alone)."""
    total = values.clone()
    if ranks.distributed:
        dist.all_reduce(total)
    return total


def gather_objects(ranks: Ranks, value: object) -> list:
    """Every rank's `value`, in rank order, on every rank."""
    if not ranks.distributed:
        return [value]
    values: list = [None] * ranks.world
    dist.all_gather_object(values, value)
    return values


def on_main(ranks: Ranks, work: Callable[[], T]) -> T:
    """`work()` on rank 0, its result handed to every rank; a UserError there is raised on every
    rank, so that no rank waits for one that gave up."""
    result: object = None
    if ranks.main:
        try:
            result = work()
        except UserError as error:
            result = error
    result = broadcast(ranks, result)
    if isinstance(result, UserError):
        raise result
    return result  # type: ignore[return-value]
