"""One writer per cache: an exclusive flock on `<cache>/.lock`, with the holder written inside.

flock is released by the kernel when its process dies, however it dies, so a lock file left by a
killed dump never blocks the next one: it is recognised as stale and taken over.
"""

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from .errors import CacheError

LOCK = ".lock"


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
