"""tinybert-distill command line: parse flags into one config object and call the library.

torch and transformers are imported only once a command's cheap checks have passed, so `--help`
and a mistyped path answer at once.
"""

import errno
import json
import math
import os
import shlex
import sys
from pathlib import Path

import click

from cache.data.readers import ColumnSpec
from cache.format.encoding import EMBEDDING_OUTPUTS, VECTOR_ENCODINGS
from cache.format.store.base import COMPRESSIONS
from cache.runtime.kinds import AttentionKind
from cache.runtime.precision import PRECISIONS
from cache.teacher.config import (
    FORMATS,
    WRITERS,
    AugmentConfig,
    DumpConfig,
    FinetuneConfig,
    InitConfig,
)
from student.config import PROJECTION_SHARING, STAGES, TrainConfig


class Group(click.Group):
    """A click group that records the command line and turns user mistakes into one-line errors."""

    def parse_args(self, ctx, args):
        ctx.meta.setdefault("argv", list(args))  # the top-level group sees the whole command line
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        from cache.runtime.errors import UserError

        try:
            return super().invoke(ctx)
        except UserError as e:
            _end_progress_bars()
            raise click.ClickException(str(e)) from None
        except OSError as e:  # a full disk, a read-only folder, a path through a file: the user's to fix
            if e.filename is None and e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            _end_progress_bars()
            raise click.ClickException(f"{e.filename or 'writing'}: {e.strerror or e}") from None


def _end_progress_bars() -> None:
    """An error raised mid-loop leaves its progress bar's line open: closing the bars ends that line,
    so the error gets a line of its own."""
    tqdm_module = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm_module, "tqdm", None), "_instances", ())):
        bar.close()


