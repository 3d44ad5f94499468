"""The reader API: examples, blocks, layer subsets, and the cost of a block read."""

import numpy as np
import pytest
import torch

from cache import open_cache
from cache.runtime.errors import CacheError
from tests.helpers import dump


@pytest.fixture(params=["zarr", "hdf5"])
def cache_path(request, tmp_path, glue, tiny_teacher):
    dump(tiny_teacher, glue, tmp_path / "c", format=request.param, task="mrpc", data=glue / "MRPC", limit=30,
         block_mb=0.3)
    return tmp_path / "c"


def test_blocks_hold_the_same_examples_as_indexing(cache_path):
    cache = open_cache(cache_path)
    seen, examples = 0, cache.iter_examples()
    for block in cache.iter_blocks():
        assert block.indices.tolist() == list(range(seen, seen + len(block)))
        for j in range(len(block)):
            single, item = cache[seen + j], next(examples)
            assert single.keys() == item.keys() == {"input_ids", "token_type_ids", "label", "logits", "hidden",
                                                    "attention"}
            assert torch.equal(single["input_ids"], item["input_ids"])
            for layer in item["attention"]:
                assert torch.equal(single["attention"][layer], item["attention"][layer])
                assert item["attention"][layer].shape == (4, len(item["input_ids"]), len(item["input_ids"]))
        seen += len(block)
    assert seen == len(cache) == 30 and next(examples, None) is None


def test_labels_follow_the_data(cache_path, glue):
    cache = open_cache(cache_path)
    rows = (glue / "MRPC" / "train.tsv").read_text(encoding="utf-8-sig").splitlines()[1:31]
    assert [int(cache[i]["label"]) for i in range(30)] == [int(r.split("\t")[0]) for r in rows]


def test_block_read_costs_one_call_per_array(cache_path, monkeypatch):
    cache = open_cache(cache_path, layers=[0, 2])
    calls = []
    real_read = cache.store.read
    monkeypatch.setattr(cache.store, "read",
                        lambda unit, name, sel=(): calls.append((name, sel)) or real_read(unit, name, sel))
    block = cache.read_block(1)
    assert len(block) > 1
    assert sorted(name for name, _ in calls) == ["attention", "hidden", "input_ids", "label", "logits",
                                                 "token_type_ids"]
    rows = dict(calls)["hidden"][0]
    assert list(rows) == [0, 2]  # only the asked-for layers' rows are selected
    assert set(block.targets["hidden"]) == {0, 2} and set(block.targets["attention"]) == {2}


def test_layer_subset_values_match_full_read(cache_path):
    full, subset = open_cache(cache_path), open_cache(cache_path, layers=[1, 3])
    a, b = full[7], subset[7]
    assert set(b["hidden"]) == {1, 3} and set(b["attention"]) == {1, 3}
    for layer in (1, 3):
        assert torch.equal(a["hidden"][layer], b["hidden"][layer])
        assert torch.equal(a["attention"][layer], b["attention"][layer])


def test_absent_layer_and_bad_index(cache_path):
    with pytest.raises(CacheError, match=r"layers \[7\] are not in this cache"):
        open_cache(cache_path, layers=[0, 7])
    with pytest.raises(IndexError):
        open_cache(cache_path)[30]


def test_lengths_index_matches_tokens(cache_path):
    cache = open_cache(cache_path)
    assert [len(cache[i]["input_ids"]) for i in range(len(cache))] == list(cache.lengths)
    assert np.all(np.diff(cache.block_starts) > 0) and cache.block_starts[-1] == len(cache)


def test_cache_carries_the_teacher_tokenizer(cache_path, tiny_teacher):
    from transformers import AutoTokenizer

    cache = open_cache(cache_path)
    ours, theirs = cache.load_tokenizer(), AutoTokenizer.from_pretrained(tiny_teacher)
    assert ours("a good film", "bad")["input_ids"] == theirs("a good film", "bad")["input_ids"]
    vocab = cache_path / "tokenizer" / "tokenizer.json"
    vocab.write_text(vocab.read_text().replace('"film"', '"flim"'))
    with pytest.raises(CacheError, match="tokenizer does not match"):
        cache.load_tokenizer()


def test_layer_subset_block_reads_match_whole_reads(cache_path):
    """Subsets are read as runs of consecutive layers; values and checksums must still line up."""
    full = open_cache(cache_path)
    for layers in ([0, 1, 3], [2], [1, 2, 3]):
        subset = open_cache(cache_path, layers=layers)
        for k in range(full.num_blocks):
            whole, part = full.read_block(k), subset.read_block(k)
            for layer in layers:
                assert np.array_equal(whole.targets["hidden"][layer], part.targets["hidden"][layer])
                if layer in part.targets["attention"]:
                    assert np.array_equal(whole.targets["attention"][layer], part.targets["attention"][layer])
