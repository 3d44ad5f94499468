"""The dump recipe: run the teacher once over a data set and write every target to a cache.

Read top to bottom: `dump_teacher` loads data and teacher, plans blocks, checks any existing cache
against this run, then computes blocks in length-sorted batches while a background writer (a
thread, or a process beside a GPU: `writer.py`) writes the previous block. A block is committed
atomically; the manifest is marked complete only after every block is in, so a killed dump
resumes where it stopped and ends identical to an uninterrupted one (batches never span blocks,
so each block is computed the same way).

Under torchrun every rank computes the same block plan from the same lengths and writes only the
blocks k with k mod world = rank; rank 0 holds the lock for the whole job, lays out the cache,
and marks it complete once every rank has committed its blocks.
"""

import datetime
import errno
import json
import shlex
import sys
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from tqdm import tqdm

from cache import __version__
from cache.data.checkpoints import default_teacher_path, load_config, load_tokenizer
from cache.data.corpus import Corpus
from cache.data.families import family_named, family_of
from cache.data.readers import Examples, canonical_task, load_examples
from cache.data.sequences import sequence_hashes
from cache.data.tasks import CORPUS_TASK, GENERIC_TASKS
from cache.data.tokenize import Tokenized, check_unknown_tokens, tokenize, tokenizer_fingerprint
from cache.format.dtypes import bits_dtype, to_storage, torch_dtype
from cache.format.embeddings import EmbeddingTables
from cache.format.encoding import (
    AUTO,
    STORED,
    TABLES,
    Factored,
    NoAttention,
    choose_attention,
    choose_embedding_output,
)
from cache.format.entries import axis_sizes
from cache.format.layout import BlockIndex, Geometry, chunk_length, plan_blocks
from cache.format.location import Root, Target, open_root
from cache.format.lock import cache_lock
from cache.format.manifest import (
    MANIFEST,
    TOKENIZER,
    UNIT_IDENTITY,
    DataRecord,
    Manifest,
    Stats,
    TeacherRecord,
    identity_mismatches,
    identity_values,
    index_attrs,
    read_manifest,
    value_mismatches,
    write_manifest,
)
from cache.format.store import EMBEDDINGS, INDEX, SEQUENCE_HASHES, Store, block_unit, open_store
from cache.format.store.base import ChunkedArray
from cache.format.transfer import PaddedSlots, to_device
from cache.runtime.arrays import pad_ragged, ragged_positions
from cache.runtime.attention import use_attention
from cache.runtime.device import resolve_device
from cache.runtime.distributed import Ranks, current_ranks, on_main, process_group, sum_over_ranks
from cache.runtime.errors import CacheError, UserError, describe
from cache.runtime.kinds import AttentionKind
from cache.runtime.records import code_revision, file_sha256
from cache.teacher.config import DumpConfig
from cache.teacher.encode import encode_batch
from cache.teacher.runner import check_teacher, load_teacher, teacher_forward
from cache.teacher.writer import Writer, open_writer


@dataclass(frozen=True)
class DumpReport:
    path: Target
    examples: int
    written_examples: int
    """Examples computed by this run (0 when the cache was already complete)."""
    truncated: int
    seconds: float
    stale_lock: dict | None = None
    """The holder recorded in a lock left by a killed writer, which this run took over."""


def dump_teacher(config: DumpConfig, command: str | None = None, progress: bool = True) -> DumpReport:
    """Run the dump described by `config`; `command` is recorded in the manifest."""
    started = datetime.datetime.now(datetime.timezone.utc)
    command = command or shlex.join(sys.argv)
    config.check()
    out = open_root(config.out, config.storage_options)
    resolve_device(config.device)
    source = load_source(config)
    if out.exists(MANIFEST):  # what can be compared before the teacher loads (all of it is, once it has)
        _refuse_mismatches(config.out, identity_mismatches_before_loading(read_manifest(out), config, source))
    ranks = current_ranks()
    with process_group(ranks), ExitStack() as owned:  # one job owns the cache: its rank 0 holds the lock
        # the lock first: a cache another job is writing is refused in a second, not once the teacher loads
        stale_holder = on_main(ranks, lambda: _own(owned, out, command))
        check_teacher(config.teacher or default_teacher_path(), source if isinstance(source, Examples) else None,
                      config.max_seq_len)
        try:
            total, written, truncated = _dump_into(out, config, command, source, progress and ranks.main, ranks)
        except UserError:
            raise
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise _store_failure(out, e) from None
            raise CacheError(f"{config.out}: no space left on device ({e.filename or 'while writing'}); the blocks "
                             "already committed are kept: free space and run the same command again") from None
        except Exception as e:
            raise _store_failure(out, e) from None
    return DumpReport(config.out, total, written, truncated, _since(started), stale_holder)