class FiniteFloat(click.FloatRange):
    """A float range that also refuses NaN and infinity (which compare false with every bound)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


ATTENTION_KINDS = [kind.value for kind in AttentionKind]
POSITIVE = FiniteFloat(min=0, min_open=True)


class CacheLocation(click.ParamType):
    """A cache folder, or an fsspec URL (s3://bucket/prefix), kept as a string: a Path would fold its //."""

    name = "FOLDER|URL"

    def convert(self, value, param, ctx):
        from cache.format.location import as_target

        return value if isinstance(value, Path) else as_target(value)


CACHE = CacheLocation()


class LocalPath(click.Path):
    """A local folder or file to write. A URL is refused: these commands write here (copy the
    result to a store afterwards); `suffixes`, where given, are the file types it may have."""

    def __init__(self, suffixes: tuple[str, ...] = ()):
        super().__init__(path_type=Path)
        self.suffixes = suffixes

    def convert(self, value, param, ctx):
        from cache.format.location import is_url

        if isinstance(value, str) and is_url(value):
            self.fail(f"{value} is a URL; this command writes to a local path (copy the result to the store "
                      "afterwards)", param, ctx)
        path = super().convert(value, param, ctx)
        if self.suffixes and path.suffix.lower() not in self.suffixes:
            self.fail(f"{value}: the picture's type comes from its extension; use {', '.join(self.suffixes)}",
                      param, ctx)
        return path


LOCAL = LocalPath()
PICTURE = LocalPath((".png", ".pdf", ".svg"))


def _parse_storage_options(ctx, param, value: str | None) -> dict | None:
    if value is None:
        return None
    try:
        options = json.loads(value)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not JSON ({e})") from None
    if not isinstance(options, dict):
        raise click.BadParameter('a JSON object, e.g. \'{"anon": true}\'')
    return options


storage_options_option = click.option(
    "--storage-options", callback=_parse_storage_options, default=None,
    help="For a URL cache: a JSON object of fsspec options beyond the environment's (AWS_ENDPOINT_URL, "
    "AWS_PROFILE, ...). Recorded with the command: keep secrets in the environment.")


def _quiet_transformers() -> None:
    from cache.data.checkpoints import quiet_transformers  # imports transformers: only once a command runs

    quiet_transformers()


def _run(config, recipe):
    """Run `recipe` on a configuration already checked (each command checks it before it imports
    the recipe, so that a wrong path fails before torch loads), with the command line recorded."""
    _quiet_transformers()
    return recipe(config, command=_command_line())


def _main_rank() -> bool:
    """True but on the ranks of a torchrun job other than 0 (whose rank 0 reports for it)."""
    return os.environ.get("RANK", "0") == "0"


def _command_line() -> str:
    """The command as it was typed: the console script or `python cli.py`, and under torchrun the
    launcher with its process counts."""
    console = os.path.basename(sys.argv[0]) == "tinybert-distill"
    program = ["tinybert-distill"] if console else ["cli.py"]
    if "TORCHELASTIC_RUN_ID" in os.environ:
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        nodes = int(os.environ.get("WORLD_SIZE", str(per_node))) // per_node
        program = ["torchrun", f"--nnodes={nodes}", f"--nproc-per-node={per_node}",
                   *(["--no-python"] if console else []), *program]
    elif not console:
        program = ["python", *program]
    return shlex.join([*program, *click.get_current_context().meta["argv"]])


def _parse_models(ctx, param, values: tuple[str, ...]) -> dict[str, Path]:
    named: dict[str, Path] = {}
    for item in values:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise click.BadParameter(f"{item!r} is not NAME=FOLDER")
        if name in named:
            raise click.BadParameter(f"the name {name!r} is given twice ({named[name]} and {folder}); "
                                     "names must differ")
        if not Path(folder).is_dir():
            raise click.BadParameter(f"{folder} is not a folder (in {item!r})")
        named[name] = Path(folder)
    return named


def _check_data(task: str, data: Path, split: str) -> None:
    """The data file exists and the task is known: checked before the heavy imports."""
    from cache.data.readers import canonical_task, resolve_data_file

    resolve_data_file(canonical_task(task), data, split)


def _parse_weights(ctx, param, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        weights = tuple(float(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not comma-separated numbers, e.g. 1,1,1,1,1,1") from None
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise click.BadParameter(f"{value!r}: each weight is a finite number >= 0")
    return weights


def _parse_layers(ctx, param, value: str) -> tuple[int, ...] | None:
    if value == "all":
        return None
    try:
        layers = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter("expected 'all' or comma-separated layer numbers, e.g. 0,2,4,6") from None
    if not layers or min(layers) < 0:
        raise click.BadParameter("layer numbers are >= 0 (0 = embedding output)")
    return layers


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def cli():
    """Distil BERT teachers into TinyBERT students; the teacher runs once, into a cache."""


@cli.command("dump-teacher")
@click.option("--task", required=True, help="GLUE task (sst2, cola, mrpc, stsb, qqp, mnli, qnli, rte, wnli), "
              "csv / tsv / jsonl / text / parquet / arrow / datasets (a save_to_disk folder) for your own data, "
              "or corpus: raw text for general distillation, packed into --max-seq-len sequences.")
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="A data file, or a folder holding <split>.tsv (GLUE layout); for a corpus, a text file or a "
              "folder of .txt files (blank lines separate documents).")
@click.option("--split", default=DumpConfig.split,
              help="Split to read when --data is a folder; for a corpus, train or holdout (see --holdout).")
@click.option("--holdout", type=FiniteFloat(0, 1, max_open=True), default=DumpConfig.holdout,
              help="Corpus only: fraction of documents (chosen by a hash of their text) set aside as the "
              "holdout split; give the same value to the train and holdout dumps.")
@click.option("--out", required=True, type=CACHE, help="Cache to write: a folder, or a URL (s3://bucket/prefix, ...).")
@storage_options_option
@click.option("--teacher", default=None, help="Teacher checkpoint folder (BertModel or "
              "BertForSequenceClassification). Default: the packaged MiniLM-L6-H384.")
@click.option("--format", "format_", type=click.Choice(FORMATS), default=DumpConfig.format, help="On-disk format.")
@click.option("--layers", default="all", callback=_parse_layers,
              help="Teacher layers to store: 'all' or e.g. 0,2,4,6 (0 = embedding output).")
@click.option("--attention", type=click.Choice(ATTENTION_KINDS), default=DumpConfig.attention.value,
              help="Pre-softmax scores QK^T/sqrt(d_k) (TinyBERT's reference) or post-softmax probabilities.")
@click.option("--hidden-encoding", type=click.Choice(VECTOR_ENCODINGS), default=DumpConfig.hidden_encoding,
              help="Hidden states: a float type, or int8 / fp8 with a scale per row (half of float16, lossy).")
@click.option("--attention-encoding", default=DumpConfig.attention_encoding, metavar="ENCODING",
              help="maps[:float16|bfloat16|float32] (every real pair); uint8 (probabilities to 1/255); "
              "qk[:TYPE] (queries and keys per token, scores computed when training: exact, smaller for "
              "L > 2d/h); qkv[:TYPE] (and values); topk:K (the K largest probabilities per row, lossy); "
              "auto (the smallest exact one for the data). TYPE: float16, bfloat16, float32, int8, fp8.")
@click.option("--embedding-output", type=click.Choice(EMBEDDING_OUTPUTS), default=DumpConfig.embedding_output,
              help="Layer 0: stored per token, or tables: the teacher's embedding tables stored once and the "
              "layer recomputed when training (exact; smaller once the data has more tokens than the "
              "vocabulary); auto: the smaller.")
@click.option("--compression", type=click.Choice(sorted({c for cs in COMPRESSIONS.values() for c in cs})),
              default=DumpConfig.compression, help="Zarr: zstd, lz4, gzip; HDF5: gzip, lzf (docs/benchmarks.md).")
@click.option("--max-seq-len", type=click.IntRange(4, 512), default=DumpConfig.max_seq_len,
              help="Truncate examples at this length.")
@click.option("--batch-size", type=click.IntRange(1), default=DumpConfig.batch_size, help="Teacher batch size.")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Only the first N examples (for a corpus: packed sequences).")
@click.option("--block-mb", type=FiniteFloat(0.001), default=DumpConfig.block_mb,
              help="Target block size: the unit of commit (resume) and of streaming reads.")
@click.option("--max-unknown", type=FiniteFloat(0, 1), default=DumpConfig.max_unknown,
              help="Refuse data of which a larger fraction of tokens is the tokenizer's unknown token (a tokenizer "
              "that does not fit the data: another casing, another language).")
@click.option("--text-column", default=ColumnSpec.text, help="Your own data: column of the first text.")
@click.option("--pair-column", default=None, help="Your own data: column of the second text, if any.")
@click.option("--label-column", default=None, help="Your own data: label column (default: 'label' if present).")
@click.option("--labels", default=None, help="Your own data: class names in id order, comma-separated.")
@click.option("--regression", is_flag=True, help="Your own data: the label is a number.")
@click.option("--device", default=DumpConfig.device, help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
@click.option("--writer", type=click.Choice(WRITERS), default=DumpConfig.writer,
              help="Where blocks are written while the teacher computes: auto = a process beside a GPU "
              "teacher, a thread beside a CPU one.")
def dump_teacher_command(task, data, split, holdout, out, storage_options, teacher, format_, layers, attention,
                         hidden_encoding, attention_encoding, embedding_output, compression, max_seq_len, batch_size,
                         limit, block_mb, max_unknown, text_column, pair_column, label_column, labels, regression,
                         device, writer):
    """Run the teacher once over a data set and store its targets in a cache.

    Stores the embedding output, hidden states and attention of the chosen layers (real tokens
    only) and the logits when the teacher has a classification head (not for a corpus: general
    distillation uses no logits). Re-run the same command to resume an interrupted dump.
    """
    columns = ColumnSpec(text_column, pair_column, label_column,
                         tuple(labels.split(",")) if labels else None, regression)
    config = DumpConfig(task=task, data=data, split=split, out=out, teacher=teacher, format=format_,
                        layers=layers, attention=AttentionKind(attention), hidden_encoding=hidden_encoding,
                        attention_encoding=attention_encoding, embedding_output=embedding_output,
                        compression=compression,
                        max_seq_len=max_seq_len, batch_size=batch_size, limit=limit, holdout=holdout,
                        block_mb=block_mb, max_unknown=max_unknown, columns=columns, device=device, writer=writer,
                        storage_options=storage_options)
    config.check()
    from cache.teacher.dump import dump_teacher

    report = _run(config, dump_teacher)
    if not _main_rank():
        return
    if report.stale_lock:
        click.echo(f"note: took over the lock of a writer that died (pid {report.stale_lock.get('pid')}: "
                   f"{report.stale_lock.get('command')})", err=True)
    if report.written_examples == 0:
        click.echo(f"{out}: cache is already complete ({report.examples} examples); nothing to do")
        return
    click.echo(f"{out}: wrote {report.written_examples} of {report.examples} examples in {report.seconds:.1f} s "
               f"({report.written_examples / report.seconds:.1f} examples/s); "
               f"{report.truncated} truncated at {max_seq_len} tokens")


@cli.command("augment")
@click.option("--task", required=True, help="GLUE task, or tsv with --text-column / --pair-column.")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Task folder or file to augment.")
@click.option("--split", default=AugmentConfig.split, help="Split to read when --data is a folder.")
@click.option("--out", required=True, type=LOCAL,
              help="Folder for the augmented file (same name and layout as the input).")
@click.option("--mlm", default=None, help="A BERT masked-LM checkpoint (BertForMaskedLM): candidates for one-piece "
              "words, as in the paper. Default: the teacher's input-embedding neighbours.")
@click.option("--glove", type=click.Path(path_type=Path), default=None,
              help="GloVe vectors (text format): candidates for words of several pieces. Default: keep them.")
@click.option("--teacher", default=None, help="Without --mlm, whose input embeddings give the candidates "
              "(default: the packaged MiniLM).")
@click.option("--copies", type=click.IntRange(1), default=None,
              help="New sentences per row (N_a), duplicates dropped. Default: 20 SST-2 and QNLI, 10 MNLI and "
              "QQP, 30 otherwise (the reference script's).")
@click.option("--p-replace", type=FiniteFloat(0, 1), default=AugmentConfig.p_replace,
              help="Chance that a word is replaced (p_t).")
@click.option("--neighbours", type=click.IntRange(1), default=AugmentConfig.neighbours, help="Candidates per word (K).")
@click.option("--seed", type=int, default=AugmentConfig.seed)
@click.option("--limit", type=click.IntRange(1), default=None, help="Augment the first N rows only.")
@click.option("--batch-size", type=click.IntRange(1), default=AugmentConfig.batch_size,
              help="Masked sentences per masked-LM forward.")
@click.option("--device", default=AugmentConfig.device, help="For the masked LM: auto, cpu, cuda, ...")
@click.option("--text-column", default=ColumnSpec.text, help="tsv: column of the first text.")
@click.option("--pair-column", default=None, help="tsv: column of the second text, if any.")
def augment_command(task, data, split, out, mlm, glove, teacher, copies, p_replace, neighbours, seed, limit,
                    batch_size, device, text_column, pair_column):
    """Write an augmented copy of a training set for the teacher to label (TinyBERT's data augmentation).

    Each word that is not a stop word is replaced, with probability --p-replace, by one of its
    --neighbours candidates: for a one-piece word the masked LM's likeliest words in its sentence
    (--mlm) or its nearest words in the teacher's input embeddings; for a longer word its nearest
    GloVe words (--glove). The original rows come first, then each row's new sentences.
    """
    config = AugmentConfig(task=task, data=data, out=out, split=split, teacher=teacher, mlm=mlm, glove=glove,
                           copies=copies, p_replace=p_replace, neighbours=neighbours, seed=seed, limit=limit,
                           batch_size=batch_size, device=device, columns=ColumnSpec(text_column, pair_column))
    config.check()
    from cache.teacher.augment import augment_file

    written = _run(config, augment_file)
    click.echo(f"{written}: the original rows, then up to {config.resolved_copies()} "
               "new sentences of each (duplicates dropped)")


precision_option = click.option(
    "--precision", type=click.Choice(PRECISIONS), default=TrainConfig.precision,
    help="auto: bfloat16 on CUDA, float32 on a CPU; bfloat16 pays on CPUs with AVX512-BF16 or AMX too.")


@cli.command("train-student")
@click.option("--cache", "cache_path", required=True, type=CACHE,
              help="Teacher cache to distil from: a folder, or a URL (s3://bucket/prefix, ...).")
@storage_options_option
@click.option("--student", default=TrainConfig.student,
              help="tinybert4, tinybert6, sizes layers=M,hidden=d,ffn=d',heads=h, a checkpoint folder (a general "
              "student: with its projections), or a run folder (its best/, else last/).")
@click.option("--stage", type=click.Choice(STAGES), default=TrainConfig.stage,
              help="intermediate: embedding+hidden+attention; prediction: logits; all: one then the other; "
              "general: the intermediate losses on a corpus cache, saving a general student (no head).")
@click.option("--out", required=True, type=LOCAL, help="Run folder (students, logs, checkpoint).")
@click.option("--layer-map", default=TrainConfig.layer_map,
              help="'uniform' (g(m) = m*N/M) or teacher layers per student layer, e.g. 2,4,6.")
@click.option("--layer-weights", default=None, callback=_parse_weights,
              help="lambda_m for m = 0..M+1, comma-separated (default: all 1).")
@click.option("--eval-data", type=click.Path(path_type=Path), default=None, help="Task data to evaluate on.")
@click.option("--eval-cache", type=CACHE, default=None,
              help="A held-out cache of the same teacher (a corpus's holdout split): the intermediate losses on it.")
@click.option("--eval-split", default=TrainConfig.eval_split)
@click.option("--epochs-intermediate", type=click.IntRange(1), default=None,
              help="Default: the paper's (20; CoLA 50; MNLI, QQP, QNLI 10); 3 for --stage general.")
@click.option("--epochs-prediction", type=click.IntRange(1), default=TrainConfig.epochs_prediction)
@click.option("--batch-size", type=click.IntRange(1), default=TrainConfig.batch_size,
              help="Examples per step; under torchrun per rank (the global batch is this times the ranks).")
@click.option("--lr-intermediate", type=POSITIVE, default=TrainConfig.lr_intermediate)
@click.option("--lr-prediction", type=POSITIVE, default=TrainConfig.lr_prediction)
@click.option("--temperature", type=POSITIVE, default=TrainConfig.temperature)
@click.option("--attention-loss", type=click.Choice(ATTENTION_KINDS), default=None,
              help="Compare scores or probabilities (default: what the cache stores).")
@click.option("--projections", type=click.Choice(PROJECTION_SHARING), default=None,
              help="W_e and one W_h (the paper), one W for all (reference code's fit_dense), or one per layer. "
              "Default: the --student folder's saved projections, else separate.")
@click.option("--fresh-projections", is_flag=True, help="Start new projections even if the --student folder has some.")
@click.option("--seed", type=int, default=TrainConfig.seed)
@click.option("--max-steps", type=click.IntRange(1), default=None, help="Stop each stage after N steps.")
@click.option("--eval-every", type=click.IntRange(1), default=None, help="Also evaluate every N steps.")
@click.option("--save-every", type=click.IntRange(1), default=TrainConfig.save_every, help="Checkpoint every N steps.")
@click.option("--log-every", type=click.IntRange(1), default=TrainConfig.log_every,
              help="Log the losses every N steps (metrics.jsonl; under torchrun, summed over the ranks).")
@click.option("--workers", type=click.IntRange(0), default=None,
              help="Reader processes (default: 0 on a CPU, where they only compete for its cores; 2 on a GPU).")
@click.option("--window-blocks", type=click.IntRange(1), default=TrainConfig.window_blocks,
              help="Blocks shuffled together (the shuffle buffer; memory grows with it).")
@click.option("--prefetch-blocks", type=click.IntRange(1), default=None,
              help="Blocks read at once, the next window read ahead (default: 1 from a folder, 8 from a URL).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--tensorboard", is_flag=True,
              help="Also write the logged scalars as TensorBoard events (--out/tensorboard).")
@click.option("--device", default=TrainConfig.device)
@precision_option
def train_student_command(cache_path, storage_options, student, stage, out, layer_map, layer_weights, eval_data,
                          eval_cache,
                          eval_split, epochs_intermediate, epochs_prediction, batch_size, lr_intermediate,
                          lr_prediction, temperature, attention_loss, projections, fresh_projections, seed, max_steps,
                          eval_every, save_every, log_every, workers, window_blocks, prefetch_blocks, resume,
                          tensorboard, device, precision):
    """Distil a TinyBERT student from a teacher cache; the teacher is never loaded.

    General distillation (--stage general, a corpus cache) gives a general student; task
    distillation (--stage all, a task cache) continues from it with --student FOLDER, which also
    loads its projections (or those of a general TinyBERT saved by the reference code).
    """
    config = TrainConfig(cache=cache_path, storage_options=storage_options, out=out, student=student, stage=stage,
                         eval_cache=eval_cache,
                         layer_map=layer_map, layer_weights=layer_weights, eval_data=eval_data, eval_split=eval_split,
                         epochs_intermediate=epochs_intermediate, epochs_prediction=epochs_prediction,
                         batch_size=batch_size, lr_intermediate=lr_intermediate, lr_prediction=lr_prediction,
                         temperature=temperature,
                         attention_loss=AttentionKind(attention_loss) if attention_loss else None,
                         projections=projections, fresh_projections=fresh_projections, seed=seed, max_steps=max_steps,
                         eval_every=eval_every, save_every=save_every, log_every=log_every, workers=workers,
                         window_blocks=window_blocks, prefetch_blocks=prefetch_blocks, resume=resume, device=device,
                         precision=precision, tensorboard=tensorboard)
    config.check()
    from student.trainer import train_student

    metrics = _run(config, train_student)
    if not _main_rank():
        return
    evaluated = "held-out losses" if stage == "general" else "dev"
    click.echo(f"{out}: student saved in {out / 'last'}" + (f"; {evaluated} {json.dumps(metrics)}" if metrics else ""))


@cli.command("init-student")
@click.option("--teacher", required=True, help="Teacher checkpoint folder whose layers the student starts from.")
@click.option("--out", required=True, type=LOCAL, help="Folder for the student checkpoint.")
@click.option("--layers", type=click.IntRange(1), default=None,
              help="Student layers M (uniform map g(m) = m*N/M); or give --layer-map.")
@click.option("--layer-map", default=InitConfig.layer_map,
              help="'uniform', or the teacher layer of each student layer, e.g. 3,6.")
@click.option("--seed", type=int, default=InitConfig.seed, help="Seeds the pooler and the classification head.")
def init_student_command(teacher, out, layers, layer_map, seed):
    """Start a student from teacher layers: embeddings and layers g(1..M) copied, the teacher's width.

    The output is an ordinary checkpoint folder for `train-student --student`, which then never
    loads the teacher.
    """
    config = InitConfig(teacher=teacher, out=out, layers=layers, layer_map=layer_map, seed=seed)
    config.check()
    from cache.teacher.init_student import init_student

    layer_map = _run(config, init_student)
    click.echo(f"{out}: student of {len(layer_map)} layers from teacher layers {','.join(map(str, layer_map))}")


@cli.command("finetune-teacher")
@click.option("--task", required=True,
              help="GLUE task, or your own data (csv, tsv, jsonl, parquet, arrow, datasets) with columns "
              "text and label.")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Folder with train.tsv (and dev.tsv).")
@click.option("--out", required=True, type=LOCAL, help="Folder for the fine-tuned teacher.")
@click.option("--base", default=None, help="Pretrained BERT folder. Default: the packaged MiniLM-L6-H384.")
@click.option("--epochs", type=click.IntRange(1), default=FinetuneConfig.epochs)
@click.option("--lr", type=POSITIVE, default=FinetuneConfig.lr)
@click.option("--batch-size", type=click.IntRange(1), default=FinetuneConfig.batch_size)
@click.option("--max-seq-len", type=click.IntRange(4, 512), default=FinetuneConfig.max_seq_len)
@click.option("--limit", type=click.IntRange(1), default=None, help="Train on the first N examples only.")
@click.option("--seed", type=int, default=FinetuneConfig.seed)
@click.option("--device", default=FinetuneConfig.device)
@precision_option
def finetune_teacher_command(task, data, out, base, epochs, lr, batch_size, max_seq_len, limit, seed, device,
                             precision):
    """Fine-tune a pretrained BERT into a task teacher with a classification head."""
    config = FinetuneConfig(task=task, data=data, out=out, base=base, epochs=epochs, lr=lr, batch_size=batch_size,
                            max_seq_len=max_seq_len, limit=limit, seed=seed, device=device,
                            precision=precision)
    config.check()
    from cache.teacher.finetune import finetune_teacher

    metrics = _run(config, finetune_teacher)
    click.echo(f"{out}: teacher saved" + (f"; dev {json.dumps(metrics)}" if metrics else ""))


@cli.command("evaluate")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A saved student or teacher folder (a training run's folder means its best/, else last/).")
@click.option("--task", required=True)
@click.option("--data", required=True, type=click.Path(path_type=Path))
@click.option("--split", default="dev")
@click.option("--max-seq-len", type=click.IntRange(4, 512), default=128)
@click.option("--json", "as_json", is_flag=True)
def evaluate_command(model, task, data, split, max_seq_len, as_json):
    """Score a saved sequence classifier with the task's GLUE metric."""
    _check_data(task, data, split)
    from cache.data.evaluate import evaluate_saved

    _quiet_transformers()
    result = evaluate_saved(model, task, data, split, max_seq_len)
    click.echo(json.dumps(result) if as_json else
               ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))


@cli.command("compare")
@click.option("--model", "models", multiple=True, required=True, callback=_parse_models,
              help="NAME=FOLDER of a saved classifier; repeat. The first is the reference (the teacher).")
@click.option("--task", required=True)
@click.option("--data", required=True, type=click.Path(path_type=Path))
@click.option("--split", default="dev")
@click.option("--max-seq-len", type=click.IntRange(4, 512), default=128)
@click.option("--cache", "cache_path", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Also report this cache's size.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--plot", type=click.Path(path_type=Path), default=None,
              help="Also draw the metric against latency (marker size: parameters) to this PNG.")
def compare_command(models, task, data, split, max_seq_len, cache_path, as_json, plot):
    """Metric, parameters, latency per example and speed-up of models side by side."""
    _check_data(task, data, split)
    from cache.read.inspect import size_line

    cache_line = size_line(cache_path) if cache_path is not None else None  # before minutes of scoring
    from student.compare import compare_models, format_rows

    _quiet_transformers()
    rows = compare_models(models, task, data, split, max_seq_len)
    if plot is not None:
        from student.show import draw_comparison

        draw_comparison(rows, plot)
    click.echo(json.dumps({"models": rows, "cache": cache_line}) if as_json else
               "\n".join([format_rows(rows), *([cache_line] if cache_line else [])]))


@cli.group("show", cls=Group)
def show_group():
    """Pictures (PNG): attention maps, training curves, what a cache holds."""


@show_group.command("attention")
@click.option("--cache", "cache_path", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--example", type=click.IntRange(0), default=0, help="Example number in the cache.")
@click.option("--student", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A student (or its run folder) to show beside the teacher.")
@click.option("--layer", type=click.IntRange(0), default=None,
              help="Student layer (teacher layer without --student); default: the last.")
@click.option("--out", required=True, type=PICTURE, help="Picture to write (.png, .pdf or .svg).")
def show_attention(cache_path, example, student, layer, out):
    """Teacher and student attention of one example, one panel per head, tokens on the axes."""
    from student.show import attention_maps, draw_attention

    _quiet_transformers()
    maps = attention_maps(cache_path, example, student, layer)
    draw_attention(maps, out)
    click.echo(f"{out}: teacher layer {maps.teacher_layer}"
               + (f", student layer {maps.student_layer}" if maps.student is not None else ""))


@show_group.command("curves")
@click.option("--run", "runs", multiple=True, required=True, type=click.Path(exists=True, file_okay=False,
                                                                            path_type=Path),
              help="A train-student run folder; repeat to overlay runs.")
@click.option("--out", required=True, type=PICTURE, help="Picture to write (.png, .pdf or .svg).")
def show_curves(runs, out):
    """Each loss component and the eval metric against step, runs overlaid."""
    from student.show import draw_curves, training_curves

    curves = training_curves(list(runs))
    draw_curves(curves, out)
    click.echo(f"{out}: {len(curves)} runs")


@show_group.command("cache")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=PICTURE, help="Picture to write (.png, .pdf or .svg).")
def show_cache(path, out):
    """Length histogram, and the bytes of each kind of target and layer."""
    from student.show import cache_contents, draw_cache

    contents = cache_contents(path)
    draw_cache(contents, out)
    megabytes = sum(contents.bytes_by_target.values()) / 1e6
    click.echo(f"{out}: {int(contents.length_counts.sum())} examples, {megabytes:,.1f} MB of targets")


@cli.group("cache", cls=Group)
def cache_group():
    """Inspect, verify and find teacher caches."""


@cache_group.command("info")
@click.argument("path", type=CACHE)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and sizes as JSON.")
@storage_options_option
def cache_info(path, as_json, storage_options):
    """Show what made a cache (a folder or a URL) and how large it is."""
    from cache.format.location import open_root
    from cache.read.inspect import cache_summary, format_summary

    summary = cache_summary(open_root(path, storage_options))
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))


@cache_group.command("verify")
@click.argument("path", type=CACHE)
@storage_options_option
def cache_verify(path, storage_options):
    """Re-read every chunk; check checksums and shapes. Exit status 1 on any problem."""
    from cache.format.location import open_root
    from cache.read.inspect import verify_cache

    problems = verify_cache(open_root(path, storage_options), progress=True)
    for problem in problems:
        click.echo(f"{path}: {problem}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo(f"{path}: OK")


@cache_group.command("ls")
@click.argument("root", type=CACHE, default=".")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@storage_options_option
def cache_ls(root, as_json, storage_options):
    """List the caches under a folder or URL prefix: teacher, data, layers, size, completeness."""
    from cache.format.location import is_url, open_root
    from cache.read.inspect import format_table, list_caches

    if not is_url(root) and not Path(root).is_dir():
        raise click.BadParameter(f"{root} is not a folder", param_hint="ROOT")
    location = open_root(root, storage_options)
    location.check_reachable("ROOT")
    rows = list_caches(location)
    click.echo(json.dumps(rows, indent=2) if as_json else format_table(rows))


if __name__ == "__main__":
    cli()
