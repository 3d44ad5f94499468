"""tinybert-distill command line: parse flags into one config object and call the library.

Each option of a command with a config is declared once, beside the config field it sets, its
help the field's docstring (`cache.runtime.options`).

torch and transformers are imported only once a command's cheap checks have passed, so `--help`
and a mistyped path answer at once.
"""

import errno
import json
import os
import shlex
import sys
from pathlib import Path

import click

from cache.runtime.options import CACHE, LocalPath, from_flags, options, parse_storage_options
from cache.teacher.config import AugmentConfig, DumpConfig, FinetuneConfig, InitConfig
from student.config import ExportConfig, TrainConfig

PICTURE = LocalPath((".png", ".pdf", ".svg"))
storage_options_option = click.option(
    "--storage-options", callback=parse_storage_options, default=None, metavar="JSON",
    help="For a URL cache: a JSON object of fsspec options beyond the environment's (AWS_ENDPOINT_URL, "
    "AWS_PROFILE, ...).")


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


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def cli():
    """Distil encoder teachers into small students (TinyBERT or MiniLMv2); the teacher runs once, into a cache."""


@cli.command("dump-teacher")
@options(DumpConfig)
def dump_teacher_command(**flags):
    """Run the teacher once over a data set and store its targets in a cache.

    Stores the embedding output, hidden states and attention of the chosen layers (real tokens
    only) and the logits when the teacher has a classification head (not for a corpus: general
    distillation uses no logits). Re-run the same command to resume an interrupted dump.
    """
    config = from_flags(DumpConfig, flags)
    config.check()
    if config.estimate:
        from cache.teacher.estimate import estimate_dump, format_estimate

        _quiet_transformers()
        estimate = estimate_dump(config)
        click.echo(json.dumps(estimate.to_json(), indent=2) if config.as_json else format_estimate(estimate))
        return
    from cache.teacher.dump import dump_teacher

    report = _run(config, dump_teacher)
    if not _main_rank():
        return
    if report.stale_lock:
        click.echo(f"note: took over the lock of a writer that died (pid {report.stale_lock.get('pid')}: "
                   f"{report.stale_lock.get('command')})", err=True)
    if report.written_examples == 0:
        click.echo(f"{config.out}: cache is already complete ({report.examples} examples); nothing to do")
        return
    click.echo(f"{config.out}: wrote {report.written_examples} of {report.examples} examples in "
               f"{report.seconds:.1f} s ({report.written_examples / report.seconds:.1f} examples/s); "
               f"{report.truncated} truncated at {config.max_seq_len} tokens")


@cli.command("augment")
@options(AugmentConfig)
def augment_command(**flags):
    """Write an augmented copy of a training set for the teacher to label (TinyBERT's data augmentation).

    Each word that is not a stop word is replaced, with probability --p-replace, by one of its
    --neighbours candidates: for a one-piece word the masked LM's likeliest words in its sentence
    (--mlm) or its nearest words in the teacher's input embeddings; for a longer word its nearest
    GloVe words (--glove). The original rows come first, then each row's new sentences.
    """
    config = from_flags(AugmentConfig, flags)
    config.check()
    from cache.teacher.augment import augment_file

    written = _run(config, augment_file)
    click.echo(f"{written}: the original rows, then up to {config.resolved_copies()} "
               "new sentences of each (duplicates dropped)")


@cli.command("train-student")
@options(TrainConfig)
def train_student_command(**flags):
    """Distil a TinyBERT student from a teacher cache; the teacher is never loaded.

    General distillation (--stage general, a corpus cache) gives a general student; task
    distillation (--stage all, a task cache) continues from it with --student FOLDER, which also
    loads its projections (or those of a general TinyBERT saved by the reference code).
    """
    config = from_flags(TrainConfig, flags)
    config.check()
    from student.trainer import train_student

    metrics = _run(config, train_student)
    if not _main_rank():
        return
    evaluated = "held-out losses" if config.stage == "general" else "dev"
    click.echo(f"{config.out}: student saved in {config.out / 'last'}"
               + (f"; {evaluated} {json.dumps(metrics)}" if metrics else ""))


@cli.command("init-student")
@options(InitConfig)
def init_student_command(**flags):
    """Start a student from teacher layers: embeddings and layers g(1..M) copied, the teacher's width.

    The output is an ordinary checkpoint folder for `train-student --student`, which then never
    loads the teacher.
    """
    config = from_flags(InitConfig, flags)
    config.check()
    from cache.teacher.init_student import init_student

    layer_map = _run(config, init_student)
    click.echo(f"{config.out}: student of {len(layer_map)} layers from teacher layers {','.join(map(str, layer_map))}")


@cli.command("finetune-teacher")
@options(FinetuneConfig)
def finetune_teacher_command(**flags):
    """Fine-tune a pretrained BERT into a task teacher with a classification head."""
    config = from_flags(FinetuneConfig, flags)
    config.check()
    from cache.teacher.finetune import finetune_teacher

    metrics = _run(config, finetune_teacher)
    click.echo(f"{config.out}: teacher saved" + (f"; dev {json.dumps(metrics)}" if metrics else ""))


@cli.command("export")
@options(ExportConfig)
def export_command(**flags):
    """Write a student (or any saved model) as it is served: ONNX (int8 too) or a sentence-transformers embedder.

    The export is checked against PyTorch on real sentences before it is put in place, and the
    differences it measured are printed. `evaluate` and `compare` take ONNX exports as they take
    PyTorch folders.
    """
    config = from_flags(ExportConfig, flags)
    config.check()
    from student.export import export_model, format_report

    click.echo(format_report(_run(config, export_model)))


