"""Where a cache lives: a local (or shared) folder, or an fsspec URL (s3://bucket/prefix, gs://...).

`Root` is the one contract for both, as zarr has LocalStore and FsspecStore: the few file
operations a cache needs, through fsspec, and the operations that differ in kind, which each
implementation keeps its own way. A folder (`LocalRoot`) keeps the kernel's guarantees: an atomic
rename, flock. An object store (`FsspecRoot`) has neither, and offers object semantics instead: one
PUT is whole or absent, and a conditional PUT creates an object only if it does not exist
(docs/cluster.md). Nothing outside this module asks which one it has; tests/cache/test_location.py
runs one suite against both.

Endpoints and credentials come from the standard environment of each fsspec backend (for S3:
AWS_ENDPOINT_URL, AWS_PROFILE, AWS_ACCESS_KEY_ID, ~/.aws ...); `storage_options` passes anything
else to fsspec.

A Root pickles as its URL and options: each process (a writer, a DataLoader worker, a rank) opens
its own client, as fsspec's async clients must not cross a fork.
"""

import contextlib
import os
import shutil
import socket
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from cache.runtime.errors import CacheError, UserError, describe
from cache.runtime.failpoints import failpoint
from cache.runtime.paths import Target, as_target, is_url

STAGING = ".staging"
COMMITTED = ".committed"
"""Suffix of a unit's commit marker in an object store."""
CREDENTIALS_HINT = "check the endpoint and credentials (AWS_ENDPOINT_URL, AWS_PROFILE, ... or --storage-options)"


@dataclass
class Root(ABC):
    """A cache's top: its URL (or absolute folder), and the file system that reaches it."""

    url: str
    storage_options: dict = field(default_factory=dict)
    _fs: tuple[int, fsspec.AbstractFileSystem, str] | None = field(default=None, repr=False, compare=False)

    read_ahead = 1
    """Blocks a reader keeps in flight: more where each read waits on a network."""
    read_failure_hint = ""
    """What to check first when a unit cannot be read."""

    # -- the same on both, through fsspec ------------------------------------------------------
    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._client()[0]

    @property
    def path(self) -> str:
        """The root's path inside `fs` (for S3: bucket/prefix)."""
        return self._client()[1]

    def _client(self) -> tuple[fsspec.AbstractFileSystem, str]:
        if self._fs is None or self._fs[0] != os.getpid():  # a new process opens its own client
            fs, path = self._open_fs()
            self._fs = (os.getpid(), fs, path.rstrip("/"))
        return self._fs[1], self._fs[2]

    def join(self, *names: str) -> str:
        """The fs path of `names` under the root."""
        return "/".join([self.path, *filter(None, names)])

    def url_of(self, *names: str) -> str:
        return "/".join([self.url.rstrip("/"), *filter(None, names)])

    def exists(self, *names: str) -> bool:
        return self.fs.exists(self.join(*names))

    def read_bytes(self, *names: str) -> bytes:
        return self.fs.cat_file(self.join(*names))

    def put_bytes(self, data: bytes, *names: str, create: bool = False) -> None:
        """Write one object (whole or absent on an object store); `create`: only if it does not
        exist yet (a conditional PUT), else FileExistsError."""
        self.fs.pipe_file(self.join(*names), data, **({"mode": "create"} if create else {}))

    def remove(self, *names: str) -> None:
        path = self.join(*names)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def listdir(self, *names: str) -> list[str]:
        """Names directly under `names` (empty when there is nothing)."""
        try:
            return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.join(*names), detail=False))
        except FileNotFoundError:
            return []

    def du(self, *names: str) -> int:
        """Bytes of every file or object under `names` (0 when there is nothing)."""
        path = self.join(*names)
        return int(self.fs.du(path)) if self.fs.exists(path) else 0

    def __str__(self) -> str:
        return self.url

    def __getstate__(self) -> dict:
        return {"url": self.url, "storage_options": self.storage_options, "_fs": None}

    # -- where a folder and an object store differ ---------------------------------------------
    @abstractmethod
    def _open_fs(self) -> tuple[fsspec.AbstractFileSystem, str]: ...

    @abstractmethod
    def location(self, *names: str) -> Path | str:
        """What a format backend opens for `names`: a folder's Path, or a URL."""

    @abstractmethod
    def url_of_path(self, path: str) -> str:
        """The URL (or folder) of a path inside `fs`."""

    @abstractmethod
    def makedirs(self, *names: str) -> None:
        """Make the folder `names` (an object store needs none)."""

    @abstractmethod
    def stage(self, name: str) -> Path | str:
        """Where to write the unit `name` before `commit` makes it exist."""

    @abstractmethod
    def commit(self, staged: Path | str, name: str) -> None:
        """Make the unit written at `staged` exist as `name`, whole, in one step."""

    @abstractmethod
    def committed(self, name: str) -> bool:
        """Whether the unit `name` was committed (a half-written one never is)."""

    @abstractmethod
    def committed_names(self, folder: str) -> list[str]:
        """The committed units directly under `folder`, by name."""

    @abstractmethod
    def clean_staging(self) -> None:
        """Drop what writers killed before their commit left behind."""

    @abstractmethod
    def write_atomic(self, data: bytes, name: str, point: str) -> None:
        """Write a file that readers see whole or not at all, never in part; failpoint `point`
        just before it becomes visible."""

    @abstractmethod
    def save_folder(self, name: str, save: Callable[[Path], None], last: str) -> None:
        """The folder `name`, as `save` writes it into a local folder, made to exist whole: by a
        rename, or by an upload with the file `last` after all the others."""

    @abstractmethod
    def has_folder(self, name: str, last: str) -> bool:
        """Whether `save_folder(name, ..., last)` completed."""

    @abstractmethod
    def local_folder(self, name: str) -> contextlib.AbstractContextManager[Path]:
        """The folder `name` as a local folder, for as long as the context lasts."""

    @abstractmethod
    def failure(self, error: Exception, message: str) -> Exception:
        """What to raise when an operation on the root failed with `error`: a folder's failures are
        bugs and keep their traceback (`error`); an object store that failed is the user's to fix,
        in one line (a CacheError saying `message`)."""

    @abstractmethod
    def check_reachable(self, option: str) -> None:
        """Refuse, in one line naming `option`, a root that cannot answer (before any work)."""

    @abstractmethod
    def holding(self, name: str, skip: tuple[str, ...]) -> list["Root"]:
        """The roots at or under this one that hold a file `name`, never searching inside the
        folders `skip` of one."""


