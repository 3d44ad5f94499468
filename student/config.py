"""The configurations of the student-side commands, with the checks that need neither torch nor
a model: the CLI runs them before it imports the recipes, so a wrong flag fails in a second."""

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import numpy as np

from cache.data.families import family_named
from cache.data.readers import resolve_data_file
from cache.data.tasks import CORPUS_TASK, GLUE_TASKS
from cache.format.encoding import Factored
from cache.format.location import Root, Target, as_target, open_root
from cache.format.manifest import Manifest, read_complete_manifest
from cache.format.store import open_store
from cache.read.inspect import stored_sequence_hashes
from cache.runtime.errors import UserError
from cache.runtime.kinds import AttentionKind
from cache.runtime.layer_map import resolve_layer_map
from cache.runtime.log import METRICS_LOG
from cache.runtime.options import (
    CACHE,
    INPUT,
    LOCAL,
    POSITIVE,
    as_member,
    choice_of,
    parse_storage_options,
    parse_weights,
    setting,
)
from cache.runtime.paths import check_device_name, check_number, check_output_dir, model_folder
from cache.runtime.precision import PRECISIONS

STAGES = ("intermediate", "prediction", "all", "general")
"""general: the intermediate losses on a corpus cache, giving a general student (no head);
intermediate, prediction, or all (one then the other): task distillation."""
OBJECTIVES = ("tinybert", "minilmv2", "embedding")
"""tinybert: the layer-to-layer losses (embeddings, hidden states through projections, attention
over a layer map); minilmv2: the self-attention relations of one teacher layer (Wang et al., 2021);
embedding: the pooled sentence vector alone (what sentence-transformers' distillation trains)."""
EMBEDDING_LOSSES = ("mse", "cosine")
"""How the pooled sentence vectors are compared (`student.losses.pooled_embedding_loss`)."""
RELATION_HEADS_CAP = 48
"""The paper's relation heads for base-size teachers: the default is the largest common divisor of
both widths up to it."""
PROJECTION_SHARING = ("separate", "shared", "per-layer")
"""W_e and one W_h for all layers (the paper), one matrix for everything (the reference code's
`fit_dense`), or one per student layer (`fit_denses`)."""
CHECKPOINT = "checkpoint.pt"
RUN_RECORD = "train_config.json"
NOT_COMPUTING = ("cache", "out", "resume", "device", "precision", "workers", "save_every", "log_every", "tensorboard",
                 "storage_options", "prefetch_blocks")
"""Options that do not change what a run computes (the cache and precision are compared by what
they resolve to: the cache's identity, the precision used); `--resume` compares all the others."""
RUN_FILES = (RUN_RECORD, "command.txt", METRICS_LOG, "checkpoint.", "best", "last", "tensorboard")
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
        small = [f"{key}={value}" for key, value in sizes.items() if value < 1]
        if small:
            raise UserError(f"--student: {', '.join(small)}: every size must be at least 1")
        if shape.hidden % shape.heads:
            raise UserError(f"--student: hidden size {shape.hidden} must be a positive multiple of heads {shape.heads}")
        return shape
    if Path(text).is_dir():  # a checkpoint, or a run folder: its best/, else its last/
        return model_folder(Path(text), "--student")
    raise UserError(f"--student: {text!r} is not a preset ({', '.join(PRESETS)}), sizes "
                    "(layers=M,hidden=d,ffn=d',heads=h) or a checkpoint folder")


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def check_student_folder(folder: Path, manifest: Manifest) -> dict:
    """A checkpoint student, from its config.json alone: of the teacher's family, with weights, whose
    token types cover the cache's (a second text needs two where the family tells texts apart by
    them). Returns its config."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"--student: {folder / 'config.json'} cannot be read ({e})") from None
    family = family_named(manifest.teacher.family)
    kind = config.get("model_type", "bert") if isinstance(config, dict) else None  # the reference code writes none
    if kind not in family.model_types:
        raise UserError(f"--student: {folder} is a {kind!r} model and the cache's teacher a {family.name}; a student "
                        "is of its teacher's family (make one from the teacher with init-student, or give its sizes)")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise UserError(f"--student: {folder} has a config.json but no weights ({', '.join(WEIGHT_FILES[::2])})")
    columns = manifest.data.columns or {}
    pairs = (GLUE_TASKS[manifest.data.task].pair is not None if manifest.data.task in GLUE_TASKS
             else bool(columns.get("pair")))
    if pairs and family.token_types and manifest.teacher.config.get("type_vocab_size", 2) > 1 \
            and config.get("type_vocab_size", 2) < 2:
        raise UserError(f"--student: {folder} has type_vocab_size {config.get('type_vocab_size')}, and the cache's "
                        "examples are pairs of texts (token types 0 and 1)")
    return config


def student_size(student: StudentShape | Path, manifest: Manifest) -> tuple[int, int]:
    """The student's layers and width, from its shape or its folder's config.json (as its family
    names them)."""
    if isinstance(student, StudentShape):
        return student.layers, student.hidden
    config = check_student_folder(student, manifest)
    names = family_named(manifest.teacher.family).size_names
    return int(config.get(names[0], 0)), int(config.get(names[1], 0))


INTERMEDIATE_EPOCHS = {"cola": 50, "mnli": 10, "qqp": 10, "qnli": 10}  # the paper's; 20 otherwise
GENERAL_EPOCHS = 3
"""The reference code's general distillation runs 3 epochs over its corpus."""
@dataclass(frozen=True)
class Stage:
    name: str
    epochs: int
    lr: float

    @property
    def intermediate(self) -> bool:
        """Trains on the layers' targets (embedding, hidden, attention), not on the logits."""
        return self.name != "prediction"


