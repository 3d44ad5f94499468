"""The configurations of the teacher-side commands, with the checks that need neither torch nor
the teacher: the CLI runs them before it imports the recipes, so a wrong path fails in a second."""

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cache.data.corpus import Corpus
from cache.data.readers import ColumnSpec, canonical_task, resolve_data_file
from cache.data.tasks import CORPUS_TASK, GLUE_TASKS
from cache.format.encoding import (
    AUTO,
    EMBEDDING_OUTPUTS,
    AttentionEncoding,
    TopK,
    VectorEncoding,
    attention_encoding,
    vector_encoding,
)
from cache.format.location import Root, Target, is_url, open_root
from cache.format.lock import LOCK
from cache.format.manifest import MANIFEST
from cache.format.store.base import COMPRESSIONS, check_compression, check_location
from cache.runtime.errors import UserError
from cache.runtime.kinds import AttentionKind
from cache.runtime.log import METRICS_LOG
from cache.runtime.paths import (
    check_device_name,
    check_model_path,
    check_not_input,
    check_number,
    check_output_dir,
    check_writable,
)

AUGMENT_RECORD = "augment.json"
DEFAULT_COPIES = {"sst2": 20, "qnli": 20, "mnli": 10, "qqp": 10}
"""Augmented copies per example (N_a) in the reference script; 30 for every other task."""
FORMATS = tuple(COMPRESSIONS)
WRITERS = ("auto", "thread", "process")


