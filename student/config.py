"""The configurations of the student-side commands, with the checks that need neither torch nor
a model: the CLI runs them before it imports the recipes, so a wrong flag fails in a second."""

from dataclasses import dataclass
from pathlib import Path

from cache.data import canonical_task, resolve_data_file
from cache.errors import UserError
from cache.location import Root, Target, as_target, open_root
from cache.manifest import Manifest, read_complete_manifest
from cache.paths import check_number, check_output_dir, model_folder
from cache.tasks import CORPUS_TASK

STAGES = ("intermediate", "prediction", "all", "general")
"""general: the intermediate losses on a corpus cache, giving a general student (no head);
intermediate, prediction, or all (one then the other): task distillation."""
PROJECTION_SHARING = ("separate", "shared", "per-layer")
"""W_e and one W_h for all layers (the paper), one matrix for everything (the reference code's
`fit_dense`), or one per student layer (`fit_denses`)."""
PRECISIONS = ("auto", "float32", "bfloat16")
CHECKPOINT = "checkpoint.pt"
METRICS_LOG = "metrics.jsonl"
"""Every logged step and evaluation of a training or fine-tuning run, one JSON object per line."""
RUN_FILES = ("train_config.json", "command.txt", METRICS_LOG, "checkpoint.", "best", "last", "tensorboard")
"""What a training run writes into its --out (names or prefixes; a checkpoint is staged beside itself)."""


PRESETS: dict[str, tuple[int, int, int, int]] = {  # layers M, hidden d, FFN d', heads h
    "tinybert4": (4, 312, 1200, 12),
    "tinybert6": (6, 768, 3072, 12),
}


@dataclass(frozen=True)
class StudentShape:
    layers: int
    hidden: int
    ffn: int
    heads: int


