"""Read a cache: `open_cache(path)[i]` for one example, `iter_blocks()` for streaming.

A block read costs one read call per array whatever the number of examples in it (each zarr call
has a fixed cost, which caps per-example reads far below block reads; docs/benchmarks.md); a layer
subset reads only the chunks of those layers.
"""

from collections.abc import Iterable, Iterator
from functools import cached_property

import numpy as np

from cache.format.embeddings import TABLES, EmbeddingTables
from cache.format.entries import ATTENTION, HIDDEN
from cache.format.layout import BlockIndex
from cache.format.location import Target, as_target, open_root
from cache.format.manifest import (
    TOKENIZER,
    Manifest,
    index_mismatches,
    read_complete_manifest,
    read_manifest,
    unit_identity_problem,
)
from cache.format.store import EMBEDDINGS, INDEX, Store, block_unit, open_store, slab_checksums
from cache.read.decode import decode_example
from cache.read.ragged import RaggedExamples
from cache.runtime.errors import CacheError, describe


class Cache:
    """A read-only teacher cache. Use `open_cache` to get one."""

    def __init__(self, path: Target, manifest: Manifest, store: Store, layers: Iterable[int] | None = None):
        self.path = path
        """As the user named it: a folder or a URL."""
        self.manifest = manifest
        self.store = store
        self.lengths: np.ndarray = store.read(INDEX, "lengths")
        self.block_starts: np.ndarray = store.read(INDEX, "block_starts")
        index = store.attrs(INDEX)
        foreign = unit_identity_problem(manifest, index)
        if foreign:
            raise CacheError(f"{path}: the index {foreign}; run `cache verify {path}` and dump the teacher again")
        mismatches = index_mismatches(manifest, self.lengths, self.block_starts, index)
        if mismatches:
            raise CacheError(f"{path}: manifest and index disagree ({'; '.join(mismatches)}); "
                             f"run `cache verify {path}` and dump the teacher again")
        stored_hidden, stored_attention = list(manifest.layers), list(manifest.attention_layers)
        wanted = sorted(set(layers)) if layers is not None else stored_hidden
        missing = [layer for layer in wanted if layer not in stored_hidden]
        if missing:
            raise CacheError(f"{path}: teacher layers {missing} are not in this cache "
                             f"(it stores {stored_hidden}); dump them with --layers")
        self.geometry = manifest.geometry
        self.layers = {HIDDEN: [layer for layer in wanted if layer in stored_hidden],
                       ATTENTION: [layer for layer in wanted if layer in stored_attention]}
        per_token = list(self.geometry.stored_hidden_layers)
        self._read = {HIDDEN: [layer for layer in self.layers[HIDDEN] if layer in per_token],
                      ATTENTION: self.layers[ATTENTION]}
        """The wanted layers read from blocks (layer 0 may come from the embedding tables)."""
        self._rows = {HIDDEN: _rows(per_token, self._read[HIDDEN]),
                      ATTENTION: _rows(stored_attention, self.layers[ATTENTION])}

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def hidden_layers(self) -> list[int]:
        return self.layers[HIDDEN]

    @property
    def attention_layers(self) -> list[int]:
        return self.layers[ATTENTION]

    @property
    def num_blocks(self) -> int:
        return len(self.block_starts) - 1

    @property
    def num_heads(self) -> int:
        return self.manifest.teacher.num_heads

    @cached_property
    def embeddings(self) -> EmbeddingTables | None:
        """The teacher's embedding tables, on the host, where they give a wanted layer 0; checked
        against the checksums written with them."""
        if not (self.geometry.embedding_tables and 0 in self.layers[HIDDEN]):
            return None
        reader = _UnitReader(self, EMBEDDINGS, f"{self.path}: embedding tables", check=True, names=set(TABLES))
        tables = {name: reader.read_required(name) for name in TABLES}
        attrs = self.store.attrs(EMBEDDINGS)
        return EmbeddingTables.from_arrays(tables, float(attrs["eps"]), int(attrs.get("first_position", 0)))

    @cached_property
    def _block_arrays(self) -> set[str]:
        """The arrays every block has (labels and logits are there or not in all of them)."""
        return set(self.store.array_names(block_unit(0)))

    def block_of(self, i: int) -> int:
        if not 0 <= i < len(self):
            raise IndexError(f"example {i} out of range for a cache of {len(self)}")
        return int(np.searchsorted(self.block_starts, i, side="right") - 1)

    def __getitem__(self, i: int) -> dict:
        k = self.block_of(i)
        j = i - int(self.block_starts[k])
        return decode_example(self.read_block(k, j, j + 1), 0, self.embeddings)

    def read_block(self, k: int, first: int = 0, stop: int | None = None) -> RaggedExamples:
        """Examples `[first, stop)` of block k (all of it by default), one read call per array.

        A whole-block read is checked against the checksums written with the block (per layer for
        hidden states and attention); any damage raises CacheError naming block, examples and array.
        """
        start, end = int(self.block_starts[k]), int(self.block_starts[k + 1])
        stop = end - start if stop is None else stop
        whole = BlockIndex.build(start, self.lengths[start:end], self.num_heads)
        t0, t1 = int(whole.tokens[first]), int(whole.tokens[stop])
        block = _UnitReader(self, block_unit(k), f"{self.path}: block {k} (examples {start}-{end - 1})",
                            check=(first, stop) == (0, end - start), names=self._block_arrays)
        targets = {}
        for name, spec in self.geometry.arrays().items():
            along, layers = whole.along(spec.axis), self._read[spec.layers]
            if layers:
                values = block.read_required(name, self._rows[spec.layers], slice(int(along[first]), int(along[stop])))
                targets[name] = dict(zip(layers, values, strict=True))
        return RaggedExamples(
            indices=np.arange(start + first, start + stop),
            lengths=self.lengths[start + first:start + stop],
            input_ids=block.read_required("input_ids", slice(t0, t1)),
            token_type_ids=block.read_required("token_type_ids", slice(t0, t1)),
            labels=block.read("label", slice(first, stop)),
            logits=block.read("logits", slice(first, stop)),
            targets=targets,
            geometry=self.geometry,
        )

    def iter_blocks(self, order: Iterable[int] | None = None) -> Iterator[RaggedExamples]:
        """Stream whole blocks, in `order` (block numbers) or in storage order."""
        for k in order if order is not None else range(self.num_blocks):
            yield self.read_block(k)

    def iter_examples(self) -> Iterator[dict]:
        """Every example as `self[i]` gives it, in storage order, read a block at a time."""
        for block in self.iter_blocks():
            yield from (decode_example(block, j, self.embeddings) for j in range(len(block)))

    def load_tokenizer(self):
        """The teacher's tokenizer, saved with the cache; refused if it is not the one recorded."""
        from transformers import AutoTokenizer

        from cache.data.tokenize import tokenizer_fingerprint

        root = self.store.root
        if not root.exists(TOKENIZER):
            raise CacheError(f"{self.path}: the cache has no {TOKENIZER}/ folder; dump the teacher again")
        with root.local_folder(TOKENIZER) as folder:
            tokenizer = AutoTokenizer.from_pretrained(folder)
        if tokenizer_fingerprint(tokenizer) != self.manifest.tokenizer_fingerprint:
            raise CacheError(f"{root.url_of(TOKENIZER)}: tokenizer does not match the manifest's fingerprint")
        return tokenizer

    def close(self) -> None:
        self.store.close()