@dataclass(frozen=True)
class DumpConfig:
    """Everything that decides a dump; built once from the CLI flags."""

    task: str
    data: Path
    out: Target
    """A folder, or an fsspec URL (s3://bucket/prefix)."""
    split: str = "train"
    teacher: str | None = None
    """Teacher folder or hub id; None means the packaged MiniLM."""
    format: str = "zarr"
    layers: tuple[int, ...] | None = None
    """Teacher layers to store (0 = embeddings); None means all."""
    attention: AttentionKind = AttentionKind.SCORES
    hidden_encoding: str = "float16"
    """Of hidden states: a float type, or int8 / fp8 with a scale per row (`cache.format.encoding`)."""
    attention_encoding: str = "maps"
    """maps[:TYPE], uint8, qk[:ENC], qkv[:ENC], topk:K or auto (`cache.format.encoding`)."""
    embedding_output: str = "stored"
    """stored (per token, like every layer), tables (the teacher's embedding tables, once) or auto
    (whichever is smaller for the data): `cache.format.embeddings`."""
    compression: str = "none"
    max_seq_len: int = 128
    batch_size: int = 64
    limit: int | None = None
    """The first N examples (for a corpus: packed sequences) only."""
    holdout: float = 0.0
    """For a corpus: the fraction of documents set aside as its `holdout` split (cache.data.corpus)."""
    block_mb: float = 32.0
    """Target size of a block, the unit of committing and streaming."""
    max_unknown: float = 0.01
    """The largest fraction of the data's tokens (special tokens aside) that may be the unknown
    token: above it the tokenizer does not fit the data, and the dump is refused."""
    columns: ColumnSpec = field(default_factory=ColumnSpec)
    device: str = "auto"
    writer: str = "auto"
    """Where blocks are written while the teacher computes: thread, process, or auto (see cache.teacher.writer)."""
    storage_options: dict | None = None
    """Passed to fsspec for a URL --out (beyond what the environment configures)."""

    def check(self) -> None:
        """Everything decidable before the teacher loads or the data is read, so that a wrong flag
        or path fails at once (the teacher is checked next, before any cache is touched)."""
        check_device_name(self.device)
        check_model_path(self.teacher, "--teacher")
        task = canonical_task(self.task)
        if task == CORPUS_TASK:
            self.corpus().check()
        else:
            resolve_data_file(task, Path(self.data), self.split)
            if self.holdout:
                raise UserError(f"--holdout: only a corpus is split by the dump; --task {task} has its own split files")
        check_compression(self.format, self.compression)
        check_number(self.block_mb, "--block-mb", 0, low_open=True)
        check_number(self.max_unknown, "--max-unknown", 0, 1)
        labels = self.columns.labels or ()
        if len(set(labels)) != len(labels):
            raise UserError(f"--labels: {','.join(labels)} names a class twice")
        if labels and self.columns.regression:
            raise UserError("--labels names classes; --regression reads numbers: give one or the other")
        if self.embedding_output not in EMBEDDING_OUTPUTS:
            raise UserError(f"--embedding-output {self.embedding_output}: choose {', '.join(EMBEDDING_OUTPUTS)}")
        _, encoding = self.requested_hidden_encoding, self.requested_attention_encoding  # a bad name fails here
        if encoding is not None:
            if encoding.probabilities_only and self.attention != AttentionKind.PROBS:
                raise UserError(f"--attention-encoding {self.attention_encoding} stores probabilities; "
                                "use it with --attention probs")
            if isinstance(encoding, TopK) and encoding.k > self.max_seq_len:
                raise UserError(f"--attention-encoding {self.attention_encoding}: K is more than --max-seq-len "
                                f"{self.max_seq_len}, so every key is kept: use maps")
        self._check_out()

    @cached_property
    def requested_hidden_encoding(self) -> VectorEncoding:
        """--hidden-encoding, parsed once."""
        return vector_encoding(self.hidden_encoding)

    @cached_property
    def requested_attention_encoding(self) -> AttentionEncoding | None:
        """--attention-encoding, parsed once; None for auto (chosen from the data's lengths)."""
        return None if self.attention_encoding == AUTO else attention_encoding(self.attention_encoding)

    def _check_out(self) -> None:
        """The same rule in a folder and under a URL: a new or empty place, or a cache to continue
        (its identity is compared once the teacher is loaded), never inside another cache."""
        root = open_root(self.out, self.storage_options)
        if is_url(self.out):
            check_location(self.format, str(self.out))
            root.check_reachable("--out")
            if not root.exists(MANIFEST):
                foreign = [name for name in root.listdir() if not name.startswith((LOCK, f".{MANIFEST}."))]
                if foreign:
                    raise UserError(f"--out: {self.out} already holds other objects ({', '.join(foreign[:3])}"
                                    f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty prefix")
        elif (Path(self.out) / MANIFEST).exists():
            check_writable(Path(self.out), "--out")
        else:  # a new cache; only a dump killed before its first manifest leaves anything behind
            check_output_dir(Path(self.out), "--out", ours=(LOCK, f".{MANIFEST}."))
        enclosing = enclosing_cache(root)
        if enclosing is not None:
            raise UserError(f"--out: {self.out} lies inside the cache {enclosing}; choose a place outside it")

    def corpus(self) -> Corpus:
        return Corpus(Path(self.data), self.split, self.holdout, self.limit)


@dataclass(frozen=True)
class AugmentConfig:
    """Everything that decides an augmented file; built once from the CLI flags."""

    task: str
    data: Path
    out: Path
    split: str = "train"
    teacher: str | None = None
    """Whose input embeddings give one-piece words' candidates without --mlm; None means the
    packaged MiniLM."""
    mlm: str | None = None
    """A BERT masked-LM checkpoint: the paper's candidates for one-piece words."""
    glove: Path | None = None
    """GloVe vectors (text format): the paper's candidates for words of several pieces."""
    copies: int | None = None
    """N_a; None means the reference script's for the task (DEFAULT_COPIES, else 30)."""
    p_replace: float = 0.4
    neighbours: int = 15
    """K, candidates per word."""
    seed: int = 0
    limit: int | None = None
    """Augment the first N rows only (the rest are left out of the output)."""
    batch_size: int = 128
    """Masked copies per masked-LM forward."""
    device: str = "auto"
    columns: ColumnSpec = field(default_factory=ColumnSpec)

    def resolved_copies(self) -> int:
        return self.copies if self.copies is not None else DEFAULT_COPIES.get(canonical_task(self.task), 30)

    def source(self) -> Path:
        """The file to augment; refused for formats `augment` does not write."""
        task = canonical_task(self.task)
        source = resolve_data_file(task, Path(self.data), self.split)
        if task not in GLUE_TASKS and task != "tsv":
            raise UserError(f"--task {task}: augment reads GLUE tasks and tsv files, not {source.name}")
        return source

    def output(self) -> Path:
        return Path(self.out) / self.source().name

    def check(self) -> None:
        """Paths and numbers, before the teacher loads: the output never replaces the input, nor a
        file that an earlier `augment` did not write."""
        check_device_name(self.device)
        check_model_path(self.teacher, "--teacher")
        check_model_path(self.mlm, "--mlm")
        source, output = self.source(), self.output()
        check_number(self.p_replace, "--p-replace", 0, 1)
        if self.glove is not None and not Path(self.glove).is_file():
            raise UserError(f"--glove: {self.glove} is not a file")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise UserError(f"--out: {self.out} is a file, not a folder")
        check_writable(Path(self.out), "--out")
        check_not_input(output, [source], "--out")
        if output.exists() and not (output.parent / AUGMENT_RECORD).exists():
            raise UserError(f"--out: {output} exists and was not written by augment (no {AUGMENT_RECORD} beside it); "
                            "choose another folder")


@dataclass(frozen=True)
class InitConfig:
    """Everything that decides an initialised student; built once from the CLI flags."""

    teacher: str
    out: Path
    layers: int | None = None
    """M; None takes it from an explicit --layer-map."""
    layer_map: str = "uniform"
    seed: int = 42
    """Seeds the parts the teacher does not give: the pooler and the classification head."""

    def check(self) -> None:
        check_model_path(self.teacher, "--teacher")
        check_output_dir(Path(self.out), "--out")
        if self.layers is not None and self.layers < 1:
            raise UserError(f"--layers: {self.layers} is not a positive number of layers")


def enclosing_cache(root: Root) -> str | None:
    """The cache that `root` lies inside (a folder or prefix above it holding a manifest), if any."""
    parts = root.path.split("/")
    for depth in range(1, len(parts)):
        above = "/".join(parts[:depth])
        if root.fs.exists(f"{above}/{MANIFEST}"):
            return root.url_of_path(above)
    return None


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that decides a fine-tuned teacher; built once from the CLI flags."""

    task: str
    data: Path
    out: Path
    base: str | None = None
    """Pretrained BERT folder; None means the packaged MiniLM."""
    epochs: int = 3
    lr: float = 2e-5
    batch_size: int = 32
    max_seq_len: int = 128
    warmup: float = 0.1
    weight_decay: float = 0.01
    seed: int = 42
    limit: int | None = None
    """Train on the first N training examples only (quick runs, the demo)."""
    eval_split: str = "dev"
    device: str = "auto"
    precision: str = "auto"
    """`float32`, `bfloat16` (autocast), or `auto`: bfloat16 on CUDA, float32 on a CPU."""

    def check(self) -> None:
        """Paths and numbers, before torch or the base model loads."""
        check_device_name(self.device)
        check_model_path(self.base, "--base")
        resolve_data_file(canonical_task(self.task), Path(self.data), "train")
        check_number(self.lr, "--lr", 0, low_open=True)
        if (Path(self.out) / "config.json").exists():
            raise UserError(f"--out: {self.out} already holds a model; choose another --out")
        check_output_dir(Path(self.out), "--out", ours=(METRICS_LOG, ".partial-"))  # what a stopped run leaves
