"""Faults around a dump: a second writer, a stale lock, a full disk, damaged data under a trainer."""

import errno
import json
import shutil
import subprocess
import sys

import pytest

from cache.format.lock import WriterLock
from cache.format.manifest import read_manifest
from cache.format.store import BACKENDS
from cache.runtime.errors import CacheError
from student.trainer import train_student
from tests.helpers import REPO, assert_same_arrays, dump
from tests.helpers import train_config as config


def test_second_writer_is_refused_naming_the_holder(tmp_path, glue, tiny_teacher):
    refused = pytest.raises(CacheError, match=r"another dump is writing this cache \(pid \d+ on .*dump-teacher --out c")
    with WriterLock(tmp_path / "c", "python cli.py dump-teacher --out c"), refused:
        dump(tiny_teacher, glue, tmp_path / "c")
    assert dump(tiny_teacher, glue, tmp_path / "c").written_examples == 24  # free again once released


@pytest.mark.slow
def test_stale_lock_of_a_killed_writer_is_taken_over(tmp_path, glue, tiny_teacher):
    args = [sys.executable, str(REPO / "cli.py"), "dump-teacher", "--task", "sst2", "--data", str(glue / "SST-2"),
            "--teacher", str(tiny_teacher), "--limit", "40", "--out", str(tmp_path / "c")]
    killed = subprocess.run(args, cwd=REPO, env={**__import__("os").environ, "TINYBERT_FAILPOINT": "unit-staged:1"},
                            check=False)
    assert killed.returncode == -9
    holder = json.loads((tmp_path / "c" / ".lock").read_text())
    assert holder["command"].startswith("python cli.py dump-teacher")
    resumed = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert f"took over the lock of a writer that died (pid {holder['pid']}" in resumed.stderr


def test_many_readers_at_once(tmp_path, glue, tiny_teacher):
    from concurrent.futures import ThreadPoolExecutor

    from cache import open_cache

    dump(tiny_teacher, glue, tmp_path / "c")

    def read_all(_):
        cache = open_cache(tmp_path / "c")
        return [block.targets["hidden"][1].tobytes() for block in cache.iter_blocks()]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(read_all, range(8)))
    assert all(r == results[0] for r in results)


@pytest.mark.parametrize("storage", ["zarr", "hdf5"])
def test_full_disk_stops_cleanly_and_resumes(tmp_path, glue, tiny_teacher, monkeypatch, storage):
    backend = BACKENDS[storage]
    real_write, writes = backend._write, []

    def fills_up(self, path, arrays, attrs):
        writes.append(path)
        if len(writes) == 4:
            real_write(self, path, {name: array for name, array in list(arrays.items())[:1]}, attrs)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_write(self, path, arrays, attrs)

    monkeypatch.setattr(backend, "_write", fills_up)
    with pytest.raises(CacheError, match=r"no space left on device \(.*\.staging.*\); the blocks already committed "
                                         r"are kept: free space and run the same command again"):
        dump(tiny_teacher, glue, tmp_path / "c", format=storage)
    monkeypatch.undo()
    assert not read_manifest(tmp_path / "c").complete
    dump(tiny_teacher, glue, tmp_path / "c", format=storage)
    dump(tiny_teacher, glue, tmp_path / "whole", format=storage)
    assert_same_arrays(tmp_path / "whole", tmp_path / "c")


def _damage(cache, how):
    block = sorted((cache / "blocks").glob("00*"))[2]
    if how == "delete-block":
        shutil.rmtree(block)
        return
    chunk = max((f for f in block.rglob("*") if f.is_file() and f.name != "zarr.json"), key=lambda f: f.stat().st_size)
    if how == "flip-byte":
        data = bytearray(chunk.read_bytes())
        data[len(data) // 3] ^= 0x01
        chunk.write_bytes(bytes(data))
    elif how == "truncate":
        chunk.write_bytes(chunk.read_bytes()[:100])
    elif how == "delete-chunk":
        chunk.unlink()


@pytest.mark.parametrize("how", ["flip-byte", "truncate", "delete-chunk", "delete-block"])
def test_trainer_refuses_damaged_data(tmp_path, tiny_cache, how):
    cache = tmp_path / "c"
    shutil.copytree(tiny_cache, cache)
    _damage(cache, how)
    with pytest.raises(CacheError) as error:
        train_student(config(cache, tmp_path / "r", stage="intermediate", epochs_intermediate=1),
                      command="x", progress=False)
    message = str(error.value)
    assert "\n" not in message and "cache verify" in message
    assert ("blocks [2] missing" in message if how == "delete-block" else
            "block 2 (examples " in message and ("array 'attention'" in message or "array 'hidden'" in message))


@pytest.mark.parametrize("how", ["flip-byte", "truncate", "delete-block"])
def test_trainer_refuses_damaged_hdf5(tmp_path, glue, tiny_teacher, how):
    dump(tiny_teacher, glue, tmp_path / "c", format="hdf5", limit=96, block_mb=0.1, batch_size=16)
    block = sorted((tmp_path / "c" / "blocks").glob("*.h5"))[2]
    data = block.read_bytes()
    if how == "flip-byte":  # inside the largest dataset's stored bytes
        import h5py

        with h5py.File(block) as f:
            dataset = max((f[name] for name in f), key=lambda d: d.id.get_storage_size())
            offset = dataset.id.get_chunk_info(0).byte_offset
        data = bytearray(data)
        data[offset + 10] ^= 0x01
        block.write_bytes(bytes(data))
    elif how == "truncate":
        block.write_bytes(data[: len(data) // 2])
    else:
        block.unlink()
    with pytest.raises(CacheError) as error:
        train_student(config(tmp_path / "c", tmp_path / "r", stage="intermediate", epochs_intermediate=1),
                      command="x", progress=False)
    message = str(error.value)
    assert "\n" not in message and ("block 2 (examples" in message or "blocks [2] missing" in message)
