"""Quality: does the cache keep distillation exact? Teacher, cached student, online student, and
the same student trained on labels alone, per task. Not run in CI (hours on a CPU).

    python -m bench.quality                                  # SST-2 (all 67k), CoLA, MRPC
    python -m bench.quality --tasks mrpc --limit 500 --epochs-intermediate 2   # a smoke run

Per task: fine-tune the packaged MiniLM into a teacher; dump it; distil a TinyBERT4-shaped student
(d=312, d'=1200, h=12) with the depth the teacher calls for (MiniLM has 6 layers, so 2 layers and
g(m) = 3m, as TinyBERT4 takes 4 of BERT-base's 12) from the cache, and again online with the same
seed, data order and hyperparameters; train the same student on the labels alone; evaluate all.
Writes bench/results/quality.json and a markdown table (with the command) to
bench/results/quality.md for the README.
"""

import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import click

from bench.online import OnlineTargets
from cache.dump import DumpConfig, dump_teacher
from student.compare import compare_models
from student.evaluate import metric_for
from student.finetune import FinetuneConfig, finetune_teacher
from student.metrics import MAIN_METRIC
from student.model import build_student, parse_student
from student.trainer import TrainConfig, train_student

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"sst2": "SST-2", "cola": "CoLA", "mrpc": "MRPC"}
STUDENT = "layers=2,hidden=312,ffn=1200,heads=12"
MAX_SEQ_LEN = {"sst2": 64, "cola": 64, "mrpc": 128}  # the paper's: 64 single sentences, 128 pairs


def timed(times: dict, name: str, fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    times[name] = time.perf_counter() - started
    return result


def labels_only_student(folder: Path, task: str, data: Path, teacher: Path, config: dict) -> Path:
    """The student's shape trained on gold labels from random initialisation: the bar to clear."""
    from transformers import AutoConfig, AutoTokenizer

    init = folder / "init"
    build_student(parse_student(STUDENT), AutoConfig.from_pretrained(teacher).to_dict(), 2).save_pretrained(init)
    AutoTokenizer.from_pretrained(teacher).save_pretrained(init)
    finetune_teacher(FinetuneConfig(task=task, data=data, out=folder / "model", base=str(init),
                                    epochs=config["epochs_prediction"], lr=1e-4, limit=config["limit"],
                                    max_seq_len=config["max_seq_len"]), command="bench", progress=False)
    return folder / "model"


def run_task(task: str, data: Path, work: Path, config: dict) -> dict:
    times = {}
    teacher = work / "teacher"
    timed(times, "finetune teacher", finetune_teacher,
          FinetuneConfig(task=task, data=data, out=teacher, epochs=3, lr=config["teacher_lr"], limit=config["limit"],
                         max_seq_len=config["max_seq_len"]), command="bench", progress=False)
    dump = DumpConfig(task=task, data=data, split="train", out=work / "cache.zarr", teacher=str(teacher),
                      limit=config["limit"], max_seq_len=config["max_seq_len"])
    timed(times, "dump", dump_teacher, dump, command="bench", progress=False)
    train = TrainConfig(cache=dump.out, out=work / "cached", student=STUDENT, stage="all", eval_data=data,
                        epochs_intermediate=config["epochs_intermediate"], epochs_prediction=config["epochs_prediction"],
                        lr_intermediate=config["lr_intermediate"], lr_prediction=config["lr_prediction"], workers=1)
    timed(times, "distil from cache", train_student, train, command="bench", progress=False)
    timed(times, "distil online", train_student, replace(train, out=work / "online", workers=0), command="bench",
          progress=False, source=OnlineTargets(dump))
    labels = timed(times, "labels only", labels_only_student, work / "labels", task, data, teacher, config)
    rows = compare_models({"teacher": teacher, "cached": work / "cached" / "best", "online": work / "online" / "best",
                           "labels": labels}, task, data, "dev", config["max_seq_len"])
    key = MAIN_METRIC[metric_for(task)]
    scores = {row["model"]: row[key] for row in rows}
    return {"task": task, "metric": key, **scores, "retention": scores["cached"] / scores["teacher"],
            "cached_minus_online": scores["cached"] - scores["online"], "seconds": times,
            "speedup": rows[1]["speedup"]}


@click.command()
@click.option("--tasks", default="sst2,cola,mrpc")
@click.option("--glue", type=click.Path(path_type=Path), default=REPO.parent / "shared/data/glue")
@click.option("--work", type=click.Path(path_type=Path), default=REPO / "runs/quality")
@click.option("--limit", type=int, default=None, help="First N training examples (smoke runs).")
@click.option("--epochs-intermediate", type=int, default=None, help="Default: the paper's per task.")
@click.option("--epochs-prediction", type=int, default=3)
@click.option("--lr-intermediate", type=float, default=1e-4)
@click.option("--lr-prediction", type=float, default=1e-4)
@click.option("--teacher-lr", type=float, default=5e-5)
def main(tasks, glue, work, limit, epochs_intermediate, epochs_prediction, lr_intermediate, lr_prediction, teacher_lr):
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    results = []
    for task in tasks.split(","):
        config = {"limit": limit, "epochs_intermediate": epochs_intermediate, "epochs_prediction": epochs_prediction,
                  "lr_intermediate": lr_intermediate, "lr_prediction": lr_prediction, "teacher_lr": teacher_lr,
                  "max_seq_len": MAX_SEQ_LEN[task]}
        results.append(run_task(task, glue / FOLDERS[task], work / task, config))
        print(json.dumps(results[-1]), flush=True)
    command = shlex.join(["python", "-m", "bench.quality", *sys.argv[1:]])
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps({"command": command, "results": results}, indent=2))
    lines = [f"`{command}`", "", "| task | metric | teacher | student from cache | student online | "
             "student from labels only | retention | cache - online |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['task']} | {r['metric']} | {r['teacher']:.4f} | {r['cached']:.4f} | {r['online']:.4f} | "
              f"{r['labels']:.4f} | {r['retention']:.1%} | {r['cached_minus_online']:+.4f} |" for r in results]
    (out / "quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
