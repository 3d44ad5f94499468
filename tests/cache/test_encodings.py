"""Every target encoding against a fresh teacher forward: exact ones to float rounding, lossy ones
within the error their quantisation allows (bounds derived here, not read from the code)."""

import shutil

import numpy as np
import pytest
import torch

from cache import open_cache
from cache.data.checkpoints import default_teacher_path
from cache.read.decode import decode_batch
from cache.read.inspect import cache_summary, format_summary, list_caches, verify_cache
from cache.runtime.errors import CacheError, UserError
from cache.runtime.kinds import AttentionKind
from tests.helpers import TOLERANCE, assert_matches_reference, dump
from tests.reference import load_reference, reference_targets

LARGEST = {"int8": 127, "fp8": 448}


def references(cache_path, teacher):
    """(cached example, fresh targets) for every example."""
    cache, model = open_cache(cache_path), load_reference(teacher)
    for i in range(len(cache)):
        item = cache[i]
        yield item, reference_targets(model, item["input_ids"], item["token_type_ids"])


def rounding_bound(x: torch.Tensor, encoding: str, group: int) -> torch.Tensor:
    """The most an 8-bit value of x may be off: half a step of its group's scale (int8), or half
    a unit in the last of e4m3's 3 mantissa bits, and half its smallest subnormal step (fp8)."""
    groups = x.reshape(*x.shape[:-1], -1, group)
    scale = groups.abs().amax(-1, keepdim=True) / LARGEST[encoding]
    if encoding == "int8":
        bound = scale / 2 * torch.ones_like(groups)
    else:
        bound = groups.abs() * 2.0**-4 + scale * 2.0**-10
    return (bound * (1 + 1e-3) + 1e-6).reshape(x.shape)