def _store_failure(out: Root, error: Exception) -> Exception:
    """An object store that failed mid-dump (down, unreachable, refusing) is the user's to fix, in
    one line; anything else is a bug and keeps its traceback."""
    return out.failure(error, f"{out.url}: the object store failed ({type(error).__name__}: {describe(error)}); "
                       "the blocks already committed are kept: run the same command again once it answers")


def _own(stack: ExitStack, out: Root, command: str) -> dict | None:
    """Take the cache's lock for as long as `stack` lasts; the holder of a stale lock taken over."""
    lock = cache_lock(out, command)
    stack.enter_context(lock)
    return lock.stale_holder


def load_source(config: DumpConfig) -> Examples | Corpus:
    """The examples of a task's split, or the part of a corpus to pack (read when tokenised)."""
    if canonical_task(config.task) == CORPUS_TASK:
        return config.corpus()
    return load_examples(config.task, config.data, config.split, columns=config.columns, limit=config.limit)


@dataclass
class PreparedDump:
    """Everything a dump decides before computing any target: also what the online baseline and
    the benchmarks use, so that they run exactly the dump's batches."""

    examples: Examples | Corpus
    model: torch.nn.Module
    tokenizer: object
    tokens: Tokenized
    geometry: Geometry
    block_starts: np.ndarray  # (n_blocks + 1,)
    manifest: Manifest
    device: torch.device
    embeddings: EmbeddingTables | None
    """The teacher's embedding tables, on the host: written where the geometry recomputes layer 0
    (None where they do not give it)."""


def prepare_dump(config: DumpConfig, examples: Examples | Corpus, command: str) -> PreparedDump:
    """Load the teacher, tokenise, plan the blocks and draft the manifest. A corpus's teacher runs
    without any head: general distillation uses the intermediate targets only."""
    device = resolve_device(config.device)
    path = config.teacher or default_teacher_path()
    model_config = load_config(path, "--teacher")
    tokenizer = load_tokenizer(path, "--teacher", model_config)  # data is refused before weights load
    family = family_of(model_config, f"--teacher: {path}")
    if family.own_attention and isinstance(config.requested_attention_encoding, Factored):
        raise UserError(f"--attention-encoding {config.requested_attention_encoding}: {path} is a {family.name} "
                        "model, whose scores add relative-position terms to QK^T; only maps (or topk:K) hold them")
    tokens = tokenize_source(examples, tokenizer, config.max_seq_len, family.segments(model_config))
    check_unknown_tokens(tokens, tokenizer, config.max_unknown, str(examples.path))
    model, teacher = load_teacher(path, config.attention, device, head=isinstance(examples, Examples))
    tables = EmbeddingTables.of(model, family.position_offset(model_config))
    tables = tables.to(torch.device("cpu")) if tables is not None else None  # written from the host
    geometry = stored_geometry(config, teacher, tokens.lengths, tables.nbytes if tables is not None else None)
    use_attention(model, geometry.attention.capture(geometry.attention_kind) if geometry.attention_layers else None)
    block_starts = plan_blocks(tokens.lengths, geometry, int(config.block_mb * 2**20))
    stored_tables = tables.nbytes if tables is not None and geometry.embedding_tables else 0
    manifest = _new_manifest(config, command, examples, tokens, teacher, tokenizer_fingerprint(tokenizer),
                             geometry, len(block_starts) - 1, stored_tables)
    return PreparedDump(examples, model, tokenizer, tokens, geometry, block_starts, manifest, device, tables)


