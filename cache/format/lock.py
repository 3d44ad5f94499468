"""One writer job per cache: an exclusive flock on `<cache>/.lock` with the holder written inside,
or a lease object in an object store.

flock is released by the kernel when its process dies, however it dies, so a lock file left by a
killed dump never blocks the next one: it is recognised as stale and taken over.
"""

import contextlib
import fcntl
import functools
import json
import os
import socket
import threading
import time
from pathlib import Path

from cache.format.location import LocalRoot, Root
from cache.runtime.errors import CacheError

LOCK = ".lock"
LEASE_SECONDS = 120.0
"""How long an object-store lease outlives its last renewal."""


class WriterLock:
    """Hold with `with WriterLock(path, command):`; raises CacheError naming the live holder."""

    def __init__(self, cache: Path, command: str):
        self.path = Path(cache) / LOCK
        self.command = command
        self.stale_holder: dict | None = None
        """The holder recorded by a dead writer whose lock this one took over, if any."""

    def __enter__(self) -> "WriterLock":  # noqa: PYI034 (typing.Self needs Python 3.11)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(self._fd)
            os.close(self._fd)
            raise CacheError(f"{self.path.parent}: another dump is writing this cache (pid {holder.get('pid')} on "
                             f"{holder.get('host')} since {holder.get('since')}: {holder.get('command')}); "
                             "wait for it, or write to another --out") from None
        self.stale_holder = _read_holder(self._fd) or None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(record).encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        os.ftruncate(self._fd, 0)  # an orderly exit leaves no holder behind
        if [p.name for p in self.path.parent.iterdir()] == [LOCK]:  # nothing was created: leave no trace
            self.path.unlink()
            self.path.parent.rmdir()
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except json.JSONDecodeError:
        return {}


class ObjectLease:
    """The lock's equivalent in an object store: a `.lock` object created by a conditional PUT
    (only if absent), renewed by a thread every LEASE_SECONDS / 4, deleted on exit.

    No kernel releases it when the holder dies, so a lease not renewed for LEASE_SECONDS (or held by
    a process of this host that no longer exists) is stale and taken over: deleted, then created
    conditionally again (of two writers taking over at once, one wins). Ages are measured on the
    store's clock (Last-Modified times), not on the hosts'.
    """

    def __init__(self, root: Root, command: str):
        self.root, self.command = root, command
        self.stale_holder: dict | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> "ObjectLease":  # noqa: PYI034
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        data = json.dumps(record).encode()
        try:
            self.root.put_bytes(data, LOCK, create=True)
        except FileExistsError:
            holder, age = self._holder()
            if age < LEASE_SECONDS and not _dead_here(holder):
                raise CacheError(f"{self.root}: another dump is writing this cache (pid {holder.get('pid')} on "
                                 f"{holder.get('host')} since {holder.get('since')}: {holder.get('command')}; lease "
                                 f"renewed {age:.0f} s ago); wait for it, or write to another --out") from None
            self.stale_holder = holder
            self.root.remove(LOCK)
            try:
                self.root.put_bytes(data, LOCK, create=True)
            except FileExistsError:
                raise CacheError(f"{self.root}: another dump took over this cache's stale lock at the same "
                                 "moment; wait for it, or write to another --out") from None
        self._renewer = threading.Thread(target=self._renew, args=(data,), name="cache-lease", daemon=True)
        self._renewer.start()
        return self

    def _holder(self) -> tuple[dict, float]:
        """The recorded holder and seconds since the lease was last renewed, on the store's clock."""
        try:
            renewed = self.root.fs.modified(self.root.join(LOCK))
            holder = json.loads(self.root.read_bytes(LOCK) or b"{}")
        except (FileNotFoundError, json.JSONDecodeError):
            return {}, float("inf")
        probe = f"{LOCK}.clock-{socket.gethostname()}-{os.getpid()}"  # an object written now: the store's now
        self.root.put_bytes(b"", probe)
        now = self.root.fs.modified(self.root.join(probe))
        self.root.remove(probe)
        return holder, (now - renewed).total_seconds()

    def _renew(self, data: bytes) -> None:
        while not self._stop.wait(LEASE_SECONDS / 4):
            with contextlib.suppress(Exception):  # a store that is down now may answer at the next renewal
                self.root.put_bytes(data, LOCK)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        with contextlib.suppress(Exception):  # a store that is down: the lease lapses by itself
            self.root.remove(LOCK)


def _dead_here(holder: dict) -> bool:
    """The holder ran on this host and its process is gone."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


@functools.singledispatch
def cache_lock(root: Root, command: str) -> WriterLock | ObjectLease:
    """The writer lock of a cache: a lease in an object store, flock in a folder (each kind of
    `Root` registers its own)."""
    return ObjectLease(root, command)


@cache_lock.register
def _folder_lock(root: LocalRoot, command: str) -> WriterLock | ObjectLease:
    return WriterLock(root.location(), command)