def parse_student(text: str) -> StudentShape | Path:
    """`tinybert4`, `tinybert6`, explicit sizes `layers=2,hidden=128,ffn=512,heads=12`, a checkpoint
    folder, or a training run's folder (its best/, else its last/)."""
    if text in PRESETS:
        return StudentShape(*PRESETS[text])
    if "=" in text:
        try:
            sizes = {key.strip(): int(value) for key, value in (part.split("=") for part in text.split(","))}
            shape = StudentShape(sizes["layers"], sizes["hidden"], sizes["ffn"], sizes["heads"])
        except (KeyError, ValueError):
            raise UserError(f"--student: {text!r} is not layers=M,hidden=d,ffn=d',heads=h") from None
        if min(shape.layers, shape.hidden, shape.ffn, shape.heads) < 1 or shape.hidden % shape.heads:
            raise UserError(f"--student: hidden size {shape.hidden} must be a positive multiple of heads {shape.heads}")
        return shape
    if Path(text).is_dir():  # a checkpoint, or a run folder: its best/, else its last/
        return model_folder(Path(text), "--student")
    raise UserError(f"--student: {text!r} is not a preset ({', '.join(PRESETS)}), sizes "
                    "(layers=M,hidden=d,ffn=d',heads=h) or a checkpoint folder")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; built once from the CLI flags."""

    cache: Target
    """A folder, or an fsspec URL (s3://bucket/prefix)."""
    out: Path
    student: str = "tinybert4"
    stage: str = "all"
    eval_cache: Target | None = None
    """A held-out cache of the same teacher: the intermediate losses on it are the evaluation of
    the stages that use them (general distillation has no other)."""
    layer_map: str = "uniform"
    """`uniform` (g(m) = m*N/M) or teacher layers for student layers 1..M, e.g. `2,4,6`."""
    layer_weights: tuple[float, ...] | None = None
    """lambda_m for m = 0..M+1; all 1 by default."""
    eval_data: Path | None = None
    eval_split: str = "dev"
    epochs_intermediate: int | None = None
    """None: the paper's (20; 50 for CoLA; 10 for MNLI, QQP, QNLI)."""
    epochs_prediction: int = 3
    batch_size: int = 32
    lr_intermediate: float = 5e-5
    lr_prediction: float = 3e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    temperature: float = 1.0
    attention_loss: str | None = None
    """`scores` or `probs`; None: what the cache stores."""
    projections: str | None = None
    """One of PROJECTION_SHARING; None: the student folder's saved projections, else separate."""
    fresh_projections: bool = False
    """Start new projections even when the student folder holds some."""
    seed: int = 42
    max_steps: int | None = None
    """Stop each stage after this many steps (quick runs)."""
    eval_every: int | None = None
    save_every: int = 200
    log_every: int = 10
    workers: int | None = None
    """Reader processes; None: 0 on a CPU (where a reader process only competes with the student for
    the same cores; docs/benchmarks.md), 2 on a GPU."""
    window_blocks: int = 4
    resume: bool = False
    device: str = "auto"
    precision: str = "auto"
    """`float32`, `bfloat16` (autocast), or `auto`: bfloat16 on CUDA, float32 on a CPU."""
    tensorboard: bool = False
    """Also write the logged scalars as TensorBoard events in `out`/tensorboard."""
    storage_options: dict | None = None
    """Passed to fsspec for URL caches (--cache, --eval-cache), beyond what the environment configures."""
    prefetch_blocks: int | None = None
    """Blocks read at once (and the next window read ahead without reader processes); None: 1 from a
    folder, REMOTE_PREFETCH from an object store."""

    def check(self) -> None:
        """Everything decidable from the flags, the cache's manifest and the paths, before torch or
        the student loads. Refusing NaN and infinity here keeps a
        NaN student from being trained and saved with exit status 0."""
        manifest = read_complete_manifest(self.cache_root(self.cache))
        if self.stage not in STAGES:
            raise UserError(f"--stage: {self.stage!r} is not one of {', '.join(STAGES)}")
        parse_student(self.student)
        if self.projections is not None and self.projections not in PROJECTION_SHARING:
            raise UserError(f"--projections: {self.projections!r} is not one of {', '.join(PROJECTION_SHARING)}")
        for value in self.layer_weights or ():
            check_number(value, "--layer-weights", 0)
        for option in ("lr_intermediate", "lr_prediction", "temperature"):
            check_number(getattr(self, option), f"--{option.replace('_', '-')}", 0, low_open=True)
        check_number(self.max_grad_norm, "max_grad_norm", 0, low_open=True)  # no flags: library use only
        check_number(self.weight_decay, "weight_decay", 0)
        check_number(self.warmup, "warmup", 0, 1, high_open=True)
        if self.eval_data is not None:
            if manifest.data.task == CORPUS_TASK or self.stage == "general":
                raise UserError("--eval-data: general distillation has no labels to score; evaluate it on a held-out "
                                "corpus cache with --eval-cache")
            resolve_data_file(manifest.data.task, Path(self.eval_data), self.eval_split)
        if self.eval_cache is not None:
            check_eval_cache(manifest, read_complete_manifest(self.cache_root(self.eval_cache)), self.eval_cache)
        self._check_out()

    def cache_root(self, cache: Target) -> Root:
        return open_root(as_target(cache), self.storage_options)

    def _check_out(self) -> None:
        check_output_dir(Path(self.out), "--out", ours=RUN_FILES)  # never into a cache, a data folder, ...
        has_run = (self.out / CHECKPOINT).exists()
        if has_run and not self.resume:
            raise UserError(f"--out: {self.out} already holds a run; add --resume to continue it, "
                            "or choose another --out")
        if self.resume and not has_run:
            raise UserError(f"--resume: {self.out} has no checkpoint to resume from")


def check_eval_cache(train: Manifest, held_out: Manifest, path: Target) -> None:
    """An evaluation cache must hold the same teacher's targets on the same tokens, and other data."""
    if held_out.teacher.weights_sha256 != train.teacher.weights_sha256:
        raise UserError(f"--eval-cache: {path} was made by another teacher than --cache")
    if held_out.tokenizer_fingerprint != train.tokenizer_fingerprint:
        raise UserError(f"--eval-cache: {path} was tokenised differently from --cache")
    if held_out.attention != train.attention:
        raise UserError(f"--eval-cache: {path} stores attention {held_out.attention}, --cache {train.attention}")
    if held_out.data.sha256 == train.data.sha256 and not _disjoint_corpus_parts(train, held_out):
        raise UserError(f"--eval-cache: {path} shares data with --cache; dump a held-out part of a corpus with "
                        "--split holdout and the --holdout of the training dump, or evaluate on other data")


def _disjoint_corpus_parts(train: Manifest, held_out: Manifest) -> bool:
    """The train and holdout parts of one corpus, split with the same fraction, share no document."""
    options = train.data.columns or {}, held_out.data.columns or {}
    return (train.data.task == held_out.data.task == CORPUS_TASK and (train.data.split, held_out.data.split) ==
            ("train", "holdout") and options[0].get("holdout") == options[1].get("holdout"))


@dataclass(frozen=True)
class FinetuneConfig:
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
        resolve_data_file(canonical_task(self.task), Path(self.data), "train")
        check_number(self.lr, "--lr", 0, low_open=True)
        if (Path(self.out) / "config.json").exists():
            raise UserError(f"--out: {self.out} already holds a model; choose another --out")
        check_output_dir(Path(self.out), "--out", ours=(METRICS_LOG,))  # a log is all an interrupted run leaves
