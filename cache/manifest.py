"""The manifest: a versioned JSON record of exactly what made a cache, written atomically.

It is the single source of truth for a cache's identity (teacher, tokenizer, data, settings) and
for whether it is complete. A reader refuses a format version it does not know, and a manifest
whose content no longer matches the checksum written with it: one edited byte in `layers` would
otherwise serve one teacher layer's targets as another's.
"""

import hashlib
import json
import os
from pathlib import Path

from .errors import CacheError
from .failpoints import failpoint

MANIFEST = "manifest.json"
TOKENIZER = "tokenizer"
"""Folder of the teacher's tokenizer inside a cache."""
FORMAT_NAME = "tinybert-distill-cache"
FORMAT_VERSION = 2
"""2: the manifest carries its own checksum, the data columns and the stored attention type."""
CHECKSUM = "checksum"

IDENTITY = {
    "teacher weights": ("teacher", "weights_sha256"),
    "tokenizer": ("tokenizer", "fingerprint"),
    "task": ("data", "task"),
    "split": ("data", "split"),
    "data file contents (sha256)": ("data", "sha256"),
    "data columns": ("data", "columns"),
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
    if manifest.get(CHECKSUM) != content_checksum(manifest):
        raise CacheError(f"{path}: manifest does not match its checksum (edited or damaged); "
                         "dump the teacher again into a new --out")
    return manifest


def read_complete_manifest(cache: Path) -> dict:
    """`read_manifest`, refusing a cache whose dump has not finished."""
    manifest = read_manifest(cache)
    if not manifest["complete"]:
        raise CacheError(f"{cache}: cache is incomplete; run the same dump-teacher command again to finish it")
    return manifest


def content_checksum(manifest: dict) -> str:
    """sha256 of the manifest's content (key order and layout do not count), its checksum left out."""
    content = {key: value for key, value in manifest.items() if key != CHECKSUM}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def write_manifest(cache: Path, manifest: dict) -> None:
    """Write via a temporary file, fsync and rename: a reader never sees half a manifest."""
    path = manifest_path(cache)
    tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest | {CHECKSUM: content_checksum(manifest)}, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    failpoint("manifest-written")
    os.rename(tmp, path)


def identity_mismatches(existing: dict, requested: dict,
                        sides: tuple[str, str] = ("cache has", "this run has")) -> list[str]:
    """Human-readable differences between two manifests' identities (empty when they agree)."""
    out = []
    for label, keys in IDENTITY.items():
        old, new = _get(existing, keys), _get(requested, keys)
        if old != new:
            out.append(f"{label}: {sides[0]} {_short(old)}, {sides[1]} {_short(new)}")
    return out


def index_mismatches(manifest: dict, lengths, block_starts, attrs: dict) -> list[str]:
    """Where the manifest and the cache's index disagree (empty when they agree)."""
    expected = index_attrs(manifest)
    found = {"examples": [len(lengths), int(block_starts[-1]) if len(block_starts) else 0, attrs.get("examples")],
             "num_blocks": [len(block_starts) - 1, attrs.get("num_blocks")],
             "layers": [attrs.get("layers")], "attention_layers": [attrs.get("attention_layers")]}
    return list(dict.fromkeys(f"{key}: the manifest says {expected[key]}, the index {value}"
                              for key, values in found.items() for value in values if value != expected[key]))


def index_attrs(manifest: dict) -> dict:
    """What the index records of the manifest, for `index_mismatches` to cross-check."""
    return {"examples": manifest["data"]["examples"], "num_blocks": manifest["num_blocks"],
            "layers": manifest["layers"], "attention_layers": manifest["attention_layers"]}


def _get(manifest: dict, keys: tuple[str, ...]) -> object:
    value: object = manifest
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
