"""Failpoints: named places where a test can make the process die, to prove crash safety.

`TINYBERT_FAILPOINT=name` (or `name:N` for the N-th time it is reached; `name:N@R` in rank R
of a torchrun job only) makes the process SIGKILL itself there: no cleanup handler runs, exactly
like a machine losing power mid-write.
Unset (always, outside tests) a failpoint costs one dictionary lookup.
"""

import os
import signal

_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    wanted = os.environ.get("TINYBERT_FAILPOINT")
    if not wanted:
        return
    wanted, _, rank = wanted.partition("@")
    target, _, nth = wanted.partition(":")
    if target != name or (rank and rank != os.environ.get("RANK", "0")):
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
