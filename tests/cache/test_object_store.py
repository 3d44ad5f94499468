"""Caches in an object store (moto's S3 server on 127.0.0.1, reached through AWS_ENDPOINT_URL):
the same arrays as a folder, committed by marker objects, locked by a lease, resumed after a
killed writer or a server that went away; HDF5 and unreachable stores refused in one line."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import s3fs

from cache import open_cache
from cache.format.manifest import read_manifest
from cache.format.store import open_store
from cache.read.inspect import verify_cache
from cache.runtime.errors import CacheError
from cache.teacher.dump import DumpConfig, dump_teacher
from tests.helpers import REPO, assert_refused, assert_same_arrays, dump, run

EXAMPLES = {"limit": 60, "block_mb": 0.1, "batch_size": 16}


@pytest.fixture(scope="module")
def local_cache(tmp_path_factory, glue, tiny_teacher):
    out = tmp_path_factory.mktemp("local") / "cache"
    dump(tiny_teacher, glue, out, **EXAMPLES)
    return out


def objects(url: str) -> list[str]:
    """The object names under a cache's URL, relative to it."""
    prefix = url.removeprefix("s3://")
    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    return [p[len(prefix) + 1:] for p in fs.find(prefix)]


def test_an_s3_cache_holds_the_folder_cache_and_reads_back(bucket, glue, tiny_teacher, local_cache):
    url = f"{bucket}/team/sst2"
    dump(tiny_teacher, glue, url, **EXAMPLES)
    assert_same_arrays(local_cache, url)
    assert verify_cache(url) == []
    manifest = read_manifest(url)
    names = objects(url)
    assert manifest.complete and ".lock" not in " ".join(names)  # the lease is gone with its job
    assert sum(n.endswith(".committed") for n in names) == manifest.num_blocks + 1  # blocks and index
    cache = open_cache(url)
    assert cache[7]["input_ids"].tolist() == open_cache(local_cache)[7]["input_ids"].tolist()
    assert cache.load_tokenizer().vocab == open_cache(local_cache).load_tokenizer().vocab

    info = run("cache", "info", url)
    assert info.exit_code == 0 and f"{url} (complete)" in info.output, info.output
    listed = run("cache", "ls", bucket, "--json")
    assert listed.exit_code == 0 and [row["path"] for row in json.loads(listed.output)] == [url], listed.output


def test_storage_options_reach_fsspec(bucket, glue, tiny_teacher, local_s3, monkeypatch):
    url = f"{bucket}/options"
    dump(tiny_teacher, glue, url, limit=8)
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # the endpoint now comes from --storage-options alone
    wrong = json.dumps({"endpoint_url": "http://127.0.0.1:9", "config_kwargs": {"retries": {"max_attempts": 1}}})
    assert_refused(run("cache", "info", url, "--storage-options", wrong), f"{url}/manifest.json: cannot be read")
    options = json.dumps({"endpoint_url": local_s3.endpoint})
    info = run("cache", "info", url, "--storage-options", options)
    assert info.exit_code == 0 and f"{url} (complete)" in info.output, info.output


def test_object_store_refusals_are_one_line(bucket, glue, tiny_teacher):
    common = ["dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--teacher", tiny_teacher]
    assert_refused(run(*common, "--format", "hdf5", "--out", f"{bucket}/h5"), "--format hdf5: s3://")
    assert_refused(run(*common, "--out", f"{bucket}/c", "--storage-options", "[1]"), "--storage-options", code=2)
    env = os.environ | {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}  # nothing listens there
    unreachable = subprocess.run([sys.executable, str(REPO / "cli.py"), *map(str, common), "--out", f"{bucket}/c"],
                                 cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.stderr, unreachable.stderr
    assert unreachable.stderr.startswith(f"Error: --out: {bucket}/c cannot be reached"), unreachable.stderr


def test_a_live_lease_refuses_a_second_writer_and_a_stale_one_is_taken_over(bucket, glue, tiny_teacher,
                                                                             monkeypatch):
    url = f"{bucket}/leased"
    holder = {"pid": 4242, "host": "elsewhere", "command": "dump-teacher ...", "since": "earlier"}
    s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False).pipe_file(f"{url.removeprefix('s3://')}/.lock",
                                                          json.dumps(holder).encode())
    with pytest.raises(CacheError, match="another dump is writing this cache .pid 4242 on elsewhere"):
        dump(tiny_teacher, glue, url, limit=20)
    monkeypatch.setattr("cache.format.lock.LEASE_SECONDS", 1.0)
    time.sleep(1.5)  # not renewed: its holder is gone
    report = dump(tiny_teacher, glue, url, limit=20)
    assert report.stale_lock == holder and read_manifest(url).complete


def error_line(stderr: str) -> str:
    """The one `Error:` line of a failed command; no traceback from this project's code (the
    storage libraries may still print, at exit, what their unfinished requests raised)."""
    found = [re.search(r"(?:^|\])(Error: .*)", line) for line in stderr.splitlines()]  # after a progress bar too
    errors = [match.group(1) for match in found if match]
    ours = [line for line in stderr.splitlines() if f'File "{REPO}' in line and "site-packages" not in line]
    assert len(errors) == 1 and not ours, stderr
    return errors[0]