class LocalRoot(Root):
    """A local or shared folder."""

    def _open_fs(self) -> tuple[fsspec.AbstractFileSystem, str]:
        return LocalFileSystem(), self.url

    def location(self, *names: str) -> Path:
        return Path(self.url, *filter(None, names))

    def url_of_path(self, path: str) -> str:
        return path

    def makedirs(self, *names: str) -> None:
        self.location(*names).mkdir(parents=True, exist_ok=True)

    def stage(self, name: str) -> Path:
        writer = f"{socket.gethostname()}-{os.getpid()}"  # the ranks of a job on several hosts share the folder
        stem, dot, suffix = name.replace("/", "-").partition(".")
        staged = self.location(STAGING, f"{stem}.{writer}{dot}{suffix}")
        _remove(staged)
        staged.parent.mkdir(parents=True, exist_ok=True)
        return staged

    def commit(self, staged: Path | str, name: str) -> None:
        final = self.location(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staged, final)

    def committed(self, name: str) -> bool:
        return self.location(name).exists()

    def committed_names(self, folder: str) -> list[str]:
        return self.listdir(folder)

    def clean_staging(self) -> None:
        _remove(self.location(STAGING))

    def write_atomic(self, data: bytes, name: str, point: str) -> None:
        path = self.location(name)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        failpoint(point)
        os.rename(tmp, path)

    def save_folder(self, name: str, save: Callable[[Path], None], last: str) -> None:
        for stale in self.location().glob(f".{name}.*"):  # left by a writer killed while saving it
            shutil.rmtree(stale, ignore_errors=True)
        staging = self.location(f".{name}.{os.getpid()}")
        save(staging)
        os.rename(staging, self.location(name))

    def has_folder(self, name: str, last: str) -> bool:
        return self.exists(name)

    @contextlib.contextmanager
    def local_folder(self, name: str) -> Iterator[Path]:
        yield self.location(name)

    def failure(self, error: Exception, message: str) -> Exception:
        return error

    def check_reachable(self, option: str) -> None:
        return None  # a folder's problems (missing, not writable) are checked where it is used

    def holding(self, name: str, skip: tuple[str, ...]) -> list[Root]:
        folders = []
        for folder, dirs, files in os.walk(self.url):
            if name in files:
                dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".")]
                folders.append(folder)
        return [LocalRoot(folder) for folder in folders]


