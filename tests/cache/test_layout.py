"""Block planning, ragged offsets and chunk shapes against plain loops."""

from dataclasses import replace

import numpy as np
import pytest

from cache.format.encoding import attention_encoding, vector_encoding
from cache.format.layout import Geometry, chunk_length, plan_blocks
from cache.runtime.arrays import pad_ragged, ragged_positions

GEOMETRY = Geometry(hidden_size=8, num_heads=2, hidden_layers=(0, 1, 2), attention_layers=(1, 2))


def test_ragged_positions_and_padding():
    starts, sizes = np.array([5, 0, 20]), np.array([3, 0, 2])
    assert ragged_positions(starts, sizes).tolist() == [5, 6, 7, 20, 21]
    flat = np.arange(30)
    padded = pad_ragged(flat, starts, sizes, pad=-1)
    assert padded.tolist() == [[5, 6, 7], [-1, -1, -1], [20, 21, -1]]


def test_blocks_cover_everything_at_about_the_target_size():
    lengths = np.random.default_rng(0).integers(3, 60, size=1000)
    sizes = GEOMETRY.example_bytes(lengths)
    assert sizes[7] == 2 * (3 * lengths[7] * 8 + 2 * 2 * lengths[7] ** 2)
    starts = plan_blocks(lengths, GEOMETRY, 50_000)
    assert starts[0] == 0 and starts[-1] == 1000 and np.all(np.diff(starts) > 0)
    block_bytes = np.add.reduceat(sizes, starts[:-1])
    assert np.all(block_bytes[:-1] >= 50_000 - sizes.max()) and np.all(block_bytes <= 50_000 + sizes.max())
    assert np.array_equal(plan_blocks(lengths, GEOMETRY, 50_000), starts)  # deterministic


def test_chunks_are_balanced():
    for extent in [1, 7, 1000, 123_457]:
        for row_bytes in [2, 768, 1 << 21]:
            chunk = chunk_length(extent, row_bytes)
            n_chunks = -(-extent // chunk)
            assert n_chunks * chunk - extent < n_chunks  # the edge chunk is nearly full


@pytest.mark.parametrize("hidden, attention, per_layer", [
    # (bytes per token of one hidden layer, bytes of one attention layer for an example of length L)
    ("float32", "maps:uint8", (4 * 8, lambda n: 2 * n * n)),
    ("int8", "qk", (8 + 4, lambda n: 2 * n * 8 * 2)),  # one float32 scale per row of 8
    ("fp8", "qkv:int8", (8 + 4, lambda n: 3 * n * (8 + 2 * 4))),  # a scale per head (d_k = 4)
    ("bfloat16", "topk:3", (2 * 8, lambda n: 2 * n * 3 * (1 + 2))),  # uint8 key (L <= 256), float16 probability
])
def test_bytes_of_each_encoding(hidden, attention, per_layer):
    geometry = replace(GEOMETRY, hidden=vector_encoding(hidden), attention=attention_encoding(attention),
                       max_seq_len=128)
    lengths = np.array([1, 5, 17])
    hidden_bytes, attention_bytes = per_layer
    assert geometry.example_bytes(lengths, "hidden").tolist() == [3 * n * hidden_bytes for n in lengths]
    assert geometry.example_bytes(lengths, "attention").tolist() == [2 * attention_bytes(n) for n in lengths]
