"""Where a cache lives: a local (or shared) folder, or an fsspec URL (s3://bucket/prefix, gs://...).

`Root` gives both the few file operations a cache needs. Where they differ in kind, the store,
the manifest and the lock branch on `Root.local`: a folder keeps the kernel's guarantees (an atomic
rename, flock); an object store has neither, and offers object semantics instead: one PUT is whole
or absent, and a conditional PUT creates an object only if it does not exist (docs/cluster.md).

Endpoints and credentials come from the standard environment of each fsspec backend (for S3:
AWS_ENDPOINT_URL, AWS_PROFILE, AWS_ACCESS_KEY_ID, ~/.aws ...); `storage_options` passes anything
else to fsspec.

A Root pickles as its URL and options: each process (a writer, a DataLoader worker, a rank) opens
its own client, as fsspec's async clients must not cross a fork.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

from cache.runtime.errors import UserError, describe

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
Target = Path | str
"""A cache as users name it: a Path for a folder, a str for a URL."""


def is_url(target: Target) -> bool:
    return bool(URL.match(str(target)))


def as_target(text: str | Path) -> Target:
    """A command-line value as a cache target: URLs stay strings (a Path would fold their //); a
    file:// URL is the folder it names (kept to the kernel's rename and lock)."""
    if str(text).startswith("file://"):
        return Path(str(text).removeprefix("file://"))
    return str(text) if is_url(text) else Path(text)


@dataclass
class Root:
    """A cache's top: its URL (or absolute folder), and the file system that reaches it."""

    url: str
    storage_options: dict = field(default_factory=dict)
    _fs: tuple[int, fsspec.AbstractFileSystem, str] | None = field(default=None, repr=False, compare=False)

    @property
    def local(self) -> bool:
        return not is_url(self.url)

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._client()[0]

    @property
    def path(self) -> str:
        """The root's path inside `fs` (for S3: bucket/prefix)."""
        return self._client()[1]

    def _client(self) -> tuple[fsspec.AbstractFileSystem, str]:
        if self._fs is None or self._fs[0] != os.getpid():  # a new process opens its own client
            if self.local:
                fs, path = LocalFileSystem(), self.url
            else:
                fs, path = fsspec.core.url_to_fs(self.url, **self.storage_options)
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

    def upload(self, folder: Path, name: str, last: str) -> None:
        """Copy a local folder's files under `name`, the file `last` after all the others (its
        presence then means the whole folder is there)."""
        files = sorted((f for f in folder.rglob("*") if f.is_file()), key=lambda f: f.name == last)
        for f in files:
            self.fs.put_file(str(f), self.join(name, f.relative_to(folder).as_posix()))

    def download(self, name: str, folder: Path) -> None:
        """Copy the files under `name` into a local folder."""
        for path in self.fs.find(self.join(name)):
            target = folder / path[len(self.join(name)) + 1:]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(path, str(target))

    def __str__(self) -> str:
        return self.url

    def __getstate__(self) -> dict:
        return {"url": self.url, "storage_options": self.storage_options, "_fs": None}


FRESH_LISTINGS = {"use_listings_cache": False}
"""A cache's objects change under other writers (ranks, a resumed dump): a listing kept from
earlier in this process would hide the blocks committed since."""


def open_root(target: "Target | Root", storage_options: dict | None = None) -> Root:
    if isinstance(target, Root):
        return target
    target = as_target(target)
    if not is_url(target):
        return Root(os.path.abspath(target))
    return Root(str(target), FRESH_LISTINGS | (storage_options or {}))


def check_reachable(root: Root, option: str) -> None:
    """An object store's bucket answers with these credentials: checked before any work, in one line."""
    if root.local:
        return
    try:
        root.fs.ls(root.path.split("/")[0], detail=False)
    except Exception as e:  # noqa: BLE001 - every backend and network failure means the same here
        raise UserError(f"{option}: {root.url} cannot be reached ({type(e).__name__}: {describe(e)}); check the "
                        "endpoint and credentials (AWS_ENDPOINT_URL, AWS_PROFILE, ... or --storage-options)") from None
