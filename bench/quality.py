"""Quality: does the cache keep distillation exact? Teacher, cached student, online student, and
the same student trained on labels alone, per task. Not run in CI (hours on a CPU).

    python -m bench.quality                                  # SST-2 (all 67k), CoLA, MRPC
    python -m bench.quality --tasks mrpc --limit 500 --epochs-intermediate 2   # a smoke run
    python -m bench.quality --tasks sst2 --augment 4 --epochs-intermediate 1 --epochs-prediction 1

Per task: fine-tune a pretrained BERT (default: the packaged MiniLM) into a teacher; dump it; distil
the student from the cache, and again online with the same seed, data order and hyperparameters;
train the same student (same shape, same initialisation) on the labels alone; evaluate all.

The default student is TinyBERT4's size for this teacher: 2 layers (g(m) = 3m, as TinyBERT4 takes 4
of BERT-base's 12) at the teacher's width, initialised from teacher layers 3 and 6, which is 15.3M
parameters against TinyBERT4's 14.5M. The paper's d=312 student starts from general distillation on
a large corpus, which this project cannot run offline; `--student tinybert4-shape --init random`
runs that shape from scratch. `--concurrent` runs the three students side by side (one GPU runs
launch-bound students well in parallel). Writes quality.json and a markdown table (with the command)
to `--results` for the README.
"""

import json
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import click

from bench.common import GLUE, REPO, RESULTS, seconds
from bench.online import OnlineTargets
from cache.data.checkpoints import quiet_transformers
from cache.data.evaluate import metric_for
from cache.data.metrics import MAIN_METRIC
from cache.runtime.layer_map import uniform_layer_map
from cache.runtime.precision import PRECISIONS
from cache.teacher.augment import AugmentConfig, augment_file
from cache.teacher.config import FinetuneConfig, InitConfig
from cache.teacher.dump import DumpConfig, dump_teacher
from cache.teacher.finetune import finetune_teacher
from cache.teacher.init_student import init_student
from student.compare import compare_models
from student.config import parse_student
from student.model import build_student
from student.trainer import TrainConfig, train_student

FOLDERS = {"sst2": "SST-2", "cola": "CoLA", "mrpc": "MRPC"}
STUDENTS = {"tinybert4-size": "layers=2,hidden=384,ffn=1536,heads=12",  # for the MiniLM teacher
            "tinybert4-shape": "layers=2,hidden=312,ffn=1200,heads=12"}
MAX_SEQ_LEN = {"sst2": 64, "cola": 64, "mrpc": 128}  # the paper's: 64 single sentences, 128 pairs



def distil(train: TrainConfig, online_from: DumpConfig | None) -> float:
    """One student from the cache, or online when given the dump's config (runs in a worker process)."""
    source = OnlineTargets(online_from) if online_from else None
    return seconds(train_student, train, command="bench", progress=False, source=source)


def starting_student(work: Path, teacher: Path, config: dict) -> str:
    """What `--student` gets: a checkpoint initialised from teacher layers (`init-student`), or a shape."""
    if config["init"] != "teacher":
        return config["student"]
    from transformers import AutoConfig

    if parse_student(config["student"]).hidden != AutoConfig.from_pretrained(teacher).hidden_size:
        raise click.UsageError("--init teacher needs a student of the teacher's width")
    init_student(InitConfig(teacher=str(teacher), out=work / "init", layers=parse_student(config["student"]).layers),
                 command="bench")
    return str(work / "init")


def labels_only(folder: Path, task: str, data: Path, teacher: Path, student: str, config: dict) -> float:
    """The student's shape and initialisation trained on gold labels alone: the bar to clear."""
    from transformers import AutoConfig, AutoTokenizer

    started = time.perf_counter()
    base = student
    if not Path(student).is_dir():  # a shape: a random student of the teacher's vocabulary
        base, teacher_config = str(folder / "init"), AutoConfig.from_pretrained(teacher)
        build_student(parse_student(student), teacher_config.to_dict(), teacher_config.num_labels).save_pretrained(base)
        AutoTokenizer.from_pretrained(teacher).save_pretrained(base)
    finetune_teacher(FinetuneConfig(task=task, data=data, out=folder / "model", base=base,
                                    epochs=config["epochs_prediction"], lr=config["lr_prediction"],
                                    limit=config["limit"], max_seq_len=config["max_seq_len"],
                                    precision=config["precision"]),
                     command="bench", progress=False)
    return time.perf_counter() - started


def student_layers(student: str, teacher: Path) -> tuple[int, ...]:
    """The teacher layers the student's uniform layer map reads (0 = embeddings): all an augmented
    cache needs to hold, at a fraction of the size of every layer."""
    from transformers import AutoConfig

    depth = AutoConfig.from_pretrained(teacher).num_hidden_layers
    return (0, *uniform_layer_map(parse_student(student).layers, depth))


