"""Training precision: which type the matrix products run in, as one autocast context. torch is
imported when first needed: the command line checks --precision before it loads."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "float32", "bfloat16")
"""`float32`, `bfloat16` (autocast), or `auto`: bfloat16 on CUDA, float32 on a CPU."""


def resolve_precision(precision: str, device: "torch.device") -> str:
    """`auto` is bfloat16 on CUDA and float32 on a CPU. On a CPU bfloat16 pays where it has
    AVX512-BF16 or AMX (docs/benchmarks.md); without them the products are
    not native, so a CPU user asks for it after `bench.precision_bench` shows it pays."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "auto":
        return "bfloat16" if device.type == "cuda" else "float32"
    return precision


def autocast(precision: str, device: "torch.device") -> "torch.autocast":
    """Autocast for a resolved precision: losses and optimiser state stay float32 either way."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")
