"""HDF5 backend: each unit is one .h5 file (HDF5 has no safe concurrent writers to one file),
with the same array names and shapes as the Zarr backend; chunks carry fletcher32 checksums."""

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cache.format.store.base import ChunkedArray, Store, check_location
from cache.runtime.failpoints import failpoint

FILTERS: dict[str, dict[str, Any]] = {
    "none": {}, "gzip": {"compression": "gzip", "compression_opts": 1}, "lzf": {"compression": "lzf"},
}


class HDF5Store(Store):
    format = "hdf5"
    suffix = ".h5"

    def __init__(self, root, compression: str = "none", open_units: int = 64):
        super().__init__(root, compression, open_units)
        check_location(self.format, self.root.url)

    def _write(self, path: Path | str, arrays: dict[str, ChunkedArray], attrs: dict) -> None:
        with h5py.File(path, "w") as f:
            f.attrs["tinybert"] = json.dumps(attrs)
            for name, (data, chunks) in arrays.items():
                f.create_dataset(name, data=data, chunks=chunks, fletcher32=True, **FILTERS[self.compression])
                failpoint("unit-mid-write")

    def _open_unit(self, path: Path | str):
        return h5py.File(path, "r")

    def _read(self, handle, name: str, selection: tuple) -> np.ndarray:
        # h5py takes one increasing index list per selection, as a list
        selection = tuple(s.tolist() if isinstance(s, np.ndarray) else s for s in selection)
        return handle[name][selection or ()]

    def _attrs(self, handle) -> dict:
        return json.loads(handle.attrs["tinybert"])

    def _array_names(self, handle) -> list[str]:
        return sorted(handle.keys())

    def _close(self, handle) -> None:
        handle.close()
