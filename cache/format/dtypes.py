"""Stored value types. numpy has neither bfloat16 nor float8, so their values are stored as their
bits (uint16, uint8) and viewed back as torch types. torch is imported when first needed: the
CLI's checks use the sizes here without it."""

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

_TORCH = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32", "uint8": "uint8", "int8": "int8",
          "fp8": "float8_e4m3fn", "int16": "int16"}
_NUMPY = {"float16": np.float16, "bfloat16": np.uint16, "float32": np.float32, "uint8": np.uint8,
          "int8": np.int8, "fp8": np.uint8, "int16": np.int16}
_BITS = {"bfloat16": "int16", "fp8": "uint8"}
"""Types numpy lacks, moved through numpy as integers of the same width."""


def torch_dtype(name: str) -> "torch.dtype":
    import torch

    return getattr(torch, _TORCH[name])


def bits_dtype(name: str) -> "torch.dtype":
    """The type to move and copy values in: float8 as uint8 (few kernels take float8 tensors)."""
    return torch_dtype("uint8" if name == "fp8" else name)


def numpy_dtype(name: str) -> np.dtype:
    return np.dtype(_NUMPY[name])


def to_stored_type(tensor: "torch.Tensor", name: str) -> "torch.Tensor":
    """Cast to the stored type; for uint8, quantise probabilities in [0, 1] to 0..255 (values
    already in uint8 are taken as quantised)."""
    stored = torch_dtype(name)
    if name == "uint8" and tensor.dtype != stored:
        return (tensor.float() * 255).round_().to(stored)
    return tensor.to(stored)


def to_float(tensor: "torch.Tensor", name: str) -> "torch.Tensor":
    """Stored values (in their torch type) as float32; uint8 back to probabilities in [0, 1]."""
    return tensor.float() / 255 if name == "uint8" else tensor.float()


def to_storage(tensor: "torch.Tensor", name: str) -> np.ndarray:
    """Cast to the stored type and move to host memory as a numpy array."""
    tensor = to_stored_type(tensor, name)
    if name in _BITS:
        tensor = tensor.view(torch_dtype(_BITS[name]))
    return tensor.cpu().numpy().view(_NUMPY[name])


def from_storage(array: "np.ndarray | torch.Tensor", name: str) -> "torch.Tensor":
    """A torch view of stored values (a host array, or its bits already on a device), in the
    stored type (callers cast as they need)."""
    import torch

    tensor = torch.from_numpy(array) if isinstance(array, np.ndarray) else array
    if name in _BITS:
        return tensor.view(torch_dtype(_BITS[name])).view(torch_dtype(name))
    return tensor