def resolve_stages(config: "TrainConfig", task: str) -> list[Stage]:
    epochs = config.epochs_intermediate or INTERMEDIATE_EPOCHS.get(task, 20)
    stages = {"intermediate": [Stage("intermediate", epochs, config.lr_intermediate)],
              "prediction": [Stage("prediction", config.epochs_prediction, config.lr_prediction)],
              "general": [Stage("general", config.epochs_intermediate or GENERAL_EPOCHS, config.lr_intermediate)]}
    return stages["intermediate"] + stages["prediction"] if config.stage == "all" else stages[config.stage]


def regression_head(manifest: Manifest) -> bool:
    """The task kind is the teacher's head's (one output: regression), whatever labels the data
    had; a teacher without a head leaves it to the data's labels."""
    if manifest.teacher.num_labels:
        return manifest.teacher.num_labels == 1
    return manifest.data.label_kind == "regression"


def resolve_layer_weights(weights: tuple[float, ...] | None, student_layers: int, stages: list[Stage]) -> list[float]:
    """lambda_m for m = 0..M+1; a stage whose every weight is 0 (its loss could never move) is refused."""
    if weights is None:
        return [1.0] * (student_layers + 2)
    if len(weights) != student_layers + 2:
        raise UserError(f"--layer-weights: need {student_layers + 2} values (m = 0..M+1), got {len(weights)}")
    for stage in stages:
        if not any(weights[:-1] if stage.intermediate else weights[-1:]):
            raise UserError(f"--layer-weights: every weight of the {stage.name} stage is 0, so its loss cannot move")
    return list(weights)


def resolve_attention_kind(requested: AttentionKind | None, manifest: Manifest) -> AttentionKind:
    """The kind the dump asked for unless another is requested; scores only where decoding gives
    them (stored scores, or queries and keys)."""
    kind = AttentionKind(requested or manifest.attention)
    if kind == AttentionKind.SCORES and manifest.geometry.decodes_to == AttentionKind.PROBS:
        raise UserError("--attention-loss scores: the cache stores probabilities, which cannot be turned "
                        "back into scores; use --attention-loss probs or dump with --attention scores")
    return kind


@dataclass(frozen=True)
class Relations:
    """What MiniLMv2's objective compares: the relations of one teacher layer with those of one
    student layer, both split into `heads` relation heads."""

    teacher_layer: int
    student_layer: int
    heads: int


