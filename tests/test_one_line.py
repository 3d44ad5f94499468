"""Mistakes and failures met mid-command, each one line naming what and where, never a traceback:
a bucket that is not there, a broken run log, a GloVe file that is not UTF-8, a manifest field of
the wrong type behind a valid checksum, a full disk while a checkpoint or a model is saved, a
student folder replaced under a run, a student with one token type on pairs of texts, a cache
missing a block that `cache ls` and `cache info` would call complete."""

import errno
import json
import os
import shutil

import pytest
import torch
from transformers import BertForSequenceClassification

from cache.format.store import block_unit, open_store
from tests.helpers import assert_refused, assert_refused_after_work, rewrite_manifest_json, run, save_tiny_teacher

SMALL = ["--student", "layers=1,hidden=16,ffn=32,heads=4"]


def test_listing_a_bucket_that_is_not_there(bucket):
    assert_refused(run("cache", "ls", f"{bucket}-missing"), f"ROOT: {bucket}-missing cannot be reached")


def test_a_broken_run_log_is_named_with_its_line(tmp_path, tiny_cache):
    out = tmp_path / "run"
    assert run("train-student", "--cache", tiny_cache, *SMALL, "--max-steps", 2, "--out", out).exit_code == 0
    with open(out / "metrics.jsonl", "a") as log:
        log.write('{"stage": "intermediate", "step": 3, "loss": 0.5')  # a run killed mid-write
    lines = len((out / "metrics.jsonl").read_text().splitlines())
    assert_refused(run("show", "curves", "--run", out, "--out", tmp_path / "c.png"),
                   f"{out / 'metrics.jsonl'}:{lines}: not a logged step")


def test_a_glove_file_that_is_not_utf8_is_found_before_the_weights_load(tmp_path, glue, tiny_teacher):
    (tmp_path / "glove.txt").write_bytes(b"film 0.1 0.2\nna\xefve 0.3 0.4\n")
    teacher = broken_weights(tmp_path, tiny_teacher)
    result = run("augment", "--task", "sst2", "--data", glue / "SST-2", "--limit", 4, "--teacher", teacher,
                 "--glove", tmp_path / "glove.txt", "--out", tmp_path / "aug")
    assert_refused(result, f"{tmp_path / 'glove.txt'}:2: not valid UTF-8 (byte 0xef)")


@pytest.mark.parametrize("change, expected", [
    ({"max_seq_len": "128"}, "max_seq_len is str"),
    ({"layers": "0123"}, "layers is tuple"),
    ({"complete": "yes"}, "complete is str"),
])
def test_a_manifest_field_of_the_wrong_type_is_refused(tmp_path, tiny_cache, change, expected):
    cache = shutil.copytree(tiny_cache, tmp_path / "c")
    rewrite_manifest_json(cache, **change)
    for command in (["cache", "info", cache], ["cache", "verify", cache], ["train-student", "--cache", cache,
                                                                          "--out", tmp_path / "run"]):
        assert_refused(run(*command), f"{cache / 'manifest.json'}: manifest is malformed ({expected}")


def test_a_full_disk_while_a_checkpoint_is_saved(tmp_path, tiny_cache, monkeypatch):
    def full(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"PK partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "run"
    result = run("train-student", "--cache", tiny_cache, *SMALL, "--max-steps", 4, "--save-every", 2, "--out", out)
    assert_refused_after_work(result, f"{out / 'checkpoint.tmp'}: cannot be written")
    assert not (out / "checkpoint.tmp").exists() and not (out / "checkpoint.pt").exists()


def test_a_full_disk_while_a_teacher_is_saved_leaves_a_folder_the_rerun_takes(tmp_path, small_sst2, tiny_teacher,
                                                                              monkeypatch):
    real = BertForSequenceClassification.save_pretrained

    def full(self, folder, *args, **kwargs):
        (folder / "config.json").parent.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text('{"architectures": ["BertFor')  # cut short
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / "model.safetensors"))

    args = ["finetune-teacher", "--task", "sst2", "--data", small_sst2, "--base", tiny_teacher, "--epochs", 1,
            "--max-seq-len", 16, "--out", tmp_path / "teacher"]
    monkeypatch.setattr(BertForSequenceClassification, "save_pretrained", full)
    result = run(*args)
    assert_refused_after_work(result, "No space left on device")
    assert not (tmp_path / "teacher" / "config.json").exists()
    monkeypatch.setattr(BertForSequenceClassification, "save_pretrained", real)
    assert run(*args).exit_code == 0 and (tmp_path / "teacher" / "config.json").is_file()


def test_resuming_after_the_student_folder_was_replaced(tmp_path, tiny_cache):
    student = save_tiny_teacher(tmp_path / "student", head=True, layers=1)
    out = tmp_path / "run"
    common = ["train-student", "--cache", tiny_cache, "--student", student, "--save-every", 1, "--out", out,
              "--max-steps", 2]
    assert run(*common).exit_code == 0
    shutil.rmtree(student)
    save_tiny_teacher(student, head=True, layers=2)
    assert_refused(run(*common, "--resume"), f"--resume: the student in {out / 'checkpoint.pt'} "
                                                               "does not fit --student")


def test_one_token_type_on_pairs_of_texts(tmp_path, glue, tiny_teacher):
    from tests.helpers import dump

    dump(tiny_teacher, glue, tmp_path / "mrpc", task="mrpc", data=glue / "MRPC", limit=8)
    student = save_tiny_teacher(tmp_path / "student", head=True, layers=1)
    config = json.loads((student / "config.json").read_text())
    (student / "config.json").write_text(json.dumps(config | {"type_vocab_size": 1}))
    assert_refused(run("train-student", "--cache", tmp_path / "mrpc", "--student", student, "--out", tmp_path / "r"),
                   "has type_vocab_size 1, and the cache's examples are pairs of texts")


def test_a_cache_missing_a_block_is_not_called_complete(tmp_path, tiny_cache):
    cache = shutil.copytree(tiny_cache, tmp_path / "c")
    shutil.rmtree(open_store(cache, "zarr").unit_location(block_unit(1)))
    assert "DAMAGED (" in run("cache", "info", cache).output
    assert json.loads(run("cache", "ls", tmp_path, "--json").output)[0]["complete"] is False


def broken_weights(tmp_path, teacher):
    """The teacher with its config and tokenizer but weights that cannot load: whatever is reported
    instead was found before the weights were read."""
    copy = shutil.copytree(teacher, tmp_path / "broken-weights")
    (copy / "model.safetensors").write_bytes(b"not weights")
    return copy


def test_a_bad_corpus_is_found_before_the_weights_load(tmp_path, tiny_teacher):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_bytes(b"a fine line\n\nna\xefve text\n")
    result = run("dump-teacher", "--task", "corpus", "--data", tmp_path / "corpus", "--teacher",
                 broken_weights(tmp_path, tiny_teacher), "--out", tmp_path / "c")
    assert_refused(result, f"{tmp_path / 'corpus' / 'a.txt'}:3: not valid UTF-8 (byte 0xef)")


def test_a_missing_gpu_is_found_before_the_data_is_read(tmp_path, tiny_teacher):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\nfine\t1\n" + "x\t1\n" * 1000 + "bad\tpositive\n")
    result = run("dump-teacher", "--task", "sst2", "--data", tmp_path, "--teacher", tiny_teacher, "--device",
                 "cuda:15", "--out", tmp_path / "c")
    assert_refused(result, "--device: cuda:15 is not on this machine")
