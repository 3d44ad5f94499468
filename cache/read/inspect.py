"""`cache info`, `cache verify` and `cache ls`: what a cache is, whether it is intact, which exist."""

from pathlib import Path

import numpy as np
from tqdm import tqdm

from cache.data.sequences import sequence_hashes
from cache.data.tasks import CORPUS_TASK
from cache.format.encoding import TABLES
from cache.format.entries import ATTENTION, HIDDEN
from cache.format.layout import BlockIndex
from cache.format.location import Root, Target, open_root
from cache.format.manifest import MANIFEST, TOKENIZER, Manifest, index_mismatches, read_manifest, unit_identity_problem
from cache.format.store import (
    BLOCKS,
    EMBEDDINGS,
    INDEX,
    SEQUENCE_HASHES,
    Store,
    block_unit,
    open_store,
    slab_checksums,
)
from cache.runtime.errors import CacheError, describe


def _store(path: Target | Root, manifest: Manifest) -> Store:
    return open_store(path, manifest.storage, manifest.compression)


def cache_summary(path: Target | Root) -> dict:
    """The manifest as JSON plus sizes: on disk, per example, per token of each kind of target
    (as encoded), and against the ragged and padded baselines (what `cache info --json` prints)."""
    manifest = read_manifest(path)
    store = _store(path, manifest)
    teacher, n, length = manifest.teacher, manifest.data.examples, manifest.max_seq_len
    on_disk, tokens = store.nbytes(), max(manifest.stats.tokens, 1)
    padded_values = n * (len(manifest.layers) * length * teacher.hidden_size
                         + len(manifest.attention_layers) * teacher.num_heads * length**2)
    lengths = store.read(INDEX, "lengths") if store.has_unit(INDEX) else np.zeros(0, dtype=np.int64)
    geometry = manifest.geometry
    sizes = {
        "bytes": on_disk,
        "target_bytes": store.target_nbytes(),
        "bytes_per_example": on_disk / n,
        "bytes_per_token": {"hidden": geometry.example_bytes(lengths, HIDDEN).sum() / tokens,
                            "attention": geometry.example_bytes(lengths, ATTENTION).sum() / tokens,
                            "on_disk": on_disk / tokens},
        "embedding_tables": store.root.du(f"{EMBEDDINGS}{store.suffix}"),
        "ideal_ragged_bytes": manifest.stats.ideal_bytes,
        "padded_float32_bytes": padded_values * 4,
        "committed_blocks": len(store.committed_blocks()),
    }
    return manifest.to_json() | {"path": str(path), "sizes": sizes}


def size_line(path: Target) -> str:
    """One line for a table's footer: the cache's bytes on disk, in all and per example."""
    sizes = cache_summary(path)["sizes"]
    return f"cache {path}: {_mb(sizes['bytes'])} ({sizes['bytes_per_example'] / 1e3:,.1f} kB/example)"


def format_summary(summary: dict) -> str:
    """The summary as aligned `key: value` lines for people."""
    s, t, d = summary["sizes"], summary["teacher"], summary["data"]
    blocks = f"{s['committed_blocks']}/{summary['num_blocks']} blocks"
    state = f"INCOMPLETE ({blocks})" if not summary["complete"] else "complete" if _whole(summary) else \
        f"DAMAGED ({blocks}; run `cache verify`)"
    per_token = s["bytes_per_token"]
    rows = [
        ("cache", f"{summary['path']} ({state})"),
        ("teacher", (f"{t['path']} ({t['architecture']}, {t['num_layers']} layers, {t['num_heads']} heads, "
                     f"d={t['hidden_size']}, weights sha256 {t['weights_sha256'][:12]})")),
        ("tokenizer", summary["tokenizer"]["fingerprint"][:12]),
        ("data", _data_line(d, summary["max_seq_len"])),
        ("labels", d["label_kind"] + (f" {d['label_names']}" if d["label_names"] else "")),
        ("layers", f"hidden {summary['layers']}, attention {summary['attention_layers']} ({summary['attention']})"),
        ("encoding", (f"hidden {summary['hidden_encoding']} ({per_token['hidden']:,.0f} B/token), "
                      f"attention {summary['attention_encoding']} ({per_token['attention']:,.0f} B/token)"
                      + _tables_note(summary))),
        ("storage", f"{summary['storage']}, compression {summary['compression']}, {summary['num_blocks']} blocks"),
        ("size", (f"{_mb(s['bytes'])} = {s['bytes_per_example'] / 1e3:,.1f} kB/example, "
                  f"{per_token['on_disk']:,.0f} B/token; targets (index, blocks and any embedding tables) "
                  f"x{s['target_bytes'] / max(s['ideal_ragged_bytes'], 1):.3f} of their ragged encoded size, "
                  f"x{s['target_bytes'] / s['padded_float32_bytes']:.3f} of padded float32 "
                  f"({_mb(s['padded_float32_bytes'])})")),
        ("created", f"{summary['created']} by {summary['project_version']}"
                    + (f" ({summary['code_revision'][:12]})" if summary.get("code_revision") else "")
                    + f": {summary['command']}"),
    ]
    rows += [("resumed", command) for command in summary["resumed"]]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def _whole(summary: dict) -> bool:
    """A complete manifest whose every block is there."""
    return bool(summary["complete"]) and summary["sizes"]["committed_blocks"] == summary["num_blocks"]


