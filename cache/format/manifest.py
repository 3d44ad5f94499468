"""The manifest: a versioned JSON record of exactly what made a cache, written atomically.

It is the single source of truth for a cache's identity (teacher, tokenizer, data, settings) and
for whether it is complete. `Manifest` is its one schema: read and written here, used as typed
fields everywhere else. A reader refuses a format version it does not know, and a manifest
whose content no longer matches the checksum written with it: one edited byte in `layers` would
otherwise serve one teacher layer's targets as another's.
"""

import dataclasses
import hashlib
import json
import types
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Union, get_args, get_origin, get_type_hints

from cache.format.encoding import STORED, TABLES, AttentionEncoding, VectorEncoding, attention_encoding, vector_encoding
from cache.format.layout import Geometry
from cache.format.location import CREDENTIALS_HINT, Root, Target, open_root
from cache.runtime.errors import CacheError, UserError, describe
from cache.runtime.kinds import AttentionKind

MANIFEST = "manifest.json"
TOKENIZER = "tokenizer"
"""Folder of the teacher's tokenizer inside a cache."""
FORMAT_NAME = "tinybert-distill-cache"
FORMAT_VERSION = 7
"""2: the manifest carries its own checksum, the data columns and the stored attention type.
3: targets are stored in a hidden encoding and an attention encoding (`cache.format.encoding`).
4: the embedding output may come from the teacher's embedding tables (`cache.format.embeddings`).
5: every unit carries the identity digest of its cache (`UNIT_IDENTITY`), and the index a hash of
each example's tokens (`cache.data.sequences`).
6: the teacher's encoder family (`TeacherRecord.family`; its embedding tables' first position).
7: the attention window of each of the teacher's layers (`TeacherRecord.windows`)."""
READS = (2, 3, 4, 5, 6, 7)
"""Versions this one reads: a version 2 cache is a version 3 one with float maps, a version 3
one is a version 4 one with the embedding output stored, a version 4 one is a version 5 one
whose units are not bound to it, a version 5 one is a version 6 one of a BERT teacher, and a
version 6 one is a version 7 one whose layers attend to every key."""
CHECKSUM = "checksum"
UNIT_IDENTITY = "cache_identity"
"""Attribute of every unit (index, block, embedding tables) holding `Manifest.identity`: a unit
copied in from another cache (a partial sync of one cache over another) is refused on read."""

NOT_COMPUTING_CONFIG = ("_name_or_path", "transformers_version", "_attn_implementation_autoset")
"""Keys of a teacher's config that do not change what its weights compute."""
IDENTITY = {
    "teacher weights": ("teacher", "weights_sha256"),
    "teacher configuration (config.json)": ("teacher", "config"),
    "tokenizer": ("tokenizer", "fingerprint"),
    "task": ("data", "task"),
    "split": ("data", "split"),
    "data file contents (sha256)": ("data", "sha256"),
    "data options (columns, --holdout, --documents)": ("data", "columns"),
    "example count (--limit)": ("data", "examples"),
    "--max-seq-len": ("max_seq_len",),
    "--layers": ("layers",),
    "--attention": ("attention",),
    "--hidden-encoding": ("hidden_encoding",),
    "--attention-encoding": ("attention_encoding",),
    "--embedding-output": ("embedding_output",),
    "--format": ("storage",),
    "--compression": ("compression",),
    "block plan (--block-mb)": ("block_bytes",),
}
"""Fields that must agree for a run to continue an existing cache: (label, path in manifest)."""


@dataclass(frozen=True)
class TeacherRecord:
    """The teacher that computed the targets."""

    path: str
    architecture: str
    config: dict
    weights_sha256: str
    """sha256 over the state dict (names, dtypes, shapes, bytes): same weights, same hash."""
    num_layers: int
    num_heads: int
    hidden_size: int
    num_labels: int
    """Size of the classification head; 0 for a bare encoder (no logits stored)."""
    family: str = "bert"
    """Its encoder family (`cache.data.families`); BERT in caches of format 5 and before."""
    windows: tuple[int | None, ...] = ()
    """For each layer 1..N, the farthest key a query attends to (|i - j| <= w), None for a global
    layer; empty when every layer attends to every key (`cache.data.families.attention_windows`)."""


