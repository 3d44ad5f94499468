"""What made an output, written beside it: every run records its exact configuration, what it
resolved, the command and the version, so a folder found later says how to make it again."""

import datetime
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from cache import __version__


def code_revision() -> str | None:
    """The git revision of the code that runs (with `+dirty` for uncommitted changes), or None
    outside a git checkout."""
    folder = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                                 capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if changed else "")


def write_record(path: Path, config, command: str, **resolved) -> None:
    """`config` (a dataclass) field by field, then `resolved` (defaults made concrete, inputs'
    checksums, counts), the command, the version, the code's revision and the time; written whole
    or not at all."""
    record = asdict(config) | resolved | {
        "command": command, "project_version": __version__, "code_revision": code_revision(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    staging = path.with_name(f".{path.name}.partial")
    staging.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(staging, path)


MODEL_LAST = "config.json"
"""Moved into a model folder last: a folder with a config.json holds the whole model."""


def save_model(folder: Path, *parts) -> None:
    """`save_pretrained` of each part (a model, its tokenizer) into a staging folder beside the
    files, then moved into `folder` with config.json last: a write that fails (a full disk) leaves
    no config.json, so the folder is never taken for a model, and the same command runs again."""
    staging = folder / f".partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for part in parts:
            part.save_pretrained(staging)
        for file in sorted(staging.iterdir(), key=lambda f: f.name == MODEL_LAST):
            os.replace(file, folder / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def file_sha256(path: Path, files: Iterable[Path] | None = None) -> str:
    """sha256 of a file's bytes; of a folder (a `datasets` folder), of every file's name and bytes
    in sorted order, or of `files` (inside it) only."""
    digest = hashlib.sha256()
    if files is None:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()
