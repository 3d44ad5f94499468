"""What made an output, written beside it: every run records its exact configuration, what it
resolved, the command and the version, so a folder found later says how to make it again."""

import datetime
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

from . import __version__


def write_record(path: Path, config, command: str, **resolved) -> None:
    """`config` (a dataclass) field by field, then `resolved` (defaults made concrete, inputs'
    checksums, counts), the command, the version and the time; written whole or not at all."""
    record = asdict(config) | resolved | {
        "command": command, "project_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    staging = path.with_name(f".{path.name}.partial")
    staging.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(staging, path)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
