"""What a cache holds, example by example: a hash of each example's tokens.

Two caches share data when they share a sequence, whatever files, options or splits made them: an
evaluation cache is compared with a training cache by these hashes, not by the files' hashes. The
index stores them (format 5; `cache.read.inspect.stored_sequence_hashes` reads them back).
"""

import hashlib

import numpy as np


def sequence_hash(input_ids: np.ndarray, token_type_ids: np.ndarray) -> int:
    """64 bits of blake2b over one example's ids (as int32) and token types (as int8)."""
    digest = hashlib.blake2b(np.ascontiguousarray(input_ids, dtype=np.int32).tobytes(), digest_size=8)
    digest.update(np.ascontiguousarray(token_type_ids, dtype=np.int8).tobytes())
    return int.from_bytes(digest.digest(), "little")


def sequence_hashes(input_ids: np.ndarray, token_type_ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(n,) uint64 hashes of ragged examples laid end to end."""
    ends = np.cumsum(lengths, dtype=np.int64)
    return np.fromiter((sequence_hash(input_ids[end - n:end], token_type_ids[end - n:end])
                        for end, n in zip(ends, lengths, strict=True)), dtype=np.uint64, count=len(lengths))