def _embedding_sentences(command):
    """The options that choose the sentences embedders are scored on (`evaluate` and `compare`)."""
    options = [
        click.option("--embeddings", is_flag=True, help="Score embedders without labels: their agreement with a "
                     "teacher over the data's sentences (a corpus's held-out split, or a task split's texts)."),
        click.option("--limit", type=click.IntRange(2), default=2000, help="--embeddings: sentences to embed."),
        click.option("--holdout", type=click.FloatRange(0, 1, max_open=True), default=0.02,
                     help="--embeddings on a corpus: the fraction of documents the dump held out."),
        click.option("--documents", type=click.Choice(["blank-lines", "file"]), default="file",
                     help="--embeddings on a corpus: what one document is, as the dump read it."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _sentences(task: str, data: Path, split: str, limit: int, holdout: float, documents: str, teacher: Path):
    from cache.data.checkpoints import load_tokenizer
    from student.embedder import agreement_sentences

    _quiet_transformers()
    return agreement_sentences(task, data, split, limit, holdout, documents, load_tokenizer(teacher, "--teacher"))


@cli.command("evaluate")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A saved student or teacher folder (a training run's folder means its best/, else last/), an "
              "ONNX export of one, or with --embeddings a sentence-transformers export.")
@click.option("--task", required=True, help="A task (its split's texts), or corpus with --embeddings.")
@click.option("--data", required=True, type=click.Path(path_type=Path))
@click.option("--split", default="dev", help="Of a task; of a corpus: holdout (or train).")
@click.option("--max-seq-len", type=click.IntRange(4, 512), default=128)
@_embedding_sentences
@click.option("--teacher", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="--embeddings: the teacher whose vectors the student's are compared with (default: the "
              "packaged MiniLM).")
@click.option("--json", "as_json", is_flag=True)
def evaluate_command(model, task, data, split, max_seq_len, embeddings, limit, holdout, documents, teacher, as_json):
    """Score a saved sequence classifier with the task's GLUE metric, or an embedder against its teacher.

    With --embeddings: over sentences neither model was trained on (a corpus's held-out split, or a
    task's dev sentences), the Spearman correlation between the two models' cosine similarities of
    sentence pairs, the mean cosine between their vectors of each sentence, and how many of the
    teacher's 10 nearest sentences a student query finds in the teacher's vectors.
    """
    if embeddings:
        from dataclasses import asdict

        from cache.data.checkpoints import default_teacher_path
        from student.embedder import embedding_agreement

        teacher = teacher or Path(default_teacher_path())
        sentences = _sentences(task, data, split, limit, holdout, documents, teacher)
        agreement = embedding_agreement(model, teacher, sentences)
        result = {"model": str(model), "teacher": str(teacher), **asdict(agreement)}
    else:
        _check_data(task, data, split)
        from cache.data.evaluate import evaluate_saved

        _quiet_transformers()
        result = evaluate_saved(model, task, data, split, max_seq_len)
    click.echo(json.dumps(result) if as_json else
               ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))


@cli.command("compare")
@click.option("--model", "models", multiple=True, required=True, callback=_parse_models,
              help="NAME=FOLDER of a saved classifier (PyTorch, or an ONNX export), or with --embeddings of an "
              "embedder (a sentence-transformers folder, or a student); repeat. The first is the reference (the "
              "teacher).")
@click.option("--task", required=True)
@click.option("--data", required=True, type=click.Path(path_type=Path))
@click.option("--split", default="dev")
@click.option("--max-seq-len", type=click.IntRange(4, 512), default=128)
@_embedding_sentences
@click.option("--cache", "cache_path", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Also report this cache's size.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--plot", type=click.Path(path_type=Path), default=None,
              help="Also draw the metric against latency (marker size: parameters) to this PNG.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Threads of PyTorch and ONNX Runtime while timing (default: torch's, one per core).")
def compare_command(models, task, data, split, max_seq_len, embeddings, limit, holdout, documents, cache_path,
                    as_json, plot, threads):
    """Metric, retention, size on disk, latency per example at batch 1 and 32, and speed-up of models side by side.

    With --embeddings: each embedder's agreement with the first over the data's sentences (as
    `evaluate --embeddings`), its size, and sentences encoded per second at batch 32 in PyTorch and,
    where the folder has its ONNX encoder (`export --onnx`), in ONNX Runtime.
    """
    if plot is not None and embeddings:
        raise click.UsageError("--plot draws classifiers; leave it out with --embeddings")
    if not embeddings:
        _check_data(task, data, split)
    from cache.read.inspect import size_line

    cache_line = size_line(cache_path) if cache_path is not None else None  # before minutes of scoring
    from student.compare import compare_embedders, compare_models, format_embedder_rows, format_rows

    _quiet_transformers()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if embeddings:
        sentences = _sentences(task, data, split, limit, holdout, documents, next(iter(models.values())))
        rows, table = compare_embedders(models, sentences, progress=not as_json), format_embedder_rows
    else:
        rows, table = compare_models(models, task, data, split, max_seq_len, progress=not as_json), format_rows
    if plot is not None:
        from student.show import draw_comparison

        draw_comparison(rows, plot)
    click.echo(json.dumps({"models": rows, "cache": cache_line}) if as_json else
               "\n".join([table(rows), *([cache_line] if cache_line else [])]))


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
