"""Stored value types. numpy has no bfloat16, so bfloat16 values are stored as their uint16 bits."""

import numpy as np
import torch

_TORCH = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "uint8": torch.uint8}
_NUMPY = {"float16": np.float16, "bfloat16": np.uint16, "float32": np.float32, "uint8": np.uint8}


def torch_dtype(name: str) -> torch.dtype:
    return _TORCH[name]


def numpy_dtype(name: str) -> np.dtype:
    return np.dtype(_NUMPY[name])


def to_stored_type(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Cast to the stored type; for uint8, quantise probabilities in [0, 1] to 0..255 (values
    already in uint8 are taken as quantised)."""
    if name == "uint8" and tensor.dtype != torch.uint8:
        return (tensor.float() * 255).round_().to(torch.uint8)
    return tensor.to(_TORCH[name])


def to_float(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Stored values as float32 (uint8 back to probabilities in [0, 1])."""
    return tensor.float() / 255 if name == "uint8" else tensor.float()


def to_storage(tensor: torch.Tensor, name: str) -> np.ndarray:
    """Cast to the stored type and move to host memory as a numpy array."""
    tensor = to_stored_type(tensor, name)
    if name == "bfloat16":
        tensor = tensor.view(torch.int16)
    return tensor.cpu().numpy().view(_NUMPY[name])


def from_storage(array: np.ndarray, name: str) -> torch.Tensor:
    """A torch view of stored values, in the stored type (callers cast as they need)."""
    if name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)