def resolve_relations(config: "TrainConfig", manifest: Manifest, student_width: int, student_layers: int,
                      option: str = "--cache") -> Relations:
    """The layers and relation heads of `--objective minilmv2`, from a cache that holds a layer's
    queries, keys and values."""
    encoding = manifest.attention_encoding
    if not (isinstance(encoding, Factored) and encoding.with_values) or not manifest.attention_layers:
        stored = f"{encoding} attention" if manifest.attention_layers else "no attention"
        raise UserError(f"--objective minilmv2 reads a teacher layer's queries, keys and values, and {option} "
                        f"stores {stored}; dump it with --attention-encoding qkv")
    teacher_layer = config.teacher_layer or manifest.attention_layers[-1]
    if teacher_layer not in manifest.attention_layers:
        raise UserError(f"--teacher-layer: layer {teacher_layer} is not in {option} (it stores the queries, keys "
                        f"and values of layers {list(manifest.attention_layers)})")
    student_layer = config.student_layer or student_layers
    if not 1 <= student_layer <= student_layers:
        raise UserError(f"--student-layer: the student has layers 1..{student_layers}, not {student_layer}")
    teacher_width = manifest.teacher.hidden_size
    heads = config.relation_heads or max(a for a in range(1, RELATION_HEADS_CAP + 1)
                                         if teacher_width % a == 0 and student_width % a == 0)
    if teacher_width % heads or student_width % heads:
        raise UserError(f"--relation-heads: {heads} does not divide the teacher's width {teacher_width} and the "
                        f"student's {student_width}")
    return Relations(teacher_layer, student_layer, heads)


