"""Storage backends behind one contract (`Store`): Zarr v3 (default) and HDF5."""

from cache.format.location import Root, Target
from cache.format.store.base import (
    BLOCKS,
    COMPRESSIONS,
    EMBEDDINGS,
    INDEX,
    SEQUENCE_HASHES,
    Store,
    array_checksum,
    block_unit,
    check_compression,
    slab_checksums,
)
from cache.format.store.hdf5_store import HDF5Store
from cache.format.store.zarr_store import ZarrStore

BACKENDS: dict[str, type[Store]] = {"zarr": ZarrStore, "hdf5": HDF5Store}


def open_store(root: Target | Root, format: str, compression: str = "none") -> Store:
    return BACKENDS[format](root, compression)


__all__ = [
    "BACKENDS",
    "BLOCKS",
    "COMPRESSIONS",
    "EMBEDDINGS",
    "INDEX",
    "SEQUENCE_HASHES",
    "Store",
    "array_checksum",
    "block_unit",
    "check_compression",
    "open_store",
    "slab_checksums",
]
