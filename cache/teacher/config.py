"""The configurations of the teacher-side commands, with the checks that need neither torch nor
the teacher: the CLI runs them before it imports the recipes, so a wrong path fails in a second."""

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import click

from cache.data.corpus import DOCUMENT_RULES, Corpus
from cache.data.readers import ColumnSpec, canonical_task, resolve_data_file
from cache.data.tasks import CORPUS_TASK, GLUE_TASKS
from cache.format.encoding import (
    AUTO,
    EMBEDDING_OUTPUTS,
    VECTOR_ENCODINGS,
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
from cache.runtime.options import (
    CACHE,
    INPUT,
    LOCAL,
    POSITIVE,
    FiniteFloat,
    as_member,
    choice_of,
    nested,
    parse_layers,
    parse_storage_options,
    setting,
)
from cache.runtime.paths import (
    check_device_name,
    check_model_path,
    check_not_input,
    check_number,
    check_output_dir,
    check_writable,
)
from cache.runtime.precision import PRECISIONS

AUGMENT_RECORD = "augment.json"
DEFAULT_COPIES = {"sst2": 20, "qnli": 20, "mnli": 10, "qqp": 10}
"""Augmented copies per example (N_a) in the reference script; 30 for every other task."""
FORMATS = tuple(COMPRESSIONS)
WRITERS = ("auto", "thread", "process")


@dataclass(frozen=True)
class DumpConfig:
    """Everything that decides a dump; built once from the CLI flags (each field's docstring is
    its --help)."""

    task: str = setting()
    """GLUE task (sst2, cola, mrpc, stsb, qqp, mnli, qnli, rte, wnli), csv / tsv / jsonl / text /
    parquet / arrow / datasets (a save_to_disk folder) for your own data, or corpus: raw text for
    general distillation, packed into --max-seq-len sequences."""
    data: Path = setting(type=INPUT)
    """A data file, or a folder holding <split>.tsv (GLUE layout); for a corpus, a text file or a
    folder of .txt files (see --documents)."""
    out: Target = setting(type=CACHE)
    """Cache to write: a folder, or a URL (s3://bucket/prefix, ...)."""
    split: str = setting("train")
    """Split to read when --data is a folder; for a corpus, train or holdout (see --holdout)."""
    holdout: float = setting(0.0, type=FiniteFloat(0, 1, max_open=True))
    """Corpus only: fraction of documents (chosen by a hash of their text) set aside as the holdout
    split; give the same value to the train and holdout dumps."""
    documents: str = setting(DOCUMENT_RULES[0], type=click.Choice(DOCUMENT_RULES))
    """Corpus only: what one document is, which a sequence never crosses. blank-lines: a run of
    non-blank lines; file: a whole file (sequences pack across paragraph breaks: books and WikiText
    separate paragraphs with blank lines). The holdout is chosen per document."""
    estimate: bool = setting(False, is_flag=True)
    """Only read and tokenise the data, and print what the dump would store: bytes per token and in
    all for these options and the other encodings (the teacher does not run; nothing is written)."""
    as_json: bool = setting(False, is_flag=True, flag="--json")
    """With --estimate: print it as JSON."""
    storage_options: dict | None = setting(None, callback=parse_storage_options, metavar="JSON")
    """For a URL cache: a JSON object of fsspec options beyond the environment's (AWS_ENDPOINT_URL,
    AWS_PROFILE, ...). Recorded with the command: keep secrets in the environment."""
    teacher: str | None = setting(None)
    """Teacher checkpoint folder: a BERT, RoBERTa, XLM-R, ELECTRA, DistilBERT, ModernBERT or
    DeBERTa-v2/v3 encoder, with or without a classification head. Default: the packaged
    MiniLM-L6-H384."""
    format: str = setting("zarr", type=click.Choice(FORMATS))
    """On-disk format."""
    layers: tuple[int, ...] | None = setting(None, typed_default="all", callback=parse_layers)
    """Teacher layers to store: 'all' or e.g. 0,2,4,6 (0 = embedding output)."""
    attention: AttentionKind = setting(AttentionKind.SCORES, type=choice_of(AttentionKind),
                                       callback=as_member(AttentionKind))
    """Pre-softmax scores QK^T/sqrt(d_k) (TinyBERT's reference) or post-softmax probabilities."""
    hidden_encoding: str = setting("float16", type=click.Choice(VECTOR_ENCODINGS))
    """Hidden states: a float type, or int8 / fp8 with a scale per row (half of float16, lossy)."""
    attention_encoding: str = setting("maps", metavar="ENCODING")
    """maps[:float16|bfloat16|float32] (every real pair); uint8 (probabilities to 1/255);
    qk[:TYPE] (queries and keys per token, scores computed when training: exact, smaller for
    L > 2d/h); qkv[:TYPE] (and values); topk:K (the K largest probabilities per row, lossy); none
    (hidden states only: what --objective embedding reads); auto (the smallest exact one for the
    data). TYPE: float16, bfloat16, float32, int8, fp8."""
    embedding_output: str = setting("stored", type=click.Choice(EMBEDDING_OUTPUTS))
    """Layer 0: stored per token, or tables: the teacher's embedding tables stored once and the
    layer recomputed when training (exact; smaller once the data has more tokens than the
    vocabulary); auto: the smaller."""
    compression: str = setting("none", type=click.Choice(sorted({c for cs in COMPRESSIONS.values() for c in cs})))
    """Zarr: zstd, lz4, gzip; HDF5: gzip, lzf (docs/benchmarks.md)."""
    max_seq_len: int = setting(128, type=click.IntRange(4, 512))
    """Truncate examples at this length."""
    batch_size: int = setting(64, type=click.IntRange(1))
    """Teacher batch size."""
    limit: int | None = setting(None, type=click.IntRange(1))
    """Only the first N examples (for a corpus: packed sequences)."""
    block_mb: float = setting(32.0, type=FiniteFloat(0.001))
    """Target block size: the unit of commit (resume) and of streaming reads."""
    max_unknown: float = setting(0.01, type=FiniteFloat(0, 1))
    """Refuse data of which a larger fraction of tokens (special tokens aside) is the tokenizer's
    unknown token (a tokenizer that does not fit the data: another casing, another language)."""
    columns: ColumnSpec = nested(ColumnSpec)
    device: str = setting("auto")
    """auto (CUDA when available), cpu, cuda, cuda:1, ..."""
    writer: str = setting("auto", type=click.Choice(WRITERS))
    """Where blocks are written while the teacher computes: auto = a process beside a GPU teacher,
    a thread beside a CPU one (cache.teacher.writer)."""

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
            if self.documents != DOCUMENT_RULES[0]:
                raise UserError(f"--documents: only a corpus is cut into documents; --task {task} reads rows")
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
        return Corpus(Path(self.data), self.split, self.holdout, self.limit, self.documents)


@dataclass(frozen=True)
class AugmentConfig:
    """Everything that decides an augmented file; built once from the CLI flags (each field's
    docstring is its --help)."""

    task: str = setting()
    """GLUE task, or tsv with --text-column / --pair-column."""
    data: Path = setting(type=INPUT)
    """Task folder or file to augment."""
    out: Path = setting(type=LOCAL)
    """Folder for the augmented file (same name and layout as the input)."""
    split: str = setting("train")
    """Split to read when --data is a folder."""
    mlm: str | None = setting(None)
    """A masked-LM checkpoint of any family the dump takes (BertForMaskedLM, RobertaForMaskedLM,
    ...): candidates for one-piece words, as in the paper. Default: the teacher's input-embedding
    neighbours."""
    glove: Path | None = setting(None, type=INPUT)
    """GloVe vectors (text format): candidates for words of several pieces. Default: keep them."""
    teacher: str | None = setting(None)
    """Without --mlm, whose input embeddings give the candidates (default: the packaged MiniLM)."""
    copies: int | None = setting(None, type=click.IntRange(1))
    """New sentences per row (N_a), duplicates dropped. Default: 20 SST-2 and QNLI, 10 MNLI and
    QQP, 30 otherwise (the reference script's)."""
    p_replace: float = setting(0.4, type=FiniteFloat(0, 1))
    """Chance that a word is replaced (p_t)."""
    neighbours: int = setting(15, type=click.IntRange(1))
    """Candidates per word (K)."""
    seed: int = setting(0, type=int)
    """Seeds the choice of words and of their replacements."""
    limit: int | None = setting(None, type=click.IntRange(1))
    """Augment the first N rows only (the rest are left out of the output)."""
    batch_size: int = setting(128, type=click.IntRange(1))
    """Masked sentences per masked-LM forward."""
    device: str = setting("auto")
    """For the masked LM: auto, cpu, cuda, ..."""
    columns: ColumnSpec = nested(ColumnSpec, only=("text", "pair"))

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
    """Everything that decides an initialised student; built once from the CLI flags (each field's
    docstring is its --help)."""

    teacher: str = setting()
    """Teacher checkpoint folder whose layers the student starts from."""
    out: Path = setting(type=LOCAL)
    """Folder for the student checkpoint."""
    layers: int | None = setting(None, type=click.IntRange(1))
    """Student layers M (uniform map g(m) = m*N/M); or give --layer-map."""
    layer_map: str = setting("uniform")
    """'uniform', or the teacher layer of each student layer, e.g. 3,6."""
    seed: int = setting(42, type=int)
    """Seeds the pooler and the classification head (the parts the teacher does not give)."""

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
    """Everything that decides a fine-tuned teacher; built once from the CLI flags (each field's
    docstring is its --help)."""

    task: str = setting()
    """GLUE task, or your own data (csv, tsv, jsonl, parquet, arrow, datasets) with columns text and label."""
    data: Path = setting(type=INPUT)
    """Folder with train.tsv (and dev.tsv)."""
    out: Path = setting(type=LOCAL)
    """Folder for the fine-tuned teacher."""
    base: str | None = setting(None)
    """Pretrained encoder folder of any family dump-teacher takes (BERT, RoBERTa, XLM-R, ELECTRA,
    DistilBERT, ModernBERT, DeBERTa-v2/v3), or a general student. Default: the packaged MiniLM-L6-H384."""
    epochs: int = setting(3, type=click.IntRange(1))
    """Passes over the training set."""
    lr: float = setting(2e-5, type=POSITIVE)
    """Peak learning rate (linear warm-up, then linear decay)."""
    batch_size: int = setting(32, type=click.IntRange(1))
    """Examples per step."""
    max_seq_len: int = setting(128, type=click.IntRange(4, 512))
    """Truncate examples at this length."""
    limit: int | None = setting(None, type=click.IntRange(1))
    """Train on the first N examples only."""
    seed: int = setting(42, type=int)
    """Seeds the head's initialisation, dropout and the order of examples."""
    device: str = setting("auto")
    """auto (CUDA when available), cpu, cuda, cuda:1, ..."""
    precision: str = setting("auto", type=click.Choice(PRECISIONS))
    """auto: bfloat16 on CUDA, float32 on a CPU; bfloat16 pays on CPUs with AVX512-BF16 or AMX too."""
    warmup: float = 0.1
    weight_decay: float = 0.01
    eval_split: str = "dev"

    def check(self) -> None:
        """Paths and numbers, before torch or the base model loads."""
        check_device_name(self.device)
        check_model_path(self.base, "--base")
        resolve_data_file(canonical_task(self.task), Path(self.data), "train")
        check_number(self.lr, "--lr", 0, low_open=True)
        if (Path(self.out) / "config.json").exists():
            raise UserError(f"--out: {self.out} already holds a model; choose another --out")
        check_output_dir(Path(self.out), "--out", ours=(METRICS_LOG, ".partial-"))  # what a stopped run leaves
