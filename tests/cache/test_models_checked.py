"""Models and tokenizers are checked whole: a tokenizer that cannot read the data, a student of
another kind, with weights its config does not describe, or with another vocabulary; a student
deeper than its teacher; targets that float16 cannot hold."""

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertForSequenceClassification, DistilBertConfig, DistilBertModel

from cache.data.checkpoints import default_teacher_path
from cache.format.manifest import read_manifest
from cache.format.store import block_unit, open_store
from cache.read.inspect import verify_cache
from tests.helpers import STUDENT, assert_refused, assert_refused_after_work, dump, run, save_tiny_teacher, vocabulary


def unknown_share(tokenizer, texts) -> float:
    """[UNK] among the tokens of `texts`, counted plainly."""
    ids = [i for text in texts for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    return sum(i == tokenizer.unk_token_id for i in ids) / len(ids)


def test_a_cased_tokenizer_on_an_uncased_vocabulary_is_refused(tmp_path, glue):
    """The packaged MiniLM with its tokenizer told not to lower-case: most capitalised words of
    MRPC become [UNK]; the dump names the share, and --max-unknown accepts it."""
    teacher = shutil.copytree(default_teacher_path(), tmp_path / "cased")
    config = json.loads((teacher / "tokenizer_config.json").read_text())
    (teacher / "tokenizer_config.json").write_text(json.dumps(config | {"do_lower_case": False}))
    rows = [line.split("\t") for line in (glue / "MRPC" / "train.tsv").read_text().splitlines()[1:21]]
    share = unknown_share(AutoTokenizer.from_pretrained(teacher), [text for row in rows for text in row[3:5]])
    assert share > 0.05
    args = ["dump-teacher", "--task", "mrpc", "--data", glue / "MRPC", "--teacher", teacher, "--limit", 20,
            "--layers", "0,6"]
    result = run(*args, "--out", tmp_path / "c")
    assert_refused(result, f"{glue / 'MRPC' / 'train.tsv'}: {share:.1%} of its tokens are [UNK] under the teacher's "
                           "tokenizer (more than --max-unknown 0.01)")
    assert "add --max-unknown" in result.output and not read_manifest_or_none(tmp_path / "c")
    assert run(*args, "--max-unknown", 0.5, "--out", tmp_path / "c").exit_code == 0


def read_manifest_or_none(path):
    try:
        return read_manifest(path)
    except Exception:  # noqa: BLE001 - no cache at all
        return None


def test_a_student_of_another_kind_is_refused(tmp_path, tiny_cache):
    DistilBertModel(DistilBertConfig(vocab_size=len(vocabulary()), dim=32, n_layers=1, n_heads=4,
                                     hidden_dim=64)).save_pretrained(tmp_path / "distil")
    result = run("train-student", "--cache", tiny_cache, "--student", tmp_path / "distil", "--out", tmp_path / "run")
    assert_refused(result, f"--student: {tmp_path / 'distil'} is a 'distilbert' model and the cache's teacher a bert; "
                           "a student is of its teacher's family")
    (tmp_path / "bare").mkdir()
    shutil.copy(tmp_path / "distil" / "config.json", tmp_path / "bare" / "config.json")
    config = json.loads((tmp_path / "bare" / "config.json").read_text())
    (tmp_path / "bare" / "config.json").write_text(json.dumps(config | {"model_type": "bert"}))
    assert_refused(run("train-student", "--cache", tiny_cache, "--student", tmp_path / "bare", "--out",
                       tmp_path / "run"), "has a config.json but no weights")


def test_weights_of_another_size_than_the_config_are_refused(tmp_path, tiny_cache):
    """Only a head may start afresh: an FFN whose config says 48 over weights of 64 is not re-initialised."""
    student = save_tiny_teacher(tmp_path / "student", head=True, layers=1)
    config = json.loads((student / "config.json").read_text())
    (student / "config.json").write_text(json.dumps(config | {"intermediate_size": 48}))
    result = run("train-student", "--cache", tiny_cache, "--student", student, "--out", tmp_path / "run")
    assert_refused(result, "3 weights are missing or of another size than its config.json says")
    assert "only a task head may start afresh" in result.output
    fine = save_tiny_teacher(tmp_path / "fine", head=False, layers=1)  # no head at all: it starts afresh
    result = run("train-student", "--cache", tiny_cache, "--student", fine, "--stage", "prediction", "--max-steps", 1,
                 "--out", tmp_path / "run2")
    assert result.exit_code == 0, result.output


def test_a_reference_format_student_with_another_vocabulary_is_refused(tmp_path, tiny_cache):
    """A vocab.txt alone (the reference code's format) is compared with the cache's vocabulary."""
    student = save_tiny_teacher(tmp_path / "student", head=True, layers=1)
    for name in ("tokenizer_config.json", "tokenizer.json", "special_tokens_map.json"):
        (student / name).unlink(missing_ok=True)
    vocab = vocabulary()
    vocab[20], vocab[21] = vocab[21], vocab[20]
    (student / "vocab.txt").write_text("\n".join(vocab) + "\n")
    result = run("train-student", "--cache", tiny_cache, "--student", student, "--out", tmp_path / "run")
    assert_refused(result, "has another tokenizer than the cache's teacher")


def test_a_student_deeper_than_the_teacher_is_refused(tmp_path, tiny_teacher, tiny_cache):
    expected = "--layer-map uniform: a student of 7 layers is deeper than the teacher's 3"
    assert_refused(run("init-student", "--teacher", tiny_teacher, "--layers", 7, "--out", tmp_path / "init"), expected)
    assert not (tmp_path / "init").exists()
    result = run("train-student", "--cache", tiny_cache, "--student", "layers=7,hidden=32,ffn=64,heads=4",
                 "--out", tmp_path / "run")
    assert_refused(result, expected)
    assert_refused(run("train-student", "--cache", tiny_cache, "--student", "layers=0,hidden=32,ffn=64,heads=4",
                       "--out", tmp_path / "run"), "--student: layers=0: every size must be at least 1")


def test_targets_beyond_float16_are_never_stored_silently(tmp_path, glue):
    """A teacher whose hidden values pass 65504: the float16 dump is refused and stays incomplete;
    float32 holds them; verify reports a cache holding infinities."""
    teacher = save_tiny_teacher(tmp_path / "teacher", head=True)
    model = BertForSequenceClassification.from_pretrained(teacher)
    with torch.no_grad():
        model.bert.encoder.layer[0].output.LayerNorm.weight.fill_(1e5)
    model.save_pretrained(teacher)
    result = run("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--teacher", teacher, "--limit", 8,
                 "--out", tmp_path / "c")
    assert_refused_after_work(result, "the teacher's hidden, attention are not finite as stored (--hidden-encoding "
                                      "float16, --attention-encoding maps:float16")
    assert not read_manifest(tmp_path / "c").complete
    dump(teacher, glue, tmp_path / "c32", limit=8, hidden_encoding="float32", attention_encoding="maps:float32")
    assert verify_cache(tmp_path / "c32") == []
    stored = open_store(tmp_path / "c32", "zarr").read(block_unit(0), "hidden")
    assert np.isfinite(stored).all() and np.abs(stored).max() > 65504
    _write_inf(tmp_path / "c32")
    assert "block 0 (examples 0-" in verify_cache(tmp_path / "c32")[0]
    assert "array 'hidden': holds values that are not finite" in verify_cache(tmp_path / "c32")[0]


def _write_inf(cache):
    """A float16 cache as an earlier version wrote it: one value stored as infinity, checksums redone."""
    import zarr

    from cache.format.store import slab_checksums

    group = zarr.open_group(cache / "blocks" / "000000", mode="r+")
    hidden = group["hidden"]
    values = hidden[...]
    values[0, 0, 0] = np.inf
    hidden[...] = values
    checksums = dict(group.attrs["crc32c"])
    checksums["hidden"] = {"rows": checksums["hidden"]["rows"],
                           "slabs": slab_checksums(values, checksums["hidden"]["rows"])}
    group.attrs["crc32c"] = checksums


@pytest.fixture(autouse=True)
def _student_shape():
    return STUDENT