@dataclass(frozen=True)
class DataRecord:
    """The examples the teacher ran over."""

    task: str
    split: str
    file: str
    sha256: str
    """Of the whole data file: its contents, not its path, identify the data."""
    examples: int
    truncated: int
    columns: dict | None
    """How the user's own data was read: its column options, or a corpus's --holdout, --limit and
    --documents (absent from caches made before it: blank-lines);
    None for GLUE tasks (their layout is fixed)."""
    label_names: tuple[str, ...] | None
    label_kind: str
    """classification, regression or none."""


@dataclass(frozen=True)
class Stats:
    tokens: int
    ideal_bytes: int
    """Ragged float16 bytes of the stored targets: what `cache info` compares the size with."""
    bytes: int | None = None
    """On disk, once complete."""


@dataclass(frozen=True)
class Manifest:
    """What made a cache, as `manifest.json` stores it (format `FORMAT_VERSION`)."""

    project_version: str
    created: str
    command: str
    teacher: TeacherRecord
    tokenizer_fingerprint: str
    data: DataRecord
    max_seq_len: int
    layers: tuple[int, ...]
    """Teacher layers whose hidden states the cache gives (0 = embedding output: stored, or from
    the embedding tables)."""
    attention_layers: tuple[int, ...]
    attention: AttentionKind
    """scores or probs: what the teacher's attention targets are (factored encodings store
    queries and keys, which give either)."""
    hidden_encoding: VectorEncoding
    attention_encoding: AttentionEncoding
    """Parsed once from their names (`cache.format.encoding`), e.g. float16 and maps:float16, int8 and qk:float16."""
    embedding_output: str
    """stored, or tables: layer 0 recomputed from the teacher's embedding tables (`cache.format.embeddings`)."""
    storage: str
    compression: str
    block_bytes: int
    num_blocks: int
    batch_size: int
    stats: Stats
    resumed: tuple[str, ...] = ()
    """Each command that continued the dump."""
    complete: bool = False
    completed: str | None = None
    format_version: int = FORMAT_VERSION
    """The version the cache was written in (an older one is read as this one, `READS`)."""
    code_revision: str | None = None
    """The git revision of the code that made it, where it ran from a git checkout."""

    def to_json(self) -> dict:
        """The JSON object, checksum left out (`write_manifest` adds it)."""
        content = asdict(self) | {"hidden_encoding": str(self.hidden_encoding),
                                  "attention_encoding": str(self.attention_encoding)}
        content["tokenizer"] = {"fingerprint": content.pop("tokenizer_fingerprint")}
        content = {"format": FORMAT_NAME, "format_version": content.pop("format_version")} | content
        return json.loads(json.dumps(content))

    @cached_property
    def identity(self) -> str:
        """sha256 of everything that decides the targets (`IDENTITY`): what binds each unit to its
        cache. Two caches share it only if they were made alike, so their units are interchangeable."""
        values = identity_values(self.to_json())
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()

    @property
    def units_bound(self) -> bool:
        """Whether every unit carries `UNIT_IDENTITY` (written so since format 5)."""
        return self.format_version >= 5

    @classmethod
    def from_json(cls, content: dict, where: str) -> "Manifest":
        """Typed fields from a checked JSON object; a missing or malformed field is a CacheError."""
        try:
            fields = {k: v for k, v in content.items() if k not in ("format", CHECKSUM)}
            tokenizer, data = fields.pop("tokenizer"), dict(fields.pop("data"))
            teacher = fields["teacher"] | {"windows": tuple(fields["teacher"].get("windows", ()))}
            names = data.pop("label_names")
            manifest = cls(**fields | {
                "teacher": TeacherRecord(**teacher), "tokenizer_fingerprint": tokenizer["fingerprint"],
                "data": DataRecord(**data, label_names=tuple(names) if names is not None else None),
                "layers": tuple(fields["layers"]), "attention_layers": tuple(fields["attention_layers"]),
                "stats": Stats(**fields["stats"]), "resumed": tuple(fields["resumed"]),
                "attention": AttentionKind(fields["attention"]),
                "hidden_encoding": vector_encoding(fields["hidden_encoding"], "hidden_encoding"),
                "attention_encoding": attention_encoding(fields["attention_encoding"], "attention_encoding"),
            })
        except UserError as e:
            raise CacheError(f"{where}: manifest is malformed ({e})") from None
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise CacheError(f"{where}: manifest is malformed ({type(e).__name__}: {e})") from None
        wrong = [*_wrong_types(manifest), *_wrong_types(manifest.teacher, "teacher."),
                 *_wrong_types(manifest.data, "data."), *_wrong_types(manifest.stats, "stats.")]
        if wrong:
            raise CacheError(f"{where}: manifest is malformed ({', '.join(wrong)})")
        return manifest

    @cached_property
    def geometry(self) -> Geometry:
        """The stored arrays' shapes and encodings."""
        return Geometry(self.teacher.hidden_size, self.teacher.num_heads, self.layers, self.attention_layers,
                        self.hidden_encoding, self.attention_encoding, self.max_seq_len,
                        self.embedding_output == TABLES, self.attention, self.teacher.windows)

    def resumed_by(self, command: str) -> "Manifest":
        return replace(self, resumed=(*self.resumed, command))

    def completed_at(self, when: str, nbytes: int) -> "Manifest":
        return replace(self, complete=True, completed=when, stats=replace(self.stats, bytes=nbytes))


