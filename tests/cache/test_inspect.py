"""cache info / verify / ls against what was written, and verify against real corruption."""

import hashlib
import json
import shutil

import pytest
import torch

from cache import open_cache
from cache.data.tokenize import tokenizer_fingerprint
from cache.format.manifest import CHECKSUM, content_checksum, read_manifest
from cache.read.inspect import cache_summary, list_caches, verify_cache
from cache.teacher.runner import weights_sha256
from tests.helpers import dump
from tests.reference import load_reference


@pytest.fixture(params=["zarr", "hdf5"])
def cache_path(request, tmp_path, glue, tiny_teacher):
    dump(tiny_teacher, glue, tmp_path / "c", format=request.param)
    return tmp_path / "c"


def test_manifest_says_what_made_the_cache(cache_path, glue, tiny_teacher):
    from transformers import AutoTokenizer

    s = cache_summary(cache_path)
    assert s["format_version"] == 7 and s["complete"] and s["command"] == "test"
    assert s["teacher"]["family"] == "bert"
    assert s["teacher"]["path"] == str(tiny_teacher)
    assert s["teacher"]["weights_sha256"] == weights_sha256(load_reference(tiny_teacher))
    assert s["tokenizer"]["fingerprint"] == tokenizer_fingerprint(AutoTokenizer.from_pretrained(tiny_teacher))
    data_file = glue / "SST-2" / "train.tsv"
    expected = {"task": "sst2", "split": "train", "examples": 24, "file": str(data_file),
                "sha256": hashlib.sha256(data_file.read_bytes()).hexdigest()}
    assert expected.items() <= s["data"].items()
    assert (s["layers"], s["attention"], s["max_seq_len"]) == ([0, 1, 2, 3], "scores", 128)
    assert (s["hidden_encoding"], s["attention_encoding"]) == ("float16", "maps:float16")
    on_disk = sum(f.stat().st_size for f in cache_path.rglob("*") if f.is_file())
    assert s["sizes"]["bytes"] == on_disk and s["sizes"]["committed_blocks"] == s["num_blocks"]


def test_verify_passes_on_a_fresh_cache(cache_path):
    assert verify_cache(cache_path) == []


def _largest_chunk(cache_path):
    files = [f for f in (cache_path / "blocks").rglob("*") if f.is_file() and f.name != "zarr.json"]
    return max(files, key=lambda f: f.stat().st_size)


def test_verify_finds_a_flipped_byte(cache_path):
    chunk = _largest_chunk(cache_path)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))
    problems = verify_cache(cache_path)
    assert len(problems) == 1 and "(examples " in problems[0] and "array '" in problems[0], problems


def test_verify_finds_a_missing_chunk_or_truncated_file(cache_path):
    chunk = _largest_chunk(cache_path)
    if cache_path.joinpath("zarr.json").exists():
        chunk.unlink()  # zarr would read a missing chunk as zeros
    else:
        chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    problems = verify_cache(cache_path)
    assert problems and all("(examples " in p for p in problems)
    assert any("array '" in p or "unreadable" in p for p in problems), problems


def test_verify_finds_a_missing_block(cache_path):
    block = sorted((cache_path / "blocks").glob("00*"))[1]
    shutil.rmtree(block) if block.is_dir() else block.unlink()
    assert verify_cache(cache_path) == [f"block 1 (examples {_range(cache_path, 1)}): missing"]


def _range(cache_path, k):
    from cache.format.manifest import read_manifest
    from cache.format.store import INDEX, open_store

    starts = open_store(cache_path, read_manifest(cache_path).storage).read(INDEX, "block_starts")
    return f"{starts[k]}-{starts[k + 1] - 1}"


def test_ls_finds_caches_in_a_shared_folder(tmp_path, glue, tiny_teacher, tiny_bare_teacher):
    dump(tiny_teacher, glue, tmp_path / "team" / "sst2.zarr")
    dump(tiny_bare_teacher, glue, tmp_path / "team" / "nested" / "mrpc.h5", format="hdf5", task="mrpc",
         data=glue / "MRPC", layers=(0, 3))
    (tmp_path / "team" / "notes").mkdir()
    rows = list_caches(tmp_path / "team")
    assert [r["data"] for r in rows] == ["mrpc/train", "sst2/train"]
    assert rows[0]["layers"] == "0,3" and rows[0]["complete"] and rows[1]["examples"] == 24
    assert rows[1]["teacher"].endswith(weights_sha256(load_reference(tiny_teacher))[:8])


def test_info_and_verify_on_uint8_attention(tmp_path, glue, tiny_teacher):
    from cache.read.inspect import format_summary

    dump(tiny_teacher, glue, tmp_path / "u8", attention="probs", attention_encoding="uint8")
    summary = cache_summary(tmp_path / "u8")
    assert summary["attention_encoding"] == "maps:uint8" and summary["hidden_encoding"] == "float16"
    assert "attention maps:uint8" in format_summary(summary)
    assert verify_cache(tmp_path / "u8") == []


def test_a_version_2_cache_reads_as_float_maps(tmp_path, glue, tiny_teacher):
    """Version 2 named its stored types (dtype, attention_dtype) and stored the embedding output;
    its arrays are version 4's float maps."""
    dump(tiny_teacher, glue, tmp_path / "c", hidden_encoding="bfloat16", attention_encoding="maps:float32")
    before = [open_cache(tmp_path / "c")[i] for i in range(3)]
    path = tmp_path / "c" / "manifest.json"
    content = json.loads(path.read_text())
    del content["hidden_encoding"], content["attention_encoding"], content["embedding_output"], content[CHECKSUM]
    del content["teacher"]["family"]  # every teacher was a BERT before version 6
    content |= {"format_version": 2, "dtype": "bfloat16", "attention_dtype": "float32"}
    path.write_text(json.dumps(content | {CHECKSUM: content_checksum(content)}))
    manifest = read_manifest(tmp_path / "c")
    assert (str(manifest.hidden_encoding), str(manifest.attention_encoding)) == ("bfloat16", "maps:float32")
    assert manifest.embedding_output == "stored" and manifest.teacher.family == "bert"
    for i, item in enumerate(before):
        assert all(torch.equal(item["hidden"][n], open_cache(tmp_path / "c")[i]["hidden"][n]) for n in item["hidden"])
    assert verify_cache(tmp_path / "c") == []
