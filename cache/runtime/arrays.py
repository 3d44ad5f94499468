"""Ragged arrays: examples of different lengths laid end to end, their offsets, and padding."""

import numpy as np


def offsets(sizes: np.ndarray) -> np.ndarray:
    """(n,) sizes -> (n+1,) int64 start offsets with the total last."""
    out = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=out[1:])
    return out


def ragged_positions(starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n), without a Python loop."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - offsets(sizes)[:-1], sizes)
    return np.arange(total, dtype=np.int64) + shift


def pad_ragged(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray, pad: int = 0) -> np.ndarray:
    """Rows `flat[starts[i] : starts[i] + lengths[i]]` right-padded into a (B, max length) array."""
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.full((len(lengths), int(lengths.max(initial=0))), pad, dtype=flat.dtype)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    cols = ragged_positions(np.zeros_like(lengths), lengths)
    out[rows, cols] = flat[ragged_positions(starts, lengths)]
    return out