def _wrong_types(record: object, prefix: str = "") -> list[str]:
    """The fields of a manifest record whose JSON value is not of the field's type (a checksum
    only says the file is as written, not that a writer wrote it right)."""
    hints = get_type_hints(type(record))
    wrong = []
    for item in fields(record):  # type: ignore[arg-type]
        value = getattr(record, item.name)
        if not _is_a(value, hints[item.name]):
            wrong.append(f"{prefix}{item.name} is {type(value).__name__} {_short(value)}")
    return wrong


def _is_a(value: object, hint: object) -> bool:
    """isinstance for the types manifests use: scalars, dict, unions with None, tuple[X, ...]."""
    if dataclasses.is_dataclass(hint):
        return isinstance(value, hint)  # type: ignore[arg-type]
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_is_a(value, arg) for arg in args)
    if origin is tuple:
        return isinstance(value, tuple) and all(_is_a(v, args[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or hint)  # type: ignore[arg-type]


def manifest_path(cache: Path) -> Path:
    return Path(cache) / MANIFEST


def read_manifest(cache: Target | Root) -> Manifest:
    """Load and check a cache's manifest; CacheError if it is missing, of an unknown version, or
    altered since it was written."""
    root = open_root(cache)
    path = root.location(MANIFEST)
    try:
        raw = root.read_bytes(MANIFEST)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise CacheError(f"{cache}: not a cache (no {MANIFEST})") from None
    except Exception as e:
        raise root.failure(e, f"{path}: cannot be read ({type(e).__name__}: {describe(e)}); "
                              f"{CREDENTIALS_HINT}") from None
    try:
        content = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CacheError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT_NAME:
        raise CacheError(f"{path}: not a {FORMAT_NAME} manifest")
    if content.get("format_version") not in READS:
        raise CacheError(f"{path}: cache format version {content.get('format_version')} is not supported "
                         f"(this version reads {', '.join(map(str, READS))}); dump the teacher again")
    if content.get(CHECKSUM) != content_checksum(content):
        raise CacheError(f"{path}: manifest does not match its checksum (edited or damaged); "
                         "dump the teacher again into a new --out")
    return Manifest.from_json(_upgraded(content), str(path))


def _upgraded(content: dict) -> dict:
    """An older version's fields as this version's (the arrays are the same): version 2's stored
    types as encodings, and the embedding output stored before version 4."""
    content = dict(content)
    if content["format_version"] == 2:
        content["hidden_encoding"] = content.pop("dtype", None)
        content["attention_encoding"] = f"maps:{content.pop('attention_dtype', None)}"
    if content["format_version"] < 4:
        content["embedding_output"] = STORED
    return content


def read_complete_manifest(cache: Target | Root) -> Manifest:
    """`read_manifest`, refusing a cache whose dump has not finished."""
    manifest = read_manifest(cache)
    if not manifest.complete:
        raise CacheError(f"{cache}: cache is incomplete; run the same dump-teacher command again to finish it")
    return manifest


def content_checksum(content: dict) -> str:
    """sha256 of the manifest's JSON content (key order and layout do not count), its checksum left out."""
    content = {key: value for key, value in content.items() if key != CHECKSUM}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def write_manifest(cache: Target | Root, manifest: Manifest) -> None:
    """Write via a temporary file, fsync and rename (an object store: one PUT): a reader never sees
    half a manifest."""
    content = manifest.to_json()
    data = json.dumps(content | {CHECKSUM: content_checksum(content)}, indent=2).encode()
    open_root(cache).write_atomic(data, MANIFEST, point="manifest-written")


def identity_values(content: dict) -> dict[str, object]:
    """A manifest's identity (`IDENTITY`) from its JSON, by label; the teacher's config without
    the keys that compute nothing."""
    values = {label: _get(content, keys) for label, keys in IDENTITY.items()}
    config = values["teacher configuration (config.json)"]
    if isinstance(config, dict):
        values["teacher configuration (config.json)"] = {key: value for key, value in config.items()
                                                          if key not in NOT_COMPUTING_CONFIG}
    return values


def identity_mismatches(existing: Manifest, requested: Manifest,
                        sides: tuple[str, str] = ("cache has", "this run has")) -> list[str]:
    """Human-readable differences between two manifests' identities (empty when they agree)."""
    return value_mismatches(identity_values(existing.to_json()), identity_values(requested.to_json()), sides)


def value_mismatches(found: dict[str, object], requested: dict[str, object],
                     sides: tuple[str, str] = ("cache has", "this run has")) -> list[str]:
    """Each label of `requested` whose value differs from `found`'s, as a line naming both (of two
    dicts, the entries that differ)."""
    return [f"{label}: {sides[0]} {_short(_difference(found[label], new))}, {sides[1]} "
            f"{_short(_difference(new, found[label]))}" for label, new in requested.items() if found[label] != new]


def _difference(value: object, other: object) -> object:
    """Of two dicts, the entries of `value` that `other` does not share (what names the change)."""
    if isinstance(value, dict) and isinstance(other, dict):
        return {key: item for key, item in value.items() if other.get(key, object()) != item} or {}
    return value


def index_mismatches(manifest: Manifest, lengths, block_starts, attrs: dict) -> list[str]:
    """Where the manifest and the cache's index disagree (empty when they agree)."""
    expected = index_attrs(manifest)
    found = {"examples": [len(lengths), int(block_starts[-1]) if len(block_starts) else 0, attrs.get("examples")],
             "num_blocks": [len(block_starts) - 1, attrs.get("num_blocks")],
             "layers": [attrs.get("layers")], "attention_layers": [attrs.get("attention_layers")]}
    return list(dict.fromkeys(f"{key}: the manifest says {expected[key]}, the index {value}"
                              for key, values in found.items() for value in values if value != expected[key]))


def index_attrs(manifest: Manifest) -> dict:
    """What the index records of the manifest, for `index_mismatches` to cross-check."""
    return {"examples": manifest.data.examples, "num_blocks": manifest.num_blocks,
            "layers": list(manifest.layers), "attention_layers": list(manifest.attention_layers),
            UNIT_IDENTITY: manifest.identity}


def unit_identity_problem(manifest: Manifest, attrs: dict) -> str | None:
    """Why a unit with these attributes is not this cache's (None when it is): it was written for
    a cache made differently, or (from format 5 on) carries no identity at all."""
    found = attrs.get(UNIT_IDENTITY)
    if found is None and not manifest.units_bound:
        return None
    if found != manifest.identity:
        return "belongs to another cache (made with another teacher, data or options than this manifest)"
    return None


def _get(content: dict, keys: tuple[str, ...]) -> object:
    value: object = content
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
