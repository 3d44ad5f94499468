"""Zarr v3 backend: the cache directory is a Zarr group, each unit a sub-group of arrays.

Every chunk ends in a CRC32C (zarr's crc32c codec), so a flipped byte fails the read; empty
chunks are written too, so a deleted chunk file is an error rather than silent zeros.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, ZstdCodec
from zarr.storage import FsspecStore, LocalStore

from cache.format.store.base import BLOCKS, ChunkedArray, Store
from cache.runtime.failpoints import failpoint

CODECS: dict[str, list[Any]] = {
    "none": [],
    "zstd": [ZstdCodec(level=3)],
    "lz4": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
    "gzip": [GzipCodec(level=1)],
}


class ZarrStore(Store):
    format = "zarr"
    suffix = ""

    def create(self) -> None:
        super().create()
        for group in ("", BLOCKS):  # Zarr v3 needs metadata on every group
            if not self.root.exists(group, "zarr.json"):
                # mode "a": "w" would delete everything already there
                zarr.open_group(self._zarr_store(self.root.location(group)), mode="a", zarr_format=3)

    def _zarr_store(self, location: Path | str, read_only: bool = False):
        if isinstance(location, Path):
            return LocalStore(location, read_only=read_only)
        return FsspecStore.from_url(location, storage_options=self.root.storage_options, read_only=read_only)

    def _write(self, location: Path | str, arrays: dict[str, ChunkedArray], attrs: dict) -> None:
        group = zarr.open_group(self._zarr_store(location), mode="w", zarr_format=3,
                                 attributes=json.loads(json.dumps(attrs)))
        for name, (data, chunks) in arrays.items():
            array = group.create_array(
                name, shape=data.shape, dtype=data.dtype, chunks=chunks, fill_value=0,
                compressors=[*CODECS[self.compression], Crc32cCodec()],
                config={"write_empty_chunks": True},
            )
            array[...] = data
            failpoint("unit-mid-write")

    def _open_unit(self, location: Path | str):
        group = zarr.open_group(self._zarr_store(location, read_only=True), mode="r", zarr_format=3)
        return group, {}

    def _read(self, handle, name: str, selection: tuple) -> np.ndarray:
        group, arrays = handle
        if name not in arrays:
            arrays[name] = group[name]
        return arrays[name].get_orthogonal_selection(selection or ())

    def _attrs(self, handle) -> dict:
        return handle[0].attrs.asdict()

    def _array_names(self, handle) -> list[str]:
        return sorted(handle[0].array_keys())