def tokenize_source(source: Examples | Corpus, tokenizer, max_seq_len: int, segments: bool = True) -> Tokenized:
    """The source's tokens as the teacher sees them: token types only where its family tells a
    pair's texts apart by them (`Family.segments`), else all 0."""
    if isinstance(source, Examples):
        tokens = tokenize(source, tokenizer, max_seq_len)
        return tokens if segments else replace(tokens, token_type_ids=np.zeros_like(tokens.token_type_ids))
    input_ids, lengths = source.pack(tokenizer, max_seq_len)
    return Tokenized(input_ids, np.zeros(len(input_ids), dtype=np.int8), lengths, truncated=0)


def _dump_into(out: Root, config: DumpConfig, command: str, examples: Examples | Corpus,
               progress: bool, ranks: Ranks) -> tuple[int, int, int]:
    """Everything after the lock is held; returns the examples in the cache, written by this run
    (all ranks), and truncated."""
    # Opened first: a writer process starts up while the teacher loads and the data is tokenised.
    # A cache made with another format or compression is refused below, before anything is written.
    writer = open_writer(config.writer, open_store(out, config.format, config.compression),
                         resolve_device(config.device))
    try:
        prepared = prepare_dump(config, examples, command)
        tokens, block_starts = prepared.tokens, prepared.block_starts
        manifest = on_main(ranks, lambda: _prepare_cache(out, prepared, config))
        if manifest.complete:
            return len(tokens.lengths), 0, tokens.truncated
        store = open_store(out, manifest.storage, manifest.compression)
        mine = set(range(ranks.rank, len(block_starts) - 1, ranks.world))
        pending = sorted(mine - store.committed_blocks())
        share = sum(int(block_starts[k + 1] - block_starts[k]) for k in mine)
        written = _dump_blocks(prepared.model, writer, tokens, examples.labels, prepared.geometry, block_starts,
                               pending, config, prepared.device, progress, share, {UNIT_IDENTITY: manifest.identity})
    finally:
        writer.close()
    written = int(sum_over_ranks(ranks, torch.tensor(written)))  # also waits for every rank's last block
    on_main(ranks, lambda: _mark_complete(out, store, manifest, block_starts))
    return len(tokens.lengths), written, tokens.truncated


def _prepare_cache(out: Root, prepared: PreparedDump, config: DumpConfig) -> Manifest:
    """Create the cache or check the existing one, with its tokenizer and index (rank 0's part)."""
    manifest, store = _open_for_writing(out, prepared.manifest, config)
    if not _has_tokenizer(out):
        _save_tokenizer(prepared.tokenizer, out)
    if not manifest.complete and prepared.embeddings is not None and prepared.geometry.embedding_tables \
            and not store.has_unit(EMBEDDINGS):
        prepared.embeddings.write(store, {UNIT_IDENTITY: manifest.identity})
    if not manifest.complete and not store.has_unit(INDEX):
        store.write_unit(INDEX, _index_arrays(prepared.tokens, prepared.block_starts), index_attrs(manifest))
    return manifest


def stored_geometry(config: DumpConfig, teacher: TeacherRecord, lengths: np.ndarray,
                    tables_bytes: int | None) -> Geometry:
    """Shapes and encodings of what this dump stores (`auto` chosen for these lengths and the
    teacher's embedding tables' size); rejects layers the teacher does not have."""
    all_layers = tuple(range(teacher.num_layers + 1))
    layers = tuple(sorted(set(config.layers))) if config.layers is not None else all_layers
    bad = [layer for layer in layers if layer not in all_layers]
    if bad:
        raise UserError(f"--layers: teacher has layers 0..{teacher.num_layers} (0 = embeddings), not {bad}")
    attention = choose_attention(config.requested_attention_encoding, lengths, teacher.hidden_size,
                                 teacher.num_heads, config.max_seq_len,
                                 factored=not family_named(teacher.family).own_attention)
    hidden = config.requested_hidden_encoding
    embedding = choose_embedding_output(config.embedding_output, lengths, hidden, teacher.hidden_size, tables_bytes)
    attention_layers = () if isinstance(attention, NoAttention) else tuple(layer for layer in layers if layer > 0)
    return Geometry(teacher.hidden_size, teacher.num_heads, layers, attention_layers,
                    hidden, attention, config.max_seq_len, embedding_tables=embedding == TABLES and 0 in layers,
                    attention_kind=AttentionKind(config.attention), windows=teacher.windows)


