"""The writer process: the same cache as the writing thread, and no silent loss when it fails."""

import errno

import numpy as np
import pytest

from cache.format.manifest import read_manifest
from cache.format.store.zarr_store import ZarrStore
from cache.runtime.errors import CacheError
from cache.teacher.writer import ProcessWriter
from tests.helpers import assert_matches_reference, assert_same_arrays, dump

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("storage", ["zarr", "hdf5"])
def test_process_writer_writes_what_the_thread_writes(tmp_path, glue, tiny_teacher, storage):
    dump(tiny_teacher, glue, tmp_path / "thread", format=storage, writer="thread")
    report = dump(tiny_teacher, glue, tmp_path / "process", format=storage, writer="process")
    assert report.written_examples == 24 and read_manifest(tmp_path / "process").complete
    assert_same_arrays(tmp_path / "thread", tmp_path / "process")
    assert_matches_reference(tmp_path / "process", tiny_teacher)


def test_killed_writer_process_fails_the_dump_and_resumes(tmp_path, glue, tiny_teacher, monkeypatch):
    monkeypatch.setenv("TINYBERT_FAILPOINT", "unit-staged:3")  # the spawned writer inherits it
    with pytest.raises(CacheError, match=r"the cache writer process died \(exit code -9\); the blocks already "
                                         r"committed are kept: run the same command again"):
        dump(tiny_teacher, glue, tmp_path / "c", writer="process")
    assert not read_manifest(tmp_path / "c").complete
    monkeypatch.delenv("TINYBERT_FAILPOINT")
    assert 0 < dump(tiny_teacher, glue, tmp_path / "c", writer="process").written_examples < 24
    dump(tiny_teacher, glue, tmp_path / "whole", writer="thread")
    assert_same_arrays(tmp_path / "whole", tmp_path / "c")


class FullDiskStore(ZarrStore):
    """A store whose disk is full (imported by name in the writer process)."""

    def _write(self, path, arrays, attrs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))


def test_write_error_in_the_process_is_raised_in_the_dump(tmp_path):
    writer = ProcessWriter(FullDiskStore(tmp_path / "c"))
    try:
        writer.submit("blocks/000000", {"hidden": (np.ones((4, 8), np.float16), (4, 8))}, {"start": 0, "stop": 4})
        with pytest.raises(OSError) as raised:
            writer.wait()
        assert raised.value.errno == errno.ENOSPC and ".staging" in raised.value.filename
    finally:
        writer.close()
