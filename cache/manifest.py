"""The manifest: a versioned JSON record of exactly what made a cache, written atomically.

It is the single source of truth for a cache's identity (teacher, tokenizer, data, settings) and
for whether it is complete. A reader refuses a format version it does not know.
"""

import json
import os
from pathlib import Path

from .errors import CacheError
from .failpoints import failpoint

MANIFEST = "manifest.json"
TOKENIZER = "tokenizer"
"""Folder of the teacher's tokenizer inside a cache."""
FORMAT_NAME = "tinybert-distill-cache"
FORMAT_VERSION = 1

IDENTITY = {
    "teacher weights": ("teacher", "weights_sha256"),
    "tokenizer": ("tokenizer", "fingerprint"),
    "task": ("data", "task"),
    "split": ("data", "split"),
    "data files": ("data", "files"),
    "example count (--limit)": ("data", "examples"),
    "--max-seq-len": ("max_seq_len",),
    "--layers": ("layers",),
    "--attention": ("attention",),
    "--dtype": ("dtype",),
    "--attention-dtype": ("attention_dtype",),
    "--format": ("storage",),
    "--compression": ("compression",),
    "block plan (--block-mb)": ("block_bytes",),
}
"""Fields that must agree for a run to continue an existing cache: (label, path in manifest)."""


def manifest_path(cache: Path) -> Path:
    return Path(cache) / MANIFEST


def read_manifest(cache: Path) -> dict:
    """Load and check a cache's manifest; CacheError if it is missing or of an unknown version."""
    path = manifest_path(cache)
    if not path.is_file():
        raise CacheError(f"{cache}: not a cache (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CacheError(f"{path}: unreadable manifest ({e})") from None
    if manifest.get("format") != FORMAT_NAME:
        raise CacheError(f"{path}: not a {FORMAT_NAME} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CacheError(f"{path}: cache format version {manifest.get('format_version')} is not supported "
                         f"(this version reads {FORMAT_VERSION}); dump the teacher again")
    return manifest


def write_manifest(cache: Path, manifest: dict) -> None:
    """Write via a temporary file, fsync and rename: a reader never sees half a manifest."""
    path = manifest_path(cache)
    tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    failpoint("manifest-written")
    os.rename(tmp, path)


def identity_mismatches(existing: dict, requested: dict) -> list[str]:
    """Human-readable differences between two manifests' identities (empty when they agree)."""
    out = []
    for label, keys in IDENTITY.items():
        old, new = _get(existing, keys), _get(requested, keys)
        if old != new:
            out.append(f"{label}: cache has {_short(old)}, this run has {_short(new)}")
    return out


def _get(manifest: dict, keys: tuple[str, ...]):
    for key in keys:
        manifest = manifest.get(key) if isinstance(manifest, dict) else None
    return manifest


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