class _UnitReader:
    """Reads one unit's arrays (a block's, the embedding tables'), turning any failure into a
    CacheError that says where."""

    def __init__(self, cache: "Cache", unit: str, where: str, check: bool, names: set[str]):
        self.cache, self.unit, self.where, self.check = cache, unit, where, check
        self.names = names
        """The arrays the unit has: `read` answers None for any other."""

    def read(self, name: str, *selection) -> np.ndarray | None:
        try:
            if name not in self.names:
                return None
            self._check_identity()
            values = self.cache.store.read(self.unit, name, selection)
            if self.check:
                self._check(name, values, selection[0] if selection else None)
            return values
        except CacheError:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged file fails in many ways; all mean the same
            hint = self.cache.store.root.read_failure_hint
            raise CacheError(f"{self.where}: array {name!r} cannot be read ({describe(e)}); "
                             f"{hint}run `cache verify {self.cache.path}`") from None

    def read_required(self, name: str, *selection) -> np.ndarray:
        values = self.read(name, *selection)
        if values is None:
            raise CacheError(f"{self.where}: array {name!r} is missing; run `cache verify {self.cache.path}`")
        return values

    @cached_property
    def attrs(self) -> dict:
        return self.cache.store.attrs(self.unit)

    @cached_property
    def checksums(self) -> dict:
        return self.attrs["crc32c"]

    def _check_identity(self) -> None:
        """A unit copied in from another cache is refused before any of its values are used."""
        foreign = unit_identity_problem(self.cache.manifest, self.attrs)
        if foreign:
            raise CacheError(f"{self.where}: {foreign}; run `cache verify {self.cache.path}` and dump the "
                             "teacher again")

    def _check(self, name: str, values: np.ndarray, rows) -> None:
        record = self.checksums[name]
        slabs = record["slabs"]
        if isinstance(rows, np.ndarray):  # a layer subset: one slab per stored layer
            slabs = [slabs[r] for r in rows]
        if slab_checksums(values, record["rows"]) != slabs:
            raise CacheError(f"{self.where}: array {name!r} does not match its checksum; "
                             f"run `cache verify {self.cache.path}`")


def _rows(stored: list[int], wanted: list[int]):
    """Selection of the wanted layers' rows: a slice when all are wanted (one contiguous read)."""
    if wanted == stored:
        return slice(None)
    return np.asarray([stored.index(layer) for layer in wanted], dtype=np.int64)


def open_cache(path: Target, layers: Iterable[int] | None = None, allow_incomplete: bool = False,
               storage_options: dict | None = None) -> Cache:
    """Open a cache (a folder or a URL) read-only; `layers` restricts what is read to those teacher
    layers; `storage_options` go to fsspec for a URL."""
    path = as_target(path)
    root = open_root(path, storage_options)
    manifest = read_manifest(root) if allow_incomplete else read_complete_manifest(root)
    store = open_store(root, manifest.storage, manifest.compression)
    if manifest.complete:
        blocks = sorted(set(range(manifest.num_blocks)) - store.committed_blocks())
        missing = [f"blocks {blocks[:5]}"] if blocks else []
        missing += [] if store.has_unit(INDEX) else ["the index"]
        if manifest.geometry.embedding_tables and not store.has_unit(EMBEDDINGS):
            missing.append("the embedding tables")
        if missing:
            raise CacheError(f"{path}: cache is damaged: {', '.join(missing)} missing; run `cache verify {path}` "
                             "and dump the teacher again")
    return Cache(path, manifest, store, layers)