@pytest.mark.parametrize("encoding", ["qk", "qkv"])
def test_factored_attention_is_exact(tmp_path, glue, tiny_teacher, encoding):
    out = tmp_path / "c"
    dump(tiny_teacher, glue, out, task="mrpc", data=glue / "MRPC", attention_encoding=encoding, limit=12)
    assert str(open_cache(out).manifest.attention_encoding) == f"{encoding}:float16"
    assert_matches_reference(out, tiny_teacher)  # scores multiplied out of the stored queries and keys
    block = open_cache(out).read_block(0)
    probs = decode_batch(block, torch.device("cpu"), AttentionKind.PROBS).attention
    for j, (item, ref) in enumerate(references(out, tiny_teacher)):
        if j == len(block):
            break
        n = len(item["input_ids"])
        for layer in probs:
            torch.testing.assert_close(probs[layer][j, :, :n, :n], ref["probs"][layer - 1], rtol=2e-3, atol=2e-3)
            assert probs[layer][j, :, n:].abs().sum() == probs[layer][j, :, :, n:].abs().sum() == 0
    stored = block.targets.keys() - {"hidden"}
    assert stored == ({"query", "key", "value"} if encoding == "qkv" else {"query", "key"})
    first, ref = next(references(out, tiny_teacher))
    n = len(first["input_ids"])
    for name in stored:
        torch.testing.assert_close(torch.from_numpy(block.targets[name][2][:n]).float(), ref[name][1],
                                   rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("encoding", ["int8", "fp8"])
def test_eight_bit_hidden_states_are_within_their_rounding(tmp_path, glue, tiny_teacher, encoding):
    dump(tiny_teacher, glue, tmp_path / "c", hidden_encoding=encoding, limit=12)
    for item, ref in references(tmp_path / "c", tiny_teacher):
        for layer, hidden in item["hidden"].items():
            expected = ref["hidden"][layer]
            assert torch.all((hidden - expected).abs() <= rounding_bound(expected, encoding, expected.shape[-1]))
            assert not torch.equal(hidden, expected)  # it is quantised
        torch.testing.assert_close(item["attention"][2], ref["scores"][1], rtol=2e-3, atol=2e-3)  # maps untouched


@pytest.mark.parametrize("encoding, teacher", [("int8", "tiny"), ("fp8", "tiny"), ("int8", "minilm")])
def test_eight_bit_queries_and_keys_bound_the_scores(tmp_path, glue, tiny_teacher, encoding, teacher):
    """|QK^T - Q'K'^T| <= |Q| dK^T + dQ |K|^T + dQ dK^T, each entry off by at most its bound d;
    the real MiniLM on real sentence pairs too, with its hidden states in 8 bits."""
    teacher = tiny_teacher if teacher == "tiny" else default_teacher_path()
    dump(teacher, glue, tmp_path / "c", task="mrpc", data=glue / "MRPC", attention_encoding=f"qk:{encoding}",
         hidden_encoding=encoding, limit=8)
    heads = open_cache(tmp_path / "c").num_heads
    for item, ref in references(tmp_path / "c", teacher):
        for layer, hidden in item["hidden"].items():
            expected = ref["hidden"][layer]
            assert torch.all((hidden - expected).abs() <= rounding_bound(expected, encoding, expected.shape[-1]))
        for layer, scores in item["attention"].items():
            q, k = (ref[name][layer - 1].view(len(scores[0]), heads, -1).transpose(0, 1) for name in ("query", "key"))
            dq, dk = (rounding_bound(x, encoding, x.shape[-1]) for x in (q, k))
            bound = (q.abs() @ dk.transpose(1, 2) + dq @ k.abs().transpose(1, 2) + dq @ dk.transpose(1, 2))
            error = (scores - ref["scores"][layer - 1]).abs()
            assert torch.all(error <= bound * q.shape[-1] ** -0.5 + 1e-5) and error.max() > 0


@pytest.mark.parametrize("k", [3, 12])
def test_topk_keeps_each_rows_largest_probabilities(tmp_path, glue, tiny_teacher, k):
    dump(tiny_teacher, glue, tmp_path / "c", attention="probs", attention_encoding=f"topk:{k}", limit=12)
    lengths = open_cache(tmp_path / "c").lengths
    assert k == 3 or lengths.min() < k < lengths.max()  # topk:12 covers rows and batches shorter than K
    for item, ref in references(tmp_path / "c", tiny_teacher):
        for layer, probs in item["attention"].items():
            full = ref["probs"][layer - 1]
            kept = min(k, full.shape[-1])
            values, keys = full.topk(kept, dim=-1)
            expected = torch.zeros_like(full).scatter_(-1, keys, values)
            torch.testing.assert_close(probs, expected, rtol=TOLERANCE["float16"], atol=TOLERANCE["float16"])
            assert torch.all((probs > 0).sum(-1) == kept)


@pytest.mark.parametrize("max_seq_len", [8, 64])
def test_auto_chooses_the_smallest_exact_encoding(tmp_path, glue, tiny_teacher, max_seq_len):
    """maps hold h L^2 values per example and layer, queries and keys 2 d L: the tiny teacher's
    (h=4, d=32) break even at L = 16."""
    dump(tiny_teacher, glue, tmp_path / "c", task="mrpc", data=glue / "MRPC", attention_encoding="auto",
         max_seq_len=max_seq_len)
    cache = open_cache(tmp_path / "c")
    lengths = cache.lengths.astype(np.int64)
    smaller = "qk:float16" if 2 * 32 * lengths.sum() < 4 * (lengths**2).sum() else "maps:float16"
    assert str(cache.manifest.attention_encoding) == smaller == ("maps:float16" if max_seq_len == 8 else "qk:float16")
    assert_matches_reference(tmp_path / "c", tiny_teacher)


@pytest.mark.parametrize("hidden, attention", [("int8", "qk:fp8"), ("float16", "topk:4")])
def test_bytes_per_token_are_the_stored_arrays(tmp_path, glue, tiny_teacher, hidden, attention):
    dump(tiny_teacher, glue, tmp_path / "c", attention="probs", hidden_encoding=hidden, attention_encoding=attention)
    cache = open_cache(tmp_path / "c")
    stored = {"hidden": 0, "attention": 0}
    for k in range(cache.num_blocks):
        for name, layers in cache.read_block(k).targets.items():
            stored["hidden" if name.startswith("hidden") else "attention"] += sum(a.nbytes for a in layers.values())
    per_token = cache_summary(tmp_path / "c")["sizes"]["bytes_per_token"]
    tokens = cache.lengths.sum()
    assert per_token["hidden"] == pytest.approx(stored["hidden"] / tokens)
    assert per_token["attention"] == pytest.approx(stored["attention"] / tokens)


@pytest.mark.parametrize("storage", ["zarr", "hdf5"])
def test_a_cache_without_attention_holds_the_hidden_states_alone(tmp_path, glue, tiny_teacher, storage):
    dump(tiny_teacher, glue, tmp_path / "c", layers=(0, 3), attention_encoding="none", format=storage)
    cache = open_cache(tmp_path / "c")
    assert cache.manifest.attention_layers == () and str(cache.manifest.attention_encoding) == "none"
    assert cache[0]["attention"] == {} and not any(
        name.startswith("attention") for k in range(cache.num_blocks) for name in cache.read_block(k).targets)
    assert_matches_reference(tmp_path / "c", tiny_teacher)  # the hidden states, as a fresh forward gives them
    with pytest.raises(UserError, match="--attention-encoding: cache has \"none\", this run has \"maps:float16\""):
        dump(tiny_teacher, glue, tmp_path / "c", layers=(0, 3))  # another cache: not continued


@pytest.mark.parametrize("options, message", [
    ({"attention_encoding": "topk:4"}, "--attention probs"),
    ({"attention_encoding": "topk:0"}, "topk:K"),
    ({"attention_encoding": "qk:uint8"}, "qk:uint8"),
    ({"attention_encoding": "maps:int8"}, "maps:int8"),
    ({"attention_encoding": "topk:200", "attention": "probs"}, "--max-seq-len"),
    ({"hidden_encoding": "uint8"}, "--hidden-encoding"),
])
def test_bad_encodings_are_refused(tmp_path, glue, tiny_teacher, options, message):
    with pytest.raises(UserError, match=message):
        dump(tiny_teacher, glue, tmp_path / "c", **options)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("teacher, storage", [("tiny", "zarr"), ("tiny", "hdf5"), ("minilm", "zarr")])
def test_layer_0_from_the_embedding_tables_is_the_teachers(tmp_path, glue, tiny_teacher, teacher, storage):
    """Recomputed in float32 from the stored tables, layer 0 is as exact as the teacher's own,
    whatever the other layers' encoding; nothing of it is stored per token."""
    teacher = tiny_teacher if teacher == "tiny" else default_teacher_path()
    out = tmp_path / "c"
    dump(teacher, glue, out, task="mrpc", data=glue / "MRPC", hidden_encoding="int8", embedding_output="tables",
         format=storage, limit=10)
    cache = open_cache(out)
    assert cache.manifest.embedding_output == "tables" and 0 in cache.manifest.layers
    block = cache.read_block(0)
    assert sorted(block.targets["hidden"]) == [layer for layer in cache.manifest.layers if layer > 0]
    for item, ref in references(out, teacher):
        torch.testing.assert_close(item["hidden"][0], ref["hidden"][0], rtol=1e-5, atol=1e-5)
        assert not torch.equal(item["hidden"][1], ref["hidden"][1])  # the other layers stay int8
    padded = decode_batch(block, torch.device("cpu"), embeddings=cache.embeddings).hidden[0]
    for j, n in enumerate(block.lengths):
        assert torch.equal(padded[j, :n], cache[j]["hidden"][0]) and not padded[j, n:].any()
    model = load_reference(teacher)
    layer = getattr(model, "bert", model).embeddings
    torch.testing.assert_close(cache.embeddings.word, layer.word_embeddings.weight.detach(), rtol=0, atol=0)
    assert verify_cache(out) == []


def test_layer_subsets_read_the_tables_only_for_layer_0(tmp_path, glue, tiny_teacher):
    dump(tiny_teacher, glue, tmp_path / "c", embedding_output="tables", limit=8)
    only_0, without_0 = open_cache(tmp_path / "c", layers=[0]), open_cache(tmp_path / "c", layers=[2])
    assert only_0.read_block(0).targets == {} and without_0.embeddings is None
    assert list(only_0[3]["hidden"]) == [0] and list(without_0[3]["hidden"]) == [2]
    both = open_cache(tmp_path / "c")[3]["hidden"]
    assert torch.equal(only_0[3]["hidden"][0], both[0]) and torch.equal(without_0[3]["hidden"][2], both[2])


@pytest.mark.parametrize("limit", [8, 4000])
def test_auto_recomputes_layer_0_where_the_tables_are_smaller(tmp_path, glue, tiny_teacher, limit):
    """The tables are a fixed size (vocabulary + positions + types + 2 rows of d float32 values);
    layer 0 stored costs d float16 values per token."""
    dump(tiny_teacher, glue, tmp_path / "c", embedding_output="auto", limit=limit, block_mb=1, batch_size=64)
    cache = open_cache(tmp_path / "c")
    tables = sum(p.numel() for p in load_reference(tiny_teacher).bert.embeddings.parameters()) * 4
    smaller = "tables" if tables < 32 * 2 * cache.lengths.sum() else "stored"
    assert cache.manifest.embedding_output == smaller == ("stored" if limit == 8 else "tables")
    summary = cache_summary(tmp_path / "c")
    assert summary["sizes"]["embedding_tables"] >= (tables if smaller == "tables" else 0)
    assert ("layer 0 from the teacher's embedding tables" in format_summary(summary)) == (smaller == "tables")
    assert list_caches(tmp_path)[0]["encoding"] == "float16,maps:float16" + (",tables" if smaller == "tables" else "")
    stored_layers = len(cache.manifest.layers) - (smaller == "tables")
    assert summary["sizes"]["bytes_per_token"]["hidden"] == stored_layers * 32 * 2


@pytest.mark.parametrize("how", ["flip-byte", "delete"])
def test_damaged_embedding_tables_are_refused(tmp_path, glue, tiny_teacher, how):
    dump(tiny_teacher, glue, tmp_path / "c", embedding_output="tables", limit=8)
    tables = tmp_path / "c" / "embeddings"
    if how == "delete":
        shutil.rmtree(tables)
        with pytest.raises(CacheError, match="cache is damaged: the embedding tables missing; run `cache verify"):
            open_cache(tmp_path / "c")
        assert "embedding tables: missing" in verify_cache(tmp_path / "c")
        return
    chunk = max((f for f in (tables / "word").rglob("*") if f.name != "zarr.json"), key=lambda f: f.stat().st_size)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 3] ^= 0x01
    chunk.write_bytes(bytes(data))
    with pytest.raises(CacheError, match=r"embedding tables: array 'word' .*; run `cache verify"):
        open_cache(tmp_path / "c")[0]
    problems = verify_cache(tmp_path / "c")
    assert len(problems) == 1 and problems[0].startswith("embedding tables: array 'word'")
    assert open_cache(tmp_path / "c", layers=[1])[0]["hidden"].keys() == {1}  # other layers still read