def _new_manifest(config: DumpConfig, command: str, examples: Examples | Corpus, tokens: Tokenized,
                  teacher: TeacherRecord, tokenizer_sha: str, geometry: Geometry, num_blocks: int,
                  tables_bytes: int) -> Manifest:
    """`tables_bytes`: of the teacher's embedding tables, counted where the cache holds them."""
    data = DataRecord(
        task=examples.task, split=examples.split, file=str(examples.path),
        sha256=file_sha256(examples.path, None if isinstance(examples, Examples) else examples.files),
        examples=len(tokens.lengths), truncated=tokens.truncated, columns=_read_options(config, examples),
        label_names=examples.label_names or None, label_kind=_label_kind(examples))
    return Manifest(
        project_version=__version__, created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=command, teacher=teacher, tokenizer_fingerprint=tokenizer_sha, data=data,
        max_seq_len=config.max_seq_len, layers=geometry.hidden_layers, attention_layers=geometry.attention_layers,
        attention=geometry.attention_kind, hidden_encoding=geometry.hidden, attention_encoding=geometry.attention,
        embedding_output=TABLES if geometry.embedding_tables else STORED,
        storage=config.format, compression=config.compression, block_bytes=int(config.block_mb * 2**20),
        num_blocks=num_blocks, batch_size=config.batch_size,
        code_revision=code_revision(), stats=Stats(tokens=int(tokens.lengths.sum()),
                    ideal_bytes=int(geometry.example_bytes(tokens.lengths).sum()) + tables_bytes))


def _read_options(config: DumpConfig, examples: Examples | Corpus) -> dict | None:
    if isinstance(examples, Corpus):
        return {"holdout": examples.holdout, "limit": examples.limit, "documents": examples.documents}
    return asdict(config.columns) if examples.task in GENERIC_TASKS else None


def _label_kind(examples: Examples | Corpus) -> str:
    if examples.labels is None:
        return "none"
    return "regression" if examples.label_names is None else "classification"


def _open_for_writing(out: Root, manifest: Manifest, config: DumpConfig) -> tuple[Manifest, Store]:
    """Create a new cache, or check an existing one against this run and continue it."""
    if out.exists(MANIFEST):
        existing = read_manifest(out)
        _refuse_mismatches(config.out, identity_mismatches(existing, manifest))
        store = open_store(out, existing.storage, existing.compression)
        if not existing.complete and not existing.units_bound:
            raise CacheError(f"{config.out}: this unfinished cache was started by an older version (format "
                             f"{existing.format_version}); dump the teacher again into a new --out")
        if not existing.complete:
            existing = existing.resumed_by(manifest.command)  # recorded when the dump completes
            store.clean_staging()
            store.create()  # idempotent: a kill may have come between the manifest and the layout
        return existing, store
    out.makedirs()
    write_manifest(out, manifest)  # first: from here on the folder is recognisably this cache
    store = open_store(out, config.format, config.compression)
    store.create()
    return manifest, store


def _refuse_mismatches(out: Target, mismatches: list[str]) -> None:
    if mismatches:
        raise CacheError(f"{out}: existing cache was made differently ({'; '.join(mismatches)}); "
                         "refusing to mix targets: choose another --out")


def identity_mismatches_before_loading(existing: Manifest, config: DumpConfig, source: Examples | Corpus) -> list[str]:
    """The identity mismatches that the flags and the data decide alone (the labels of `IDENTITY`),
    so that a changed option is refused before the teacher loads."""
    requested: dict[str, object] = {
        "task": source.task, "split": source.split,
        "data options (columns, --holdout, --documents)": _read_options(config, source),
        "--max-seq-len": config.max_seq_len, "--attention": config.attention,
        "--hidden-encoding": str(config.requested_hidden_encoding), "--format": config.format,
        "--compression": config.compression, "block plan (--block-mb)": int(config.block_mb * 2**20)}
    if config.layers is not None:
        requested["--layers"] = sorted(set(config.layers))
    if config.requested_attention_encoding is not None:
        requested["--attention-encoding"] = str(config.requested_attention_encoding)
    if config.embedding_output != AUTO and config.layers is not None:
        requested["--embedding-output"] = config.embedding_output if 0 in config.layers else STORED
    return value_mismatches(identity_values(existing.to_json()), json.loads(json.dumps(requested)))


