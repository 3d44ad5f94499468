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
from zarr.storage import LocalStore

from ..failpoints import failpoint
from .base import BLOCKS, ArrayPlan, Store

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
        for group in (self.path, self.path / BLOCKS):  # Zarr v3 needs metadata on every group
            if not (group / "zarr.json").exists():
                zarr.open_group(LocalStore(group), mode="a")  # "w" would delete everything already there

    def _write(self, path: Path, arrays: dict[str, ArrayPlan], attrs: dict) -> None:
        group = zarr.open_group(LocalStore(path), mode="w", attributes=json.loads(json.dumps(attrs)))
        for name, (data, chunks) in arrays.items():
            array = group.create_array(
                name, shape=data.shape, dtype=data.dtype, chunks=chunks, fill_value=0,
                compressors=[*CODECS[self.compression], Crc32cCodec()],
                config={"write_empty_chunks": True},
            )
            array[...] = data
            failpoint("unit-mid-write")

    def _open_unit(self, path: Path):
        group = zarr.open_group(LocalStore(path, read_only=True), mode="r")
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
