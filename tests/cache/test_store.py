"""The storage contract, run against every backend: one suite, one subclass per format."""

import numpy as np
import pytest

from cache.format.store import HDF5Store, Store, ZarrStore, array_checksum
from cache.runtime.errors import UserError


def arrays():
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((3, 50, 8)).astype(np.float16)
    return {"hidden": (hidden, (1, 17, 8)), "ids": (np.arange(50, dtype=np.int32), (50,))}


class StoreSuite:
    """Every backend, in every kind of place it can live (`cache.format.location`)."""

    store_class: type[Store]
    places: tuple[str, ...] = ("folder", "bucket")

    @pytest.fixture(params=["folder", "bucket"])
    def store(self, request, tmp_path):
        if request.param not in self.places:
            pytest.skip(f"{self.store_class.format} needs a file system")
        where = tmp_path / "cache" if request.param == "folder" else f"{request.getfixturevalue('bucket')}/cache"
        store = self.store_class(where)
        store.root.makedirs()
        store.create()
        return store

    def test_unit_round_trip(self, store):
        store.write_unit("blocks/000003", arrays(), {"start": 7})
        assert store.committed_blocks() == {3}
        assert store.array_names("blocks/000003") == ["hidden", "ids"]
        hidden = arrays()["hidden"][0]
        np.testing.assert_array_equal(store.read("blocks/000003", "hidden"), hidden)
        rows = np.array([0, 2])
        np.testing.assert_array_equal(store.read("blocks/000003", "hidden", (rows, slice(5, 40))), hidden[rows, 5:40])
        attrs = store.attrs("blocks/000003")
        assert attrs["start"] == 7
        assert attrs["crc32c"]["hidden"] == {"rows": 1, "slabs": [array_checksum(layer[None]) for layer in hidden]}
        assert attrs["crc32c"]["ids"] == {"rows": 50, "slabs": [array_checksum(arrays()["ids"][0])]}

    def test_failed_write_commits_nothing(self, store, monkeypatch):
        root = store.root

        def half_write(location, arrays, attrs):
            path = root.fs._strip_protocol(str(location))
            root.fs.pipe_file(path if store.suffix else f"{path}/part", b"partial")
            raise OSError("disk gone")

        monkeypatch.setattr(store, "_write", half_write)
        with pytest.raises(OSError):
            store.write_unit("blocks/000000", arrays(), {})
        assert store.committed_blocks() == set() and not store.has_unit("blocks/000000")
        store.clean_staging()
        assert [name for name in root.listdir() if name.startswith(".")] == []
        monkeypatch.undo()
        store.write_unit("blocks/000000", arrays(), {})  # a resumed writer, over whatever is left
        np.testing.assert_array_equal(store.read("blocks/000000", "ids"), arrays()["ids"][0])

    def test_empty_chunks_are_stored(self, store):
        """A chunk of zeros is written too, so a deleted chunk file can never pass as zeros."""
        zeros = np.zeros((2, 40), np.float16)
        store.write_unit("blocks/000000", {"a": (zeros, (1, 20))}, {})
        assert store.nbytes() >= zeros.nbytes

    def test_create_keeps_what_is_there(self, store):
        """Laying out (again, on resume) must never delete the manifest or committed units."""
        root = store.root
        root.put_bytes(b"{}", "manifest.json")
        store.write_unit("blocks/000000", arrays(), {})
        for marker in [path for path in root.fs.find(root.path) if path.endswith("zarr.json")]:
            root.fs.rm(marker)
        store.create()
        assert root.read_bytes("manifest.json") == b"{}" and store.committed_blocks() == {0}

    def test_bad_compression_names_the_option(self, tmp_path):
        with pytest.raises(UserError, match="--compression"):
            self.store_class(tmp_path, compression="nope")

    def test_handles_survive_pickling(self, store):
        import pickle

        store.write_unit("blocks/000000", arrays(), {})
        store.read("blocks/000000", "ids")
        clone = pickle.loads(pickle.dumps(store))
        np.testing.assert_array_equal(clone.read("blocks/000000", "ids"), arrays()["ids"][0])


class TestZarrStore(StoreSuite):
    store_class = ZarrStore


class TestHDF5Store(StoreSuite):
    store_class = HDF5Store
    places = ("folder",)
