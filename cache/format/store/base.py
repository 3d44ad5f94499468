"""The storage contract shared by the Zarr and HDF5 backends.

A cache holds `manifest.json` and *units*: the index and one unit per block; no two blocks ever
share a file or a chunk. A unit is whole or absent, whatever kills the writer: it is staged and
committed as its root does it (`cache.format.location`: a rename in a folder, a marker object in
an object store).
"""

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from pathlib import Path

import google_crc32c
import numpy as np

from cache.format.location import Root, Target, is_url, open_root
from cache.runtime.errors import UserError
from cache.runtime.failpoints import failpoint

COMPRESSIONS: dict[str, tuple[str, ...]] = {"zarr": ("none", "zstd", "lz4", "gzip"), "hdf5": ("none", "gzip", "lzf")}
BLOCKS = "blocks"
INDEX = "index"
SEQUENCE_HASHES = "sequence_hashes"
"""Array of the index: a hash of each example's tokens, (n,) uint64 (`cache.data.sequences`)."""
EMBEDDINGS = "embeddings"
"""The unit of the teacher's embedding tables, where a cache recomputes layer 0 (`cache.format.embeddings`)."""

ChunkedArray = tuple[np.ndarray, tuple[int, ...]]  # data, chunk shape


def check_compression(format: str, compression: str) -> None:
    if compression not in COMPRESSIONS[format]:
        raise UserError(f"--compression {compression} is not available with --format {format} "
                        f"(choose {', '.join(COMPRESSIONS[format])})")


def check_location(format: str, url: str) -> None:
    """HDF5 needs a file system: h5py writes through seeks and in-place updates, which objects lack."""
    if format == "hdf5" and is_url(url):
        raise UserError(f"--format hdf5: {url} is an object store, and an HDF5 file needs a file system; "
                        "use --format zarr there, or a local or shared folder")


def block_unit(k: int) -> str:
    return f"{BLOCKS}/{k:06d}"


class Store(ABC):
    """One cache (a folder or an object-store prefix) in one format."""

    format: str
    suffix: str
    """Appended to a unit's name to get its path (a file extension, or "" for directories)."""

    def __init__(self, root: "Target | Root", compression: str = "none", open_units: int = 64):
        check_compression(self.format, compression)
        self.root = open_root(root)
        self.compression = compression
        self._open: OrderedDict[str, object] = OrderedDict()
        self._open_limit = open_units
        self._opening = threading.Lock()  # blocks are read on several threads from an object store

    # -- writing -------------------------------------------------------------------------------
    def create(self) -> None:
        """Lay out an empty cache (idempotent; an object store needs no folders)."""
        self.root.makedirs(BLOCKS)

    def write_unit(self, unit: str, arrays: dict[str, ChunkedArray], attrs: dict) -> None:
        """Write `arrays` and `attrs` as `unit`, staged and committed whole (`Root.commit`).

        The attributes also get value checksums (`crc32c`): one per slab of `chunks[0]` rows along
        the first axis (per layer for hidden states and attention), so that a read of some layers
        can be checked too. `cache verify` and block reads check them.
        """
        attrs = attrs | {"crc32c": {name: {"rows": chunks[0], "slabs": slab_checksums(data, chunks[0])}
                                    for name, (data, chunks) in arrays.items()}}
        staged = self.root.stage(f"{unit}{self.suffix}")
        self._write(staged, arrays, attrs)
        failpoint("unit-staged")
        self.root.commit(staged, f"{unit}{self.suffix}")

    def clean_staging(self) -> None:
        """Drop half-written units left by a killed writer."""
        self.root.clean_staging()

    # -- reading -------------------------------------------------------------------------------
    def unit_location(self, unit: str) -> Path | str:
        """A unit's folder or file, or its URL in an object store."""
        return self.root.location(f"{unit}{self.suffix}")

    def has_unit(self, unit: str) -> bool:
        return self.root.committed(f"{unit}{self.suffix}")

    def committed_blocks(self) -> set[int]:
        names = [n.removesuffix(self.suffix) for n in self.root.committed_names(BLOCKS) if n.endswith(self.suffix)]
        return {int(n) for n in names if n.isdigit()}

    def read(self, unit: str, name: str, selection: tuple = ()) -> np.ndarray:
        """Read `name` of `unit`; `selection` is orthogonal (ints, slices or sorted index arrays).

        An index array on the first axis (a layer subset) is read as runs of consecutive rows:
        zarr's and h5py's fancy indexing is over 10x slower than slicing the same chunks.
        """
        handle, rows = self._handle(unit), selection[0] if selection else None
        if not isinstance(rows, np.ndarray):
            return self._read(handle, name, selection)
        runs = np.split(rows, np.flatnonzero(np.diff(rows) != 1) + 1)
        parts = [self._read(handle, name, (slice(int(run[0]), int(run[-1]) + 1), *selection[1:])) for run in runs]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def attrs(self, unit: str) -> dict:
        return self._attrs(self._handle(unit))

    def array_names(self, unit: str) -> list[str]:
        return self._array_names(self._handle(unit))

    def nbytes(self) -> int:
        """Bytes of all files or objects of the cache (apparent size)."""
        return self.root.du()

    def target_nbytes(self) -> int:
        """Bytes of the targets alone: the index, the blocks and any embedding tables (no
        manifest, no tokenizer)."""
        return self.root.du(BLOCKS) + sum(self.root.du(f"{unit}{self.suffix}") for unit in (INDEX, EMBEDDINGS))

    def close(self) -> None:
        while self._open:
            self._close(self._open.popitem()[1])

    def _handle(self, unit: str):
        """An open handle on a unit, from a small LRU (HDF5 files hold file descriptors)."""
        with self._opening:
            if unit in self._open:
                self._open.move_to_end(unit)
                return self._open[unit]
        if not self.has_unit(unit):
            raise FileNotFoundError(f"{self.unit_location(unit)}: missing")
        handle = self._open_unit(self.unit_location(unit))
        with self._opening:
            self._open[unit] = handle
            if len(self._open) > self._open_limit:
                self._close(self._open.popitem(last=False)[1])
        return handle

    def __getstate__(self):  # DataLoader workers and writer processes open their own handles
        return {key: value for key, value in self.__dict__.items() if key != "_opening"} | {"_open": OrderedDict()}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._opening = threading.Lock()

    # -- backend -------------------------------------------------------------------------------
    @abstractmethod
    def _write(self, location: Path | str, arrays: dict[str, ChunkedArray], attrs: dict) -> None: ...

    @abstractmethod
    def _open_unit(self, location: Path | str): ...

    @abstractmethod
    def _read(self, handle, name: str, selection: tuple) -> np.ndarray: ...

    @abstractmethod
    def _attrs(self, handle) -> dict: ...

    @abstractmethod
    def _array_names(self, handle) -> list[str]: ...

    def _close(self, handle) -> None:  # noqa: B027 - optional: only backends holding file handles override it
        """Release a unit handle (nothing to do for Zarr)."""


def array_checksum(array: np.ndarray) -> str:
    """CRC32C of an array's values. Per-chunk codec checksums catch flipped bytes; this also catches
    a chunk file that went missing and would read back as fill values."""
    return f"{google_crc32c.value(np.ascontiguousarray(array)):08x}"


def slab_checksums(array: np.ndarray, rows: int) -> list[str]:
    """Checksums of consecutive slabs of `rows` rows along the first axis."""
    return [array_checksum(array[i:i + rows]) for i in range(0, max(len(array), 1), max(rows, 1))]

