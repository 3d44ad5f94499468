"""dump-teacher writes exactly what a fresh teacher forward computes, for every format and kind."""

import pytest
import torch
from transformers import AutoTokenizer

from cache import open_cache
from cache.format.dtypes import numpy_dtype
from cache.runtime.errors import CacheError, UserError
from tests.helpers import assert_matches_reference, dump


@pytest.mark.parametrize("storage", ["zarr", "hdf5"])
@pytest.mark.parametrize("attention", ["scores", "probs"])
@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_stored_targets_equal_fresh_forward(tmp_path, glue, tiny_teacher, storage, attention, task):
    data = glue / ("SST-2" if task == "sst2" else "MRPC")
    out = tmp_path / "cache"
    report = dump(tiny_teacher, glue, out, task=task, data=data, format=storage, attention=attention)
    assert report.written_examples == 24
    cache = open_cache(out)
    assert cache.num_blocks > 2  # batches and blocks both cut the data
    if task == "mrpc":
        assert all(cache[i]["token_type_ids"].max() == 1 for i in range(3))  # pairs carry segment ids
    assert_matches_reference(out, tiny_teacher)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_other_float_types(tmp_path, glue, tiny_teacher, dtype):
    dump(tiny_teacher, glue, tmp_path / "c", hidden_encoding=dtype, attention_encoding=f"maps:{dtype}",
         format="hdf5" if dtype == "bfloat16" else "zarr")
    block = open_cache(tmp_path / "c").read_block(0)
    assert {a.dtype for layers in block.targets.values() for a in layers.values()} == {numpy_dtype(dtype)}
    assert_matches_reference(tmp_path / "c", tiny_teacher)


@pytest.mark.parametrize("storage", ["zarr", "hdf5"])
def test_uint8_attention_probabilities(tmp_path, glue, tiny_teacher, storage):
    dump(tiny_teacher, glue, tmp_path / "u8", attention="probs", attention_encoding="uint8", format=storage)
    dump(tiny_teacher, glue, tmp_path / "f16", attention="probs", format=storage)
    small, full = open_cache(tmp_path / "u8"), open_cache(tmp_path / "f16")
    encodings = [str(cache.manifest.attention_encoding) for cache in (small, full)]
    assert encodings == ["maps:uint8", "maps:float16"]
    assert torch.equal(small[5]["hidden"][1], full[5]["hidden"][1])  # only attention is quantised
    assert small.read_block(0).targets["attention"][1].nbytes * 2 == full.read_block(0).targets["attention"][1].nbytes
    assert_matches_reference(tmp_path / "u8", tiny_teacher)


def test_uint8_attention_needs_probabilities(tmp_path, glue, tiny_teacher):
    with pytest.raises(UserError, match="--attention probs"):
        dump(tiny_teacher, glue, tmp_path / "c", attention_encoding="uint8")


def test_bare_model_and_layer_subset(tmp_path, glue, tiny_bare_teacher):
    dump(tiny_bare_teacher, glue, tmp_path / "c", layers=(0, 2))
    cache = open_cache(tmp_path / "c")
    assert cache.manifest.layers == (0, 2) and cache.manifest.attention_layers == (2,)
    item = cache[3]
    assert set(item["hidden"]) == {0, 2} and set(item["attention"]) == {2} and "logits" not in item
    assert_matches_reference(tmp_path / "c", tiny_bare_teacher)


def test_truncation_is_counted(tmp_path, glue, tiny_teacher):
    report = dump(tiny_teacher, glue, tmp_path / "c", max_seq_len=8)
    cache = open_cache(tmp_path / "c")
    assert max(cache.lengths) == 8
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    lines = (glue / "SST-2" / "train.tsv").read_text().splitlines()[1:25]
    too_long = sum(len(tokenizer(line.split("\t")[0])["input_ids"]) > 8 for line in lines)
    assert report.truncated == cache.manifest.data.truncated == too_long > 0


def test_complete_cache_is_left_alone(tmp_path, glue, tiny_teacher):
    dump(tiny_teacher, glue, tmp_path / "c")
    def state():  # every file but the writer lock, which a run takes even to find there is nothing to do
        return {p: p.stat().st_mtime_ns for p in (tmp_path / "c").rglob("*") if p.name != ".lock"}

    before = state()
    assert dump(tiny_teacher, glue, tmp_path / "c").written_examples == 0
    assert before == state() and (tmp_path / "c" / ".lock").read_bytes() == b""


@pytest.mark.parametrize("change, message", [
    ({"limit": 20}, "example count"),
    ({"split": "dev"}, "split"),
    ({"attention": "probs"}, "--attention"),
    ({"layers": (0, 1)}, "--layers"),
    ({"hidden_encoding": "float32"}, "--hidden-encoding"),
    ({"attention_encoding": "qk"}, "--attention-encoding"),
    ({"embedding_output": "tables"}, "--embedding-output"),
])
def test_mismatched_run_is_refused(tmp_path, glue, tiny_teacher, change, message):
    dump(tiny_teacher, glue, tmp_path / "c")
    with pytest.raises(CacheError, match=message):
        dump(tiny_teacher, glue, tmp_path / "c", **change)


def test_other_teacher_or_tokenizer_is_refused(tmp_path, glue, tiny_teacher, tiny_bare_teacher):
    from tests.helpers import save_tiny_teacher, vocabulary

    dump(tiny_teacher, glue, tmp_path / "c", limit=6)
    with pytest.raises(CacheError, match="teacher weights"):
        dump(tiny_bare_teacher, glue, tmp_path / "c", limit=6)
    vocab = vocabulary()
    vocab[10], vocab[11] = vocab[11], vocab[10]  # same weights, different tokenizer
    other = save_tiny_teacher(tmp_path / "other_tok", head=True, vocab=vocab)
    with pytest.raises(CacheError, match="tokenizer"):
        dump(other, glue, tmp_path / "c", limit=6)


def test_bad_destinations_and_options(tmp_path, glue, tiny_teacher):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        dump(tiny_teacher, glue, tmp_path / "file")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(UserError, match="already holds other files"):
        dump(tiny_teacher, glue, tmp_path / "notes")
    with pytest.raises(UserError, match="--layers"):
        dump(tiny_teacher, glue, tmp_path / "c", layers=(0, 9))
    with pytest.raises(UserError, match="--compression"):
        dump(tiny_teacher, glue, tmp_path / "c", format="hdf5", compression="zstd")
    with pytest.raises(UserError, match="--teacher"):
        dump(tmp_path / "notes", glue, tmp_path / "c")
