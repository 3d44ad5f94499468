"""The device a command runs on, from its `--device` flag."""

import torch

from cache.runtime.distributed import current_ranks
from cache.runtime.errors import UserError
from cache.runtime.paths import check_device_name


def resolve_device(name: str) -> torch.device:
    """`auto` means CUDA when there is one, else the CPU; anything else must exist on this machine
    (a missing GPU is a one-line error here, not a traceback at the first copy). Under torchrun,
    `auto` and `cuda` mean this rank's GPU, cuda:LOCAL_RANK."""
    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", current_ranks().local_rank)
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"--device: {name} is not on this machine ({torch.cuda.device_count()} CUDA devices)")
    return device