def _tables_note(summary: dict) -> str:
    if summary["embedding_output"] != TABLES:
        return ""
    return f"; layer 0 from the teacher's embedding tables ({_mb(summary['sizes']['embedding_tables'])})"


def _data_line(d: dict, max_seq_len: int) -> str:
    source = f"from {d['file']} (sha256 {d['sha256'][:12]})"
    if d["task"] == CORPUS_TASK:
        return (f"corpus {d['split']}: {d['examples']} sequences of at most {max_seq_len} tokens {source}, "
                f"--holdout {d['columns']['holdout']:g}")
    truncated = f"{d['truncated']} truncated at {max_seq_len} tokens"
    return f"{d['task']} {d['split']}: {d['examples']} examples {source}, {truncated}"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def verify_cache(path: Target | Root, progress: bool = False) -> list[str]:
    """Re-read every chunk (checksums are checked on read) and check shapes and value checksums.

    Returns the problems found, each naming the block, its example range and the array.
    """
    manifest = read_manifest(path)
    store = _store(path, manifest)
    committed = store.committed_blocks()
    blocks = f"{len(committed)}/{manifest.num_blocks} blocks"
    problems = [] if manifest.complete else [f"cache is incomplete ({blocks})"]
    if not store.has_unit(INDEX):
        return problems + (["index is missing"] if manifest.complete or committed else [])
    index_problems = [f"index: {p}" for p in _verify_block(store, INDEX, {}, manifest)]
    if index_problems:  # without a sound index, blocks cannot be located
        return problems + index_problems
    if manifest.geometry.embedding_tables:
        if store.has_unit(EMBEDDINGS):
            problems += [f"embedding tables: {p}" for p in _verify_block(store, EMBEDDINGS, {}, manifest)]
        elif manifest.complete:
            problems.append("embedding tables: missing")
    lengths, block_starts = store.read(INDEX, "lengths"), store.read(INDEX, "block_starts")
    mismatches = index_mismatches(manifest, lengths, block_starts, store.attrs(INDEX))
    if mismatches:  # the blocks' places and shapes come from these: checking blocks against them would mislead
        return problems + [f"manifest and index disagree: {m}" for m in mismatches]
    for k in tqdm(range(len(block_starts) - 1), desc="verify", unit="block", disable=not progress):
        start, stop = int(block_starts[k]), int(block_starts[k + 1])
        where = f"block {k} (examples {start}-{stop - 1})"
        if k not in committed:
            if manifest.complete:
                problems.append(f"{where}: missing")
            continue
        expected = _expected_shapes(manifest, BlockIndex.build(start, lengths[start:stop],
                                                                manifest.teacher.num_heads))
        problems += [f"{where}: {p}" for p in _verify_block(store, block_unit(k), expected, manifest)]
    return problems


def _expected_shapes(manifest: Manifest, block: BlockIndex) -> dict[str, tuple]:
    t, geometry = manifest.teacher, manifest.geometry
    n_tokens, b = int(block.tokens[-1]), len(block)
    shapes: dict[str, tuple] = {"input_ids": (n_tokens,), "token_type_ids": (n_tokens,)}
    shapes |= {name: (geometry.layer_count(spec), int(block.along(spec.axis)[-1]), *spec.trailing)
               for name, spec in geometry.arrays().items()}
    if manifest.data.label_kind != "none":
        shapes["label"] = (b,)
    if t.num_labels:
        shapes["logits"] = (b, t.num_labels)
    return shapes


