"""Stored value types. numpy has no bfloat16, so bfloat16 values are stored as their uint16 bits."""

import numpy as np
import torch

STORED_DTYPES = ("float16", "bfloat16", "float32")
_TORCH = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_NUMPY = {"float16": np.float16, "bfloat16": np.uint16, "float32": np.float32}


def torch_dtype(name: str) -> torch.dtype:
    return _TORCH[name]


def numpy_dtype(name: str) -> np.dtype:
    return np.dtype(_NUMPY[name])


def to_storage(tensor: torch.Tensor, name: str) -> np.ndarray:
    """Cast to the stored type and move to host memory as a numpy array."""
    tensor = tensor.to(_TORCH[name])
    if name == "bfloat16":
        tensor = tensor.view(torch.int16)
    return tensor.cpu().numpy().view(_NUMPY[name])


def from_storage(array: np.ndarray, name: str) -> torch.Tensor:
    """A torch view of stored values, in the stored type (callers cast as they need)."""
    if name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)
