"""Streaming batches: coverage, padding, determinism across workers, resume."""

import numpy as np
import torch

from cache import open_cache
from cache.runtime.distributed import Ranks
from cache.runtime.kinds import AttentionKind
from student.stream import BatchOrder, BatchTotals, pad_batch, stream_batches


def all_batches(cache, order, epoch=0, skip=0, workers=0):
    return [share.examples for share in stream_batches(cache, order, epoch, skip, workers)]


def test_every_example_once_per_epoch_in_a_new_order(tiny_cache):
    cache = open_cache(tiny_cache)
    order = BatchOrder(cache.block_starts, 10, window_blocks=2, seed=3)
    assert cache.num_blocks >= 6
    epochs = [np.concatenate([b.indices for b in all_batches(cache, order, e)]) for e in (0, 1)]
    for seen in epochs:
        assert sorted(seen) == list(range(len(cache)))
    assert not np.array_equal(epochs[0], epochs[1])
    assert len(all_batches(cache, order)) == order.steps_per_epoch(0)


def test_padded_batch_matches_cached_examples(tiny_cache):
    cache = open_cache(tiny_cache)
    order = BatchOrder(cache.block_starts, 8, window_blocks=3, seed=0)
    ragged = all_batches(cache, order)[1]
    batch = pad_batch(ragged, torch.device("cpu"), None)
    longest = int(ragged.lengths.max())
    assert batch.input_ids.shape == (8, longest) and batch.attention[3].shape == (8, 4, longest, longest)
    for row, i in enumerate(ragged.indices):
        item, n = cache[int(i)], int(ragged.lengths[row])
        assert torch.equal(batch.input_ids[row, :n], item["input_ids"]) and batch.mask[row].sum() == n
        assert torch.equal(batch.hidden[2][row, :n], item["hidden"][2].float())
        assert torch.equal(batch.attention[3][row, :, :n, :n], item["attention"][3].float())
        assert batch.hidden[2][row, n:].abs().sum() == 0 and batch.attention[3][row, :, n:].abs().sum() == 0
        assert torch.equal(batch.logits[row], item["logits"]) and batch.labels[row] == item["label"]
    probs = pad_batch(ragged, torch.device("cpu"), AttentionKind.PROBS)
    n = int(ragged.lengths[0])
    torch.testing.assert_close(probs.attention[1][0, :, :n, :n], batch.attention[1][0, :, :n, :n].softmax(-1))


def test_workers_and_resume_do_not_change_the_sequence(tiny_cache):
    cache = open_cache(tiny_cache, layers=[0, 3])
    order = BatchOrder(cache.block_starts, 7, window_blocks=2, seed=1)
    alone = [b.indices.tolist() for b in all_batches(cache, order, epoch=2)]
    with_workers = [b.indices.tolist() for b in all_batches(cache, order, epoch=2, workers=2)]
    assert alone == with_workers
    for skip in (1, 5, len(alone) - 1, len(alone)):
        assert [b.indices.tolist() for b in all_batches(cache, order, epoch=2, skip=skip)] == alone[skip:]


def test_reader_processes_hand_over_bfloat16_bits_unchanged(tmp_path, glue, tiny_teacher):
    """Workers pass batches as shared-memory tensors; bfloat16 bits (uint16) must come back exact."""
    from tests.helpers import dump

    dump(tiny_teacher, glue, tmp_path / "bf16.zarr", hidden_encoding="bfloat16", attention_encoding="maps:bfloat16",
         limit=40, block_mb=0.02)
    cache = open_cache(tmp_path / "bf16.zarr", layers=[0, 2])
    order = BatchOrder(cache.block_starts, 6, window_blocks=2, seed=0)
    for here, there in zip(all_batches(cache, order), all_batches(cache, order, workers=1), strict=True):
        assert there.targets["hidden"][2].dtype == np.uint16 and there.input_ids.dtype == here.input_ids.dtype
        assert np.array_equal(here.indices, there.indices) and np.array_equal(here.input_ids, there.input_ids)
        assert all(np.array_equal(here.targets[name][2], there.targets[name][2]) for name in ("hidden", "attention"))
        assert np.array_equal(here.labels, there.labels) and np.array_equal(here.logits, there.logits)


def test_uint8_probabilities_are_padded_as_float(tmp_path, glue, tiny_teacher):
    from tests.helpers import dump

    dump(tiny_teacher, glue, tmp_path / "u8.zarr", attention="probs", attention_encoding="uint8", limit=30)
    cache = open_cache(tmp_path / "u8.zarr")
    order = BatchOrder(cache.block_starts, 6, window_blocks=2, seed=0)
    ragged = all_batches(cache, order, workers=1)[0]
    batch = pad_batch(ragged, torch.device("cpu"), None)
    for row, i in enumerate(ragged.indices):
        n = int(ragged.lengths[row])
        assert torch.equal(batch.attention[2][row, :, :n, :n], cache[int(i)]["attention"][2])
        rounding = n / 510 + 1e-3  # each of a row's n probabilities is within half a step of 1/255
        torch.testing.assert_close(batch.attention[2][row, :, :n, :n].sum(-1), torch.ones(4, n), atol=rounding, rtol=0)


def test_ranks_share_each_global_batch_and_divide_by_its_totals(tiny_cache):
    """Two ranks' shares of every step are the one-process batch, split in two, and carry its totals."""
    cache = open_cache(tiny_cache, layers=[0])
    whole = list(stream_batches(cache, BatchOrder(cache.block_starts, 10, 2, seed=1), 1, 0, 0))
    shares = [list(stream_batches(cache, BatchOrder(cache.block_starts, 10, 2, seed=1, ranks=Ranks(r, 2)), 1, 0, 0))
              for r in (0, 1)]
    for batch, first, second in zip(whole, *shares, strict=True):
        if len(batch.examples) == 1:  # a window's last batch of one: rank 1 steps on a stand-in that does not count
            assert first.counts and not second.counts
            assert np.array_equal(first.examples.indices, second.examples.indices)
            continue
        assert first.counts and second.counts and abs(len(first.examples) - len(second.examples)) <= 1
        assert np.array_equal(np.concatenate([first.examples.indices, second.examples.indices]), batch.examples.indices)
        assert batch.totals == first.totals == second.totals == BatchTotals.of(batch.examples.lengths)
    assert any(len(batch.examples) == 1 for batch in whole)  # the case above is exercised


def test_a_stand_in_share_adds_nothing_to_the_loss(tiny_cache):
    from cache.runtime.attention import capture_implementation
    from student.objective import Distiller
    from student.setup import Run
    from tests.helpers import train_config

    run = Run(train_config(tiny_cache, tiny_cache.parent / "unused", stage="intermediate"))
    run.student.set_attn_implementation(capture_implementation(run.attention))  # as the stage does
    share = next(stream_batches(open_cache(tiny_cache, layers=[0, 1, 2, 3]),
                                BatchOrder(open_cache(tiny_cache).block_starts, 8, 2, seed=0), 0, 0, 0))
    batch = pad_batch(share.examples, torch.device("cpu"), None, share=share)
    counted = Distiller(run)(batch, intermediate=True)
    batch.counts = False
    stand_in = Distiller(run)(batch, intermediate=True)
    assert all(v > 0 for v in counted.values()) and all(v == 0 for v in stand_in.values())