def _verify_block(store: Store, unit: str, expected: dict, manifest: Manifest) -> list[str]:
    try:
        attrs = store.attrs(unit)
        checksums = attrs["crc32c"]
        names = store.array_names(unit)
    except Exception as e:  # noqa: BLE001 - any failure to open is a finding, not a crash
        return [f"unreadable ({describe(e)})"]
    foreign = unit_identity_problem(manifest, attrs)
    problems = [foreign] if foreign else []
    problems += [f"array {name!r} is missing" for name in expected if name not in names]
    for name in names:
        try:
            values = store.read(unit, name)
        except Exception as e:  # noqa: BLE001
            problems.append(f"array {name!r}: {describe(e)}")
            continue
        if name in expected and values.shape != expected[name]:
            problems.append(f"array {name!r}: unexpected shape {values.shape}")
        elif values.dtype.kind == "f" and not np.isfinite(values).all():
            problems.append(f"array {name!r}: holds values that are not finite (infinity or NaN)")
        elif name not in checksums or slab_checksums(values, checksums[name]["rows"]) != checksums[name]["slabs"]:
            problems.append(f"array {name!r}: values do not match the checksum written with them")
    return problems


def list_caches(root: Target | Root) -> list[dict]:
    """Every cache under `root` (a folder or a URL; not descending into caches), with what a team
    needs to pick one."""
    found: list[dict] = []
    for folder in _cache_roots(open_root(root)):
        try:
            summary = cache_summary(folder)
        except CacheError as e:
            found.append({"path": folder.url, "error": str(e)})
            continue
        t, d = summary["teacher"], summary["data"]
        found.append({
            "path": folder.url, "teacher": f"{Path(t['path']).name}@{t['weights_sha256'][:8]}",
            "data": f"{d['task']}/{d['split']}", "layers": ",".join(map(str, summary["layers"])),
            "attention": summary["attention"],
            "encoding": ",".join([summary["hidden_encoding"], summary["attention_encoding"]]
                                 + ["tables"] * (summary["embedding_output"] == TABLES)),
            "examples": d["examples"],
            "size": _mb(summary["sizes"]["bytes"]), "complete": _whole(summary),
        })
    return sorted(found, key=lambda row: row["path"])


CACHE_PARTS = (BLOCKS, INDEX, EMBEDDINGS, TOKENIZER)
"""Folders of a cache's own, where no other cache lies."""


def _cache_roots(root: Root) -> list[Root]:
    """The caches at or under `root`: the folders or prefixes holding a manifest, a cache inside
    another's folder included (never inside its own parts, which a walk skips)."""
    return root.holding(MANIFEST, skip=CACHE_PARTS)


def format_table(rows: list[dict]) -> str:
    """Rows of dicts as a plain aligned table (errors on their own lines)."""
    good = [r for r in rows if "error" not in r]
    lines = []
    if good:
        keys = list(good[0])
        widths = {k: max(len(k), *(len(str(r[k])) for r in good)) for k in keys}
        lines.append("  ".join(k.upper().ljust(widths[k]) for k in keys))
        lines += ["  ".join(str(r[k]).ljust(widths[k]) for k in keys) for r in good]
    lines += [f"{r['path']}: {r['error']}" for r in rows if "error" in r]
    return "\n".join(lines) if lines else "no caches found"


def stored_sequence_hashes(store: Store, manifest: Manifest) -> np.ndarray:
    """A complete cache's hashes of its examples' tokens (`cache.data.sequences`): from its index,
    or from each block's tokens (before format 5)."""
    if SEQUENCE_HASHES in store.array_names(INDEX):
        return store.read(INDEX, SEQUENCE_HASHES)
    lengths, starts = store.read(INDEX, "lengths"), store.read(INDEX, "block_starts")
    return np.concatenate([
        sequence_hashes(store.read(block_unit(k), "input_ids"), store.read(block_unit(k), "token_type_ids"),
                        lengths[starts[k]:starts[k + 1]])
        for k in range(manifest.num_blocks)] or [np.zeros(0, np.uint64)])
