"""A dump that dies part-way resumes to a cache identical to an uninterrupted one."""


import pytest

from cache import open_cache
from cache.format.manifest import read_manifest
from cache.format.store import Store, open_store
from tests.helpers import assert_same_arrays, dump


@pytest.mark.parametrize("storage, embedding_output", [("zarr", "stored"), ("hdf5", "stored"), ("zarr", "tables")])
def test_failed_dump_resumes_to_identical_cache(tmp_path, glue, tiny_teacher, monkeypatch, storage, embedding_output):
    dump(tiny_teacher, glue, tmp_path / "whole", format=storage, embedding_output=embedding_output)
    real_write, writes = Store.write_unit, []

    def failing_write(self, unit, arrays, attrs):
        if unit.startswith("blocks/") and len(writes) == 2 + (embedding_output == "tables"):
            raise OSError("simulated crash")
        writes.append(unit)
        real_write(self, unit, arrays, attrs)

    monkeypatch.setattr(Store, "write_unit", failing_write)
    with pytest.raises(OSError, match="simulated crash"):
        dump(tiny_teacher, glue, tmp_path / "cut", format=storage, embedding_output=embedding_output)
    monkeypatch.undo()
    manifest = read_manifest(tmp_path / "cut")
    committed = open_store(tmp_path / "cut", storage).committed_blocks()
    assert not manifest.complete and 0 < len(committed) < manifest.num_blocks
    with pytest.raises(Exception, match="incomplete"):
        open_cache(tmp_path / "cut")

    report = dump(tiny_teacher, glue, tmp_path / "cut", format=storage, embedding_output=embedding_output)
    assert 0 < report.written_examples < report.examples  # only the missing blocks were computed
    assert read_manifest(tmp_path / "cut").complete
    assert_same_arrays(tmp_path / "whole", tmp_path / "cut")