def check_compatibility(manifest: Manifest, layer_map: list[int] | None, stages: list[Stage],
                        option: str = "--cache") -> None:
    """Everything the run needs from a cache, checked before any work (the layer map's layers
    where the objective reads them: `layer_map` None for MiniLMv2's, which `resolve_relations` checks)."""
    if layer_map is not None and any(s.intermediate for s in stages):
        needed = sorted({0, *layer_map})
        missing = [n for n in needed if n not in manifest.layers]
        if missing:
            raise UserError(f"--layer-map: teacher layers {missing} are not in {option} (it has "
                            f"{list(manifest.layers)}); dump them with --layers or choose another map")
        unattended = [n for n in layer_map if n not in manifest.attention_layers]
        if unattended:
            raise UserError(f"--layer-map: {option} stores no attention of teacher layers {unattended} (it was dumped "
                            f"with --attention-encoding {manifest.attention_encoding}); TinyBERT's losses need it")
    if any(s.name == "prediction" for s in stages) and not manifest.teacher.num_labels:
        raise UserError("--stage: the cache has no teacher logits (its teacher has no classification head); "
                        "use --stage general (a corpus) or intermediate, or dump a fine-tuned teacher")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; built once from the CLI flags (each field's
    docstring is its --help)."""

    cache: Target = setting(type=CACHE)
    """Teacher cache to distil from: a folder, or a URL (s3://bucket/prefix, ...)."""
    out: Path = setting(type=LOCAL)
    """Run folder (students, logs, checkpoint)."""
    storage_options: dict | None = setting(None, callback=parse_storage_options, metavar="JSON")
    """For URL caches (--cache, --eval-cache): a JSON object of fsspec options beyond the
    environment's (AWS_ENDPOINT_URL, AWS_PROFILE, ...). Recorded with the command: keep secrets in
    the environment."""
    student: str = setting("tinybert4")
    """tinybert4, tinybert6, sizes layers=M,hidden=d,ffn=d',heads=h (a model of the teacher's
    family), a checkpoint folder (a general student: with its projections), or a run folder (its
    best/, else last/)."""
    stage: str = setting("all", type=click.Choice(STAGES))
    """intermediate: the objective's layer losses; prediction: logits; all: one then the other;
    general: the intermediate losses on a corpus cache, saving a general student (no head)."""
    objective: str = setting("tinybert", type=click.Choice(OBJECTIVES))
    """The intermediate (and general) losses. tinybert: embedding, hidden states (projected) and
    attention over the layer map; minilmv2: the Q-Q, K-K and V-V self-attention relations of one
    teacher layer against one student layer, from a qkv cache; any student width, nothing projected;
    embedding: only the sentence vector of --embedding-loss (default mse), from a cache that stores
    the teacher's last layer."""
    relation_heads: int | None = setting(None, type=click.IntRange(1))
    """minilmv2: relation heads A, dividing both widths. Default: the largest common divisor of the
    two widths up to 48."""
    teacher_layer: int | None = setting(None, type=click.IntRange(1))
    """minilmv2: the teacher layer whose relations are distilled (default: the last the cache stores)."""
    student_layer: int | None = setting(None, type=click.IntRange(1))
    """minilmv2: the student layer that learns them (default: its last)."""
    embedding_loss: str | None = setting(None, type=click.Choice(EMBEDDING_LOSSES))
    """Also, with any objective: the student's mean-pooled last layer through W_h against the
    teacher's mean-pooled last layer (its sentence vector; the cache must store that layer):
    mse or cosine. Trains and saves W_h, which `export --format sentence-transformers` keeps."""
    embedding_weight: float = setting(1.0, type=POSITIVE)
    """The weight of --embedding-loss against the objective's losses."""
    layer_map: str = setting("uniform")
    """'uniform' (g(m) = m*N/M) or teacher layers per student layer, e.g. 2,4,6."""
    layer_weights: tuple[float, ...] | None = setting(None, callback=parse_weights, metavar="WEIGHTS")
    """lambda_m for m = 0..M+1, comma-separated (default: all 1)."""
    eval_data: Path | None = setting(None, type=INPUT)
    """Task data to evaluate on."""
    eval_cache: Target | None = setting(None, type=CACHE)
    """A held-out cache of the same teacher (a corpus's holdout split): the intermediate losses on
    it, the evaluation of general distillation."""
    eval_split: str = setting("dev")
    """Split of --eval-data to evaluate on."""
    epochs_intermediate: int | None = setting(None, type=click.IntRange(1))
    """Default: the paper's (20; CoLA 50; MNLI, QQP, QNLI 10); 3 for --stage general."""
    epochs_prediction: int = setting(3, type=click.IntRange(1))
    """Epochs of the prediction stage."""
    batch_size: int = setting(32, type=click.IntRange(1))
    """Examples per step; under torchrun per rank (the global batch is this times the ranks)."""
    lr_intermediate: float = setting(5e-5, type=POSITIVE)
    """Peak learning rate of the intermediate stage (linear warm-up, then linear decay)."""
    lr_prediction: float = setting(3e-5, type=POSITIVE)
    """Peak learning rate of the prediction stage."""
    temperature: float = setting(1.0, type=POSITIVE)
    """Of the soft cross-entropy between the student's and the teacher's logits."""
    attention_loss: AttentionKind | None = setting(None, type=choice_of(AttentionKind),
                                                   callback=as_member(AttentionKind))
    """Compare scores or probabilities (default: what the cache stores)."""
    projections: str | None = setting(None, type=click.Choice(PROJECTION_SHARING))
    """W_e and one W_h (the paper), one W for all (reference code's fit_dense), or one per layer.
    Default: the --student folder's saved projections, else separate."""
    fresh_projections: bool = setting(False, is_flag=True)
    """Start new projections even if the --student folder has some."""
    seed: int = setting(42, type=int)
    """Seeds the student's initialisation, dropout and the order of examples."""
    max_steps: int | None = setting(None, type=click.IntRange(1))
    """Stop each stage after N steps."""
    eval_every: int | None = setting(None, type=click.IntRange(1))
    """Also evaluate every N steps."""
    save_every: int = setting(200, type=click.IntRange(1))
    """Checkpoint every N steps."""
    log_every: int = setting(10, type=click.IntRange(1))
    """Log the losses every N steps (metrics.jsonl; under torchrun, summed over the ranks)."""
    workers: int | None = setting(None, type=click.IntRange(0))
    """Reader processes (default: 0 on a CPU, where they only compete for its cores; 2 on a GPU)."""
    window_blocks: int = setting(4, type=click.IntRange(1))
    """Blocks shuffled together (the shuffle buffer; memory grows with it)."""
    prefetch_blocks: int | None = setting(None, type=click.IntRange(1))
    """Blocks read at once, the next window read ahead (default: 1 from a folder, 8 from a URL)."""
    resume: bool = setting(False, is_flag=True)
    """Continue the run in --out from its checkpoint."""
    tensorboard: bool = setting(False, is_flag=True)
    """Also write the logged scalars as TensorBoard events (--out/tensorboard)."""
    device: str = setting("auto")
    """auto (CUDA when available), cpu, cuda, cuda:1, ..."""
    precision: str = setting("auto", type=click.Choice(PRECISIONS))
    """auto: bfloat16 on CUDA, float32 on a CPU; bfloat16 pays on CPUs with AVX512-BF16 or AMX too."""
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0

    def check(self) -> None:
        """Everything decidable from the flags, the cache's manifest and the paths, before torch or
        the student loads. Refusing NaN and infinity here keeps a
        NaN student from being trained and saved with exit status 0."""
        check_device_name(self.device)
        manifest = read_complete_manifest(self.cache_root(self.cache))
        if self.stage not in STAGES:
            raise UserError(f"--stage: {self.stage!r} is not one of {', '.join(STAGES)}")
        student = parse_student(self.student)
        layers, width = student_size(student, manifest)
        layer_map = self.resolved_layer_map(layers, manifest.teacher.num_layers)
        stages = resolve_stages(self, manifest.data.task)
        resolve_layer_weights(self.layer_weights, len(layer_map), stages)
        if self.objective == "minilmv2":
            resolve_relations(self, manifest, width, layers)
        elif self.objective == "tinybert":
            resolve_attention_kind(self.attention_loss, manifest)
        check_compatibility(manifest, layer_map if self.objective == "tinybert" else None, stages)
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
            check_eval_cache(self.cache_root(self.cache), manifest, self.cache_root(self.eval_cache), self.eval_cache)
        self._check_out()

    def resolved_layer_map(self, student_layers: int, teacher_layers: int) -> list[int]:
        """TinyBERT's g(1..M); MiniLMv2 maps one layer (--teacher-layer, --student-layer) and no other,
        the embedding objective none."""
        if self.objective == "minilmv2" and self.layer_map != "uniform":
            raise UserError("--layer-map: the minilmv2 objective distils one layer's relations; choose it with "
                            "--teacher-layer and --student-layer")
        if self.objective == "embedding" and self.layer_map != "uniform":
            raise UserError("--layer-map: the embedding objective compares sentence vectors, not layers")
        if self.objective != "tinybert":
            return []
        return resolve_layer_map(self.layer_map, student_layers, teacher_layers)

    @property
    def pooled_loss(self) -> str | None:
        """How the run compares sentence vectors, where it does: --embedding-loss, which the
        embedding objective defaults to mse."""
        return self.embedding_loss or ("mse" if self.objective == "embedding" else None)

    def cache_root(self, cache: Target) -> Root:
        return open_root(as_target(cache), self.storage_options)

    def _check_out(self) -> None:
        """A folder holding any run file is someone's run: only `--resume` may continue it, and
        only from its checkpoint. Under torchrun rank 0 alone checks: it alone writes there, and
        may have begun by the time another rank looks."""
        if os.environ.get("RANK", "0") != "0":
            return
        check_output_dir(Path(self.out), "--out", ours=RUN_FILES)  # never into a cache, a data folder, ...
        found = sorted(p.name for p in Path(self.out).iterdir()) if Path(self.out).is_dir() else []
        if found and not self.resume:
            raise UserError(f"--out: {self.out} already holds a run ({', '.join(found[:3])}); add --resume to "
                            "continue it, or choose another --out")
        if self.resume and not (self.out / CHECKPOINT).is_file():
            raise UserError(f"--resume: {self.out} has no checkpoint to resume from"
                            + (" (the run stopped before its first one: remove the folder to start again)"
                               if found else ""))
        if self.resume:
            self._check_same_run()

    def _check_same_run(self) -> None:
        """The options that decide what the run computes, against those its folder recorded: a
        resume that would compute something else is refused here, before anything loads (the
        checkpoint's own signature is compared again once it is read)."""
        try:
            record = json.loads((self.out / RUN_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # the checkpoint's signature decides
        mine = json.loads(json.dumps(asdict(self), default=str))
        differences = [f"--{key.replace('_', '-')}: the run has {record[key]!r}, this command {value!r}"
                       for key, value in mine.items()
                       if key not in NOT_COMPUTING and key in record and record[key] != value]
        if differences:
            raise UserError(f"--resume: this command differs from the run in {self.out} ({'; '.join(differences)}); "
                            "resume with the original options, or start a new run in another --out")


def check_eval_cache(train_root: Root, train: Manifest, held_out_root: Root, path: Target) -> None:
    """An evaluation cache must hold the same teacher's targets on the same tokens, and not one
    sequence of the training cache (compared by what both hold, whatever files made them)."""
    held_out = read_complete_manifest(held_out_root)
    if held_out.teacher.weights_sha256 != train.teacher.weights_sha256:
        raise UserError(f"--eval-cache: {path} was made by another teacher than --cache")
    if held_out.tokenizer_fingerprint != train.tokenizer_fingerprint:
        raise UserError(f"--eval-cache: {path} was tokenised differently from --cache")
    if held_out.attention != train.attention:
        raise UserError(f"--eval-cache: {path} stores attention {held_out.attention}, --cache {train.attention}")
    evaluated = stored_sequence_hashes(open_store(held_out_root, held_out.storage), held_out)
    shared = int(np.isin(evaluated, stored_sequence_hashes(open_store(train_root, train.storage), train)).sum())
    if shared:
        raise UserError(f"--eval-cache: {shared} of the {len(evaluated)} sequences of {path} are also in --cache; "
                        "dump a held-out part of a corpus with --split holdout and the --holdout of the "
                        "training dump, or evaluate on other data")


EXPORT_FORMATS = ("onnx", "sentence-transformers")
EXPORT_RECORD = "export.json"
"""Written into every export folder: what made it and what its self-check measured. An --out that
holds files but no such record is not overwritten."""


@dataclass(frozen=True)
class ExportConfig:
    """Everything that decides an export; built once from the CLI flags (each field's docstring is
    its --help)."""

    model: Path = setting(type=INPUT)
    """A saved student or teacher folder (a training run's folder means its best/, else last/)."""
    out: Path = setting(type=LOCAL)
    """Folder to write (replaced if it holds an earlier export, refused if it holds anything else)."""
    format: str = setting(type=click.Choice(EXPORT_FORMATS))
    """onnx: the model's graph (a classifier with its head, else the encoder) for ONNX Runtime, with
    its config and tokenizer; sentence-transformers: an embedder SentenceTransformer(OUT) loads."""
    quantize: str | None = setting(None, type=click.Choice(["int8"]))
    """Dynamic int8 quantisation of the ONNX graph's weights (onnxruntime's quantiser)."""
    onnx: bool = setting(False, is_flag=True)
    """sentence-transformers: also the encoder in ONNX (onnx/model.onnx), as its ONNX backend loads it."""
    teacher: str | None = setting(None)
    """sentence-transformers: the teacher whose pooling and normalisation the embedder keeps
    (default: the teacher of the cache the student was distilled from, where that folder exists)."""

    def check(self) -> None:
        source = model_folder(Path(self.model), "--model")
        if self.format == "sentence-transformers" and self.quantize and not self.onnx:
            raise UserError("--quantize int8: a sentence-transformers export quantises its ONNX encoder; add --onnx")
        if self.teacher is not None and not Path(self.teacher).is_dir():
            raise UserError(f"--teacher: {self.teacher} is not a folder")
        if self.onnx and self.format != "sentence-transformers":
            raise UserError("--onnx: only with --format sentence-transformers (--format onnx is the ONNX export)")
        out = Path(self.out)
        if out.resolve() in (source.resolve(), Path(self.model).resolve()):
            raise UserError(f"--out: {out} is the model being exported; choose another folder")
        if not (out / EXPORT_RECORD).is_file():
            check_output_dir(out, "--out")