TOKENIZER_LAST = "tokenizer_config.json"
"""Uploaded last into an object store: once it is there, the whole tokenizer is."""


def _has_tokenizer(out: Root) -> bool:
    return out.has_folder(TOKENIZER, last=TOKENIZER_LAST)


def _save_tokenizer(tokenizer, out: Root) -> None:
    """Keep the teacher's tokenizer in the cache: students need it, and must not need the teacher.
    Saved whole or not at all (`Root.save_folder`)."""
    out.save_folder(TOKENIZER, tokenizer.save_pretrained, last=TOKENIZER_LAST)


def _index_arrays(tokens: Tokenized, block_starts: np.ndarray) -> dict:
    lengths = tokens.lengths
    hashes = sequence_hashes(tokens.input_ids, tokens.token_type_ids, lengths)
    return {"lengths": (lengths, (chunk_length(len(lengths), 4),)),
            "block_starts": (block_starts, (len(block_starts),)),
            SEQUENCE_HASHES: (hashes, (chunk_length(len(hashes), 8),))}


def _dump_blocks(model, writer: Writer, tokens: Tokenized, labels: np.ndarray | None, geometry: Geometry,
                 block_starts: np.ndarray, pending: list[int], config: DumpConfig, device: torch.device,
                 progress: bool, share: int, identity: dict) -> int:
    """Compute and write the pending blocks; returns the number of examples written. `share`: the
    examples of all this rank's blocks, done or pending (the progress bar's total); `identity`: the
    attribute binding each block to its cache."""
    left = sum(int(block_starts[k + 1] - block_starts[k]) for k in pending)
    bar = tqdm(total=share, initial=share - left, unit="ex", desc="dump-teacher", disable=not progress,
               dynamic_ncols=True)
    written = 0
    try:
        for k in pending:
            start, stop = int(block_starts[k]), int(block_starts[k + 1])
            block = BlockIndex.build(start, tokens.lengths[start:stop], geometry.num_heads)
            arrays = _compute_block(model, tokens, block, geometry, config.batch_size, device)
            if labels is not None:
                arrays["label"] = (labels[start:stop], (stop - start,))
            writer.submit(block_unit(k), arrays, {"start": start, "stop": stop} | identity)
            written += stop - start
            bar.update(stop - start)
            bar.set_postfix_str(f"written {writer.bytes_written / 1e6:,.1f} MB", refresh=False)
        writer.wait()
    finally:
        bar.close()
    return written


def _compute_block(model, tokens: Tokenized, block: BlockIndex, geometry: Geometry, batch_size: int,
                   device: torch.device) -> dict:
    """Teacher targets of one block, in dataset order, as chunked arrays ready to write.

    The block's buffers live on the teacher's device: each batch's real entries are encoded there
    (`cache.teacher.encode`) and copied to their place (`index_copy_`: no padded copy, no per-example
    loop), and the block crosses to the host once. Every index comes from the host's lengths, so
    nothing waits for a GPU mid-block: it runs batches back to back while Python queues the next.
    """
    specs = geometry.arrays()
    buffers = {name: torch.empty((geometry.layer_count(spec), int(block.along(spec.axis)[-1]), *spec.trailing),
                                 dtype=bits_dtype(spec.dtype), device=device) for name, spec in specs.items()}
    logits = None
    for batch in block_batches(tokens, block, batch_size, device, {spec.axis for spec in specs.values()}):
        out = teacher_forward(model, batch.input_ids, batch.token_type_ids, batch.mask.long(),
                              attentions=bool(geometry.attention_layers))
        slots = PaddedSlots(batch.lengths, block.lengths[batch.host_positions], geometry.num_heads)
        for name, i, values in encode_batch(out, slots, geometry):
            buffer = buffers[name][i]
            buffer.index_copy_(0, batch.places[specs[name].axis], values.view(buffer.dtype))
        if out.logits is not None:
            logits = torch.empty((len(block), out.logits.shape[1]), device=device) if logits is None else logits
            logits.index_copy_(0, batch.positions, out.logits.float())  # (B, C)
    _check_finite(buffers | ({"logits": logits} if logits is not None else {}), block, geometry)
    t0, t1 = tokens.offsets[block.start], tokens.offsets[block.start + len(block)]
    n_tokens = int(block.tokens[-1])
    arrays: dict[str, ChunkedArray] = {
        "input_ids": (tokens.input_ids[t0:t1], (max(n_tokens, 1),)),
        "token_type_ids": (tokens.token_type_ids[t0:t1], (max(n_tokens, 1),)),
    }
    for name, spec in specs.items():
        entries = buffers[name].shape[1]
        arrays[name] = (to_storage(buffers[name].view(torch_dtype(spec.dtype)), spec.dtype),
                        (1, chunk_length(entries, spec.entry_bytes), *spec.trailing))
    if logits is not None:
        arrays["logits"] = (logits.cpu().numpy(), tuple(logits.shape))
    return arrays