def run_task(task: str, data: Path, work: Path, config: dict) -> dict:
    times = {}
    teacher = work / "teacher"
    times["finetune teacher"] = seconds(
        finetune_teacher, FinetuneConfig(task=task, data=data, out=teacher, base=config["base"], epochs=3,
                                         lr=config["teacher_lr"], limit=config["limit"],
                                         max_seq_len=config["max_seq_len"], precision=config["precision"]),
        command="bench", progress=False)
    dump = DumpConfig(task=task, data=data, split="train", out=work / "cache.zarr", teacher=str(teacher),
                      limit=config["limit"], max_seq_len=config["max_seq_len"])
    if config["augment"]:
        augmented = AugmentConfig(task=task, data=data, out=work / "augmented", teacher=config["base"],
                                  copies=config["augment"])
        times["augment"] = seconds(augment_file, augmented, command="bench", progress=False)
        dump = replace(dump, data=augmented.out, layers=student_layers(config["student"], teacher))
    times["dump"] = seconds(dump_teacher, dump, command="bench", progress=False)
    student = starting_student(work, teacher, config)
    train = TrainConfig(cache=dump.out, out=work / "cached", student=student,
                        stage="all", eval_data=data, epochs_intermediate=config["epochs_intermediate"],
                        epochs_prediction=config["epochs_prediction"], lr_intermediate=config["lr_intermediate"],
                        lr_prediction=config["lr_prediction"], workers=config["workers"],
                        precision=config["precision"])
    jobs = {"distil from cache": (distil, train, None),
            "distil online": (distil, replace(train, out=work / "online", workers=0), dump),
            "labels only": (labels_only, work / "labels", task, data, teacher, student, config)}
    with ProcessPoolExecutor(len(jobs) if config["concurrent"] else 1, mp_context=get_context("spawn"),
                             initializer=quiet_transformers) as pool:
        futures = {name: pool.submit(*job) for name, job in jobs.items()}
        times |= {name: future.result() for name, future in futures.items()}
    rows = compare_models({"teacher": teacher, "cached": work / "cached" / "best", "online": work / "online" / "best",
                           "labels": work / "labels" / "model"}, task, data, "dev", config["max_seq_len"])
    key = MAIN_METRIC[metric_for(task)]
    scores = {row["model"]: row[key] for row in rows}
    return {"task": task, "metric": key, **scores, "retention": scores["cached"] / scores["teacher"],
            "cached_minus_online": scores["cached"] - scores["online"], "seconds": times,
            "concurrent": config["concurrent"], "precision": config["precision"], "augment": config["augment"],
            "speedup": rows[1]["speedup"]}


@click.command()
@click.option("--tasks", default="sst2,cola,mrpc")
@click.option("--glue", type=click.Path(path_type=Path), default=GLUE)
@click.option("--work", type=click.Path(path_type=Path), default=REPO / "runs/quality")
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS)
@click.option("--base", default=None, help="Pretrained BERT to fine-tune into the teacher (default: packaged MiniLM).")
@click.option("--student", type=click.Choice(list(STUDENTS)), default="tinybert4-size")
@click.option("--init", type=click.Choice(["teacher", "random"]), default="teacher")
@click.option("--limit", type=int, default=None, help="First N training examples (smoke runs).")
@click.option("--epochs-intermediate", type=int, default=None, help="Default: the paper's per task.")
@click.option("--epochs-prediction", type=int, default=3)
@click.option("--lr-intermediate", type=float, default=1e-4)
@click.option("--lr-prediction", type=float, default=1e-4)
@click.option("--teacher-lr", type=float, default=5e-5)
@click.option("--workers", type=int, default=None,
              help="Reader processes of the cached student (default: the trainer's).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto",
              help="Of every training run (the teacher's forward for the cache and online stays float32).")
@click.option("--concurrent", is_flag=True, help="Train the three students side by side.")
@click.option("--augment", type=click.IntRange(0), default=0,
              help="Distil on the training set plus N augmented copies of each example (cache.teacher.augment; the "
              "cache then holds only the student's layers). The labels-only student keeps the original set.")
def main(tasks, glue, work, results, base, student, init, limit, epochs_intermediate, epochs_prediction,
         lr_intermediate, lr_prediction, teacher_lr, workers, precision, concurrent, augment):
    if augment and limit:
        raise click.BadParameter("augments the whole training set; use it without --limit", param_hint="--augment")
    quiet_transformers()
    rows = []
    for task in tasks.split(","):
        config = {"base": base, "student": STUDENTS[student], "init": init, "limit": limit,
                  "epochs_intermediate": epochs_intermediate, "epochs_prediction": epochs_prediction,
                  "lr_intermediate": lr_intermediate, "lr_prediction": lr_prediction, "teacher_lr": teacher_lr,
                  "max_seq_len": MAX_SEQ_LEN[task], "workers": workers, "precision": precision,
                  "concurrent": concurrent, "augment": augment}
        rows.append(run_task(task, glue / FOLDERS[task], work / task, config))
        print(json.dumps(rows[-1]), flush=True)
    write_results(results, shlex.join(["python", "-m", "bench.quality", *sys.argv[1:]]), rows)


def write_results(folder: Path, command: str, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "quality.json").write_text(json.dumps({"command": command, "results": rows}, indent=2))
    header = ("| task | metric | teacher | student from cache | student online | student from labels only | "
              "retention | cache - online |")
    lines = [f"`{command}`", "", header, "|---" * 8 + "|"]
    lines += [f"| {r['task']} | {r['metric']} | {r['teacher']:.4f} | {r['cached']:.4f} | {r['online']:.4f} | "
              f"{r['labels']:.4f} | {r['retention']:.1%} | {r['cached_minus_online']:+.4f} |" for r in rows]
    lines += ["", "| task | " + " | ".join(rows[0]["seconds"]) + " |", "|---" * (len(rows[0]["seconds"]) + 1) + "|"]
    lines += [f"| {r['task']} | " + " | ".join(f"{v:.0f} s" for v in r["seconds"].values()) + " |" for r in rows]
    (folder / "quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