def cut_while_running(process: subprocess.Popen, local_s3, ready) -> str:
    """Once `ready()`, cut every connection to the server until `process` fails; its error line."""
    while process.poll() is None and not ready():
        time.sleep(0.01)
    local_s3.stop()
    try:
        process.wait(timeout=600)
    finally:
        local_s3.start()
    assert process.returncode == 1
    return error_line(process.stderr.read())


def dump_process(url, glue, teacher, env=None):
    command = [sys.executable, str(REPO / "cli.py"), "dump-teacher", "--task", "sst2", "--data", str(glue / "SST-2"),
               "--teacher", str(teacher), "--out", url, "--limit", str(EXAMPLES["limit"]),
               "--block-mb", str(EXAMPLES["block_mb"]), "--batch-size", str(EXAMPLES["batch_size"])]
    return subprocess.Popen(command, cwd=REPO, env=os.environ | (env or {}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_writer_killed_mid_block_resumes_to_the_folder_cache(bucket, glue, tiny_teacher, local_cache):
    url = f"{bucket}/killed"
    killed = dump_process(url, glue, tiny_teacher, {"TINYBERT_FAILPOINT": "unit-staged:3"})
    killed.wait(timeout=600)
    assert killed.returncode == -signal.SIGKILL
    manifest = read_manifest(url)
    store = open_store(url, manifest.storage)
    # the index and block 0 are committed; block 1 is written in full but has no marker: absent
    assert not manifest.complete and manifest.num_blocks >= 3 and store.committed_blocks() == {0}
    assert any(name.startswith("blocks/000001/") for name in objects(url))
    assert all(p.startswith("cache is incomplete") for p in verify_cache(url))
    with pytest.raises(CacheError, match="incomplete"):
        open_cache(url)
    resumed = dump_process(url, glue, tiny_teacher)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    assert_same_arrays(local_cache, url)


@pytest.mark.slow
def test_the_server_going_away_mid_dump_loses_nothing(bucket, glue, tiny_teacher, local_cache, local_s3):
    url = f"{bucket}/outage"
    writer = dump_process(url, glue, tiny_teacher, {"AWS_MAX_ATTEMPTS": "2"})
    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    error = cut_while_running(writer, local_s3, lambda: fs.glob(f"{url.removeprefix('s3://')}/blocks/*.committed"))
    assert "the blocks already committed are kept: run the same command again" in error
    assert not read_manifest(url).complete
    assert all(p.startswith("cache is incomplete") for p in verify_cache(url))
    resumed = dump_process(url, glue, tiny_teacher)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    assert_same_arrays(local_cache, url)


@pytest.mark.slow
def test_real_minilm_cache_in_s3_holds_its_fresh_forward(bucket, glue):
    from cache.data.checkpoints import default_teacher_path
    from tests.helpers import assert_matches_reference

    url = f"{bucket}/minilm"
    dump_teacher(DumpConfig(task="sst2", data=glue / "SST-2", split="train", out=url, limit=24, block_mb=0.3),
                 command="test", progress=False)
    assert_matches_reference(url, default_teacher_path())


def test_training_from_s3_logs_the_losses_of_the_folder_cache(bucket, glue, tiny_teacher, local_cache, tmp_path):
    from student.trainer import train_student
    from tests.helpers import logged, train_config

    url = f"{bucket}/train"
    dump(tiny_teacher, glue, url, **EXAMPLES)
    options = {"stage": "all", "max_steps": 4, "eval_cache": None}
    train_student(train_config(local_cache, tmp_path / "folder", **options), command="folder", progress=False)
    train_student(train_config(url, tmp_path / "s3", prefetch_blocks=3, **options), command="s3", progress=False)
    assert logged(tmp_path / "s3") == logged(tmp_path / "folder") and len(logged(tmp_path / "s3")) == 8
    # a reader process opens its own client (an async client must not cross the fork)
    train_student(train_config(url, tmp_path / "worker", workers=1, **options), command="worker", progress=False)
    assert logged(tmp_path / "worker") == logged(tmp_path / "folder")


@pytest.mark.slow
def test_the_server_going_away_mid_training_resumes_to_the_same_weights(bucket, glue, tiny_teacher, local_s3,
                                                                        tmp_path):
    import torch
    from transformers import BertForSequenceClassification

    from student.trainer import train_student
    from tests.helpers import train_config

    url, folder = f"{bucket}/train", tmp_path / "folder"
    for out in (url, folder):
        dump(tiny_teacher, glue, out, limit=48, block_mb=0.05, batch_size=16)
    options = {"stage": "intermediate", "epochs_intermediate": 2, "save_every": 2, "window_blocks": 1}
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    out = tmp_path / "cut"
    command = [sys.executable, str(REPO / "cli.py"), "train-student", "--cache", url, "--out", str(out),
               "--student", "layers=3,hidden=32,ffn=64,heads=4", "--batch-size=8", "--workers=0", *flags]
    trainer = subprocess.Popen(command, cwd=REPO, env=os.environ | {"AWS_MAX_ATTEMPTS": "2"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert f"Error: {url}: block" in cut_while_running(trainer, local_s3, (out / "checkpoint.pt").exists)
    resumed = subprocess.run([*command, "--resume"], cwd=REPO, capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr

    whole = tmp_path / "whole"  # from the folder: the same targets (as the tests above show), read faster
    train_student(train_config(folder, whole, **options), command="whole", progress=False)
    a = BertForSequenceClassification.from_pretrained(whole / "last").state_dict()
    b = BertForSequenceClassification.from_pretrained(out / "last").state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