def _check_finite(buffers: dict[str, torch.Tensor], block: BlockIndex, geometry: Geometry) -> None:
    """A target that is infinite or NaN as stored (float16 holds at most 65504) is never written:
    the block is refused, and the cache stays incomplete."""
    bad = [name for name, values in buffers.items()
           if values.is_floating_point() and not bool(torch.isfinite(values).all())]
    if bad:
        raise CacheError(f"examples {block.start}-{block.start + len(block) - 1}: the teacher's {', '.join(bad)} are "
                         f"not finite as stored (--hidden-encoding {geometry.hidden.name}, --attention-encoding "
                         f"{geometry.attention}: beyond the type's range, or infinite in the teacher itself); dump "
                         "into a new --out with float32, or int8 (scaled per row)")


@dataclass(frozen=True)
class TeacherBatch:
    """One batch of a block on the teacher's device, with where its outputs go in the block."""

    host_positions: np.ndarray  # (B,) examples' positions in the block, on the host
    positions: torch.Tensor  # (B,) the same, on the device
    input_ids: torch.Tensor  # (B, L), padded to the batch's longest
    token_type_ids: torch.Tensor  # (B, L)
    lengths: torch.Tensor  # (B,)
    places: dict[str, torch.Tensor]
    """Axis -> the places of the batch's real entries along it in the block's buffers."""

    @property
    def mask(self) -> torch.Tensor:
        """(B, L) True on real tokens."""
        return torch.arange(self.input_ids.shape[1], device=self.lengths.device) < self.lengths[:, None]


def block_batches(tokens: Tokenized, block: BlockIndex, batch_size: int, device: torch.device,
                  axes: Iterable[str] = ()):
    """Length-sorted batches of one block (little padding), each moved to `device` in one copy,
    with the places of their entries along `axes`."""
    token_offsets = tokens.offsets[block.start:block.start + len(block)]
    order = np.argsort(block.lengths, kind="stable")
    for batch in np.split(order, range(batch_size, len(order), batch_size)):
        lengths = block.lengths[batch]
        host = {
            "positions": batch.astype(np.int64), "lengths": lengths,
            "input_ids": pad_ragged(tokens.input_ids, token_offsets[batch], lengths).astype(np.int64),
            "token_type_ids": pad_ragged(tokens.token_type_ids, token_offsets[batch], lengths).astype(np.int64),
        } | {axis: ragged_positions(block.along(axis)[batch], axis_sizes(axis, lengths, block.heads))
             for axis in sorted(axes)}
        on_device = to_device(host, device)
        yield TeacherBatch(batch, on_device.pop("positions"), on_device.pop("input_ids"),
                           on_device.pop("token_type_ids"), on_device.pop("lengths"), on_device)


def _mark_complete(out: Root, store: Store, manifest: Manifest, block_starts: np.ndarray) -> None:
    missing = sorted(set(range(len(block_starts) - 1)) - store.committed_blocks())
    if missing:  # another writer still owns these blocks (or they were lost): do not claim completion
        raise CacheError(f"{out.url}: blocks {missing[:5]} are not written yet; run the same command again")
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    write_manifest(out, manifest.completed_at(when, store.nbytes()))


def _since(started: datetime.datetime) -> float:
    return (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