class FsspecRoot(Root):
    """A prefix in an object store, reached through fsspec: written in place, each unit committed
    by a marker object `<unit>.committed`, one PUT after its last byte; without its marker a unit
    does not exist (readers never see it, a resumed writer rewrites it over whatever a dead one left)."""

    read_ahead = 8
    """Each read waits on round trips (docs/benchmarks.md)."""
    read_failure_hint = "is the object store reachable? otherwise "

    def _open_fs(self) -> tuple[fsspec.AbstractFileSystem, str]:
        return fsspec.core.url_to_fs(self.url, **self.storage_options)

    def location(self, *names: str) -> str:
        return self.url_of(*names)

    def url_of_path(self, path: str) -> str:
        return self.url.split("://")[0] + "://" + path

    def makedirs(self, *names: str) -> None:
        return None  # objects need no folders

    def stage(self, name: str) -> str:
        return self.location(name)  # in place, over whatever a dead writer left: uncommitted, it does not exist

    def commit(self, staged: Path | str, name: str) -> None:
        self.put_bytes(b"", f"{name}{COMMITTED}")

    def committed(self, name: str) -> bool:
        return self.exists(f"{name}{COMMITTED}")

    def committed_names(self, folder: str) -> list[str]:
        return [n.removesuffix(COMMITTED) for n in self.listdir(folder) if n.endswith(COMMITTED)]

    def clean_staging(self) -> None:
        return None  # uncommitted units are simply rewritten

    def write_atomic(self, data: bytes, name: str, point: str) -> None:
        failpoint(point)
        self.put_bytes(data, name)  # one PUT: whole or absent

    def save_folder(self, name: str, save: Callable[[Path], None], last: str) -> None:
        with tempfile.TemporaryDirectory() as local:
            save(Path(local))
            files = sorted((f for f in Path(local).rglob("*") if f.is_file()), key=lambda f: f.name == last)
            for f in files:
                self.fs.put_file(str(f), self.join(name, f.relative_to(local).as_posix()))

    def has_folder(self, name: str, last: str) -> bool:
        return self.exists(name, last)

    @contextlib.contextmanager
    def local_folder(self, name: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory() as local:
            for path in self.fs.find(self.join(name)):
                target = Path(local) / path[len(self.join(name)) + 1:]
                target.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(path, str(target))
            yield Path(local)

    def failure(self, error: Exception, message: str) -> Exception:
        return CacheError(message)

    def check_reachable(self, option: str) -> None:
        try:
            self.fs.ls(self.path.split("/")[0], detail=False)
        except Exception as e:  # noqa: BLE001 - every backend and network failure means the same here
            raise UserError(f"{option}: {self.url} cannot be reached ({type(e).__name__}: {describe(e)}); "
                            f"{CREDENTIALS_HINT}") from None

    def holding(self, name: str, skip: tuple[str, ...]) -> list[Root]:
        found = sorted(self.fs.glob(self.join("**", name)) + self.fs.glob(self.join(name)))
        prefixes = [path.rsplit("/", 1)[0] for path in dict.fromkeys(found)]
        return [FsspecRoot(self.url_of(p[len(self.path) + 1:]) if p != self.path else self.url, self.storage_options)
                for p in prefixes]


FRESH_LISTINGS = {"use_listings_cache": False}
"""A cache's objects change under other writers (ranks, a resumed dump): a listing kept from
earlier in this process would hide the blocks committed since."""


def open_root(target: "Target | Root", storage_options: dict | None = None) -> Root:
    if isinstance(target, Root):
        return target
    target = as_target(target)
    if not is_url(target):
        return LocalRoot(os.path.abspath(target))
    return FsspecRoot(str(target), FRESH_LISTINGS | (storage_options or {}))


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
