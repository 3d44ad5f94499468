"""The paper's ablation on this project's data: TinyBERT4 (4 layers, d=312, d'=1200, h=12) distilled
from MiniLM teachers, with and without general distillation, augmentation and task distillation.

    python -m bench.ablation                                       # SST-2, MRPC, CoLA
    python -m bench.ablation --tasks mrpc --task-examples 200 --general-sequences 500 \\
        --general-epochs 1 --epochs-intermediate 1 --epochs-prediction 1     # a smoke run

One general student serves every task: the pre-trained MiniLM dumped once over the first
--general-sequences packed sequences of the corpus (L=128, layers 0,1,3,4,6, the TinyBERT4 map from
6 layers) and over a held-out part, then --general-epochs of general distillation. Per task, the
MiniLM fine-tuned on the first --task-examples training examples is the teacher; the same examples
are augmented (--copies new sentences each, from the MiniLM's input-embedding neighbours: no
masked LM ships here) and dumped, and four students of the same shape run the same schedule:

    full            general student, task distillation on the augmented set
    no general      random initialisation, task distillation on the augmented set
    no augmentation general student, task distillation on the original examples
    labels only     general student fine-tuned on the labels (no task distillation), for as many
                    steps as "no augmentation" takes over its two stages

Task distillation is --epochs-intermediate epochs of the intermediate losses, then
--epochs-prediction of the logits. Scores on the whole GLUE dev set; writes
bench/results/ablation.json and prints the markdown table of docs/results.md.
"""

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from bench.common import GLUE, REPO, RESULTS, save_result, timed
from cache import open_cache
from cache.data.checkpoints import quiet_transformers
from cache.data.evaluate import metric_for
from cache.data.metrics import MAIN_METRIC
from cache.teacher.augment import AugmentConfig, augment_file
from cache.teacher.config import FinetuneConfig
from cache.teacher.dump import DumpConfig, dump_teacher
from cache.teacher.finetune import finetune_teacher
from student.trainer import TrainConfig, train_student

FOLDERS = {"sst2": "SST-2", "cola": "CoLA", "mrpc": "MRPC"}
MAX_LEN = {"sst2": 64, "cola": 64, "mrpc": 128}  # the paper's: 64 single sentences, 128 pairs
LAYERS = (0, 1, 3, 4, 6)
CORPUS = REPO.parent / "shared" / "data" / "corpus"


@dataclass(frozen=True)
class Settings:
    out: Path
    general_sequences: int
    general_epochs: int
    task_examples: int
    copies: int
    epochs_intermediate: int
    epochs_prediction: int
    lr: float
    batch_size: int
    seed: int
    precision: str


def general_student(s: Settings) -> tuple[Path, dict]:
    """The general TinyBERT4 and what making it cost."""
    folder, report = s.out / "general", {}
    for split, limit in (("train", s.general_sequences), ("holdout", max(s.general_sequences // 20, 50))):
        config = DumpConfig(task="corpus", data=CORPUS, split=split, holdout=0.02, out=folder / f"{split}.zarr",
                            layers=LAYERS, limit=limit)
        _, report[f"dump_{split}_s"] = timed(dump_teacher, config, command="bench.ablation")
    manifest = open_cache(folder / "train.zarr").manifest
    report |= {"sequences": manifest.data.examples, "tokens": manifest.stats.tokens,
               "bytes_per_token": round((manifest.stats.bytes or 0) / manifest.stats.tokens)}
    config = TrainConfig(cache=folder / "train.zarr", eval_cache=folder / "holdout.zarr", out=folder / "student",
                         student="tinybert4", stage="general", epochs_intermediate=s.general_epochs,
                         lr_intermediate=s.lr, batch_size=s.batch_size, seed=s.seed, precision=s.precision,
                         eval_every=max(1, s.general_sequences * s.general_epochs // s.batch_size // 5))
    _, report["train_s"] = timed(train_student, config, command="bench.ablation")
    log = [json.loads(line) for line in (folder / "student" / "metrics.jsonl").read_text().splitlines()]
    report["held_out"] = [{"step": e["step"]} | e["eval"] for e in log if "eval" in e]
    return folder / "student" / "last", report


def task_rows(task: str, general: Path, s: Settings) -> dict:
    folder, data = s.out / task, GLUE / FOLDERS[task]
    max_len, report = MAX_LEN[task], {}
    teacher_config = FinetuneConfig(task=task, data=data, out=folder / "teacher", limit=s.task_examples,
                                    epochs=3, lr=s.lr, max_seq_len=max_len, seed=s.seed, precision=s.precision)
    report["teacher"], report["teacher_s"] = timed(finetune_teacher, teacher_config, command="bench.ablation")
    augmented, report["augment_s"] = timed(augment_file, AugmentConfig(
        task=task, data=data, out=folder / "augmented", copies=s.copies, limit=s.task_examples, seed=s.seed),
        command="bench.ablation")
    caches = {"augmented": (augmented.parent, None), "original": (data, s.task_examples)}
    for name, (source, limit) in caches.items():
        config = DumpConfig(task=task, data=source, out=folder / f"{name}.zarr", teacher=str(folder / "teacher"),
                            layers=LAYERS, max_seq_len=max_len, limit=limit)
        dumped, report[f"dump_{name}_s"] = timed(dump_teacher, config, command="bench.ablation")
        report[f"{name}_examples"] = dumped.examples
    rows = {"full": (general, "augmented"), "no general": ("tinybert4", "augmented"),
            "no augmentation": (general, "original")}
    for row, (student, cache) in rows.items():
        config = TrainConfig(cache=folder / f"{cache}.zarr", out=folder / row.replace(" ", "-"), student=str(student),
                             stage="all", epochs_intermediate=s.epochs_intermediate,
                             epochs_prediction=s.epochs_prediction, lr_intermediate=s.lr, lr_prediction=s.lr,
                             batch_size=s.batch_size, seed=s.seed, precision=s.precision, eval_data=data)
        report[row], report[f"{row}_s"] = timed(train_student, config, command="bench.ablation")
    labels = FinetuneConfig(task=task, data=data, out=folder / "labels-only", base=str(general),
                            limit=s.task_examples, epochs=s.epochs_intermediate + s.epochs_prediction, lr=s.lr,
                            batch_size=s.batch_size, max_seq_len=max_len, seed=s.seed, precision=s.precision)
    report["labels only"], report["labels only_s"] = timed(finetune_teacher, labels, command="bench.ablation")
    return report


def table(results: dict) -> str:
    rows = ["teacher", "full", "no general", "no augmentation", "labels only"]
    tasks = list(results["tasks"])
    lines = ["| row | " + " | ".join(f"{t} ({MAIN_METRIC[metric_for(t)]})" for t in tasks) + " | average |",
             "|---|" + "---|" * (len(tasks) + 1)]
    for row in rows:
        scores = [results["tasks"][t][row][MAIN_METRIC[metric_for(t)]] for t in tasks]
        lines.append(f"| {row} | " + " | ".join(f"{x:.4f}" for x in scores) + f" | {sum(scores) / len(scores):.4f} |")
    return "\n".join(lines)


@click.command()
@click.option("--tasks", default="sst2,mrpc,cola")
@click.option("--out", type=click.Path(path_type=Path), default=REPO / "runs" / "ablation")
@click.option("--general-sequences", type=int, default=20000)
@click.option("--general-epochs", type=int, default=2)
@click.option("--task-examples", type=int, default=2000)
@click.option("--copies", type=int, default=4)
@click.option("--epochs-intermediate", type=int, default=3)
@click.option("--epochs-prediction", type=int, default=3)
@click.option("--lr", type=float, default=1e-4)
@click.option("--batch-size", type=int, default=32)
@click.option("--seed", type=int, default=42)
@click.option("--precision", default="auto")
def main(tasks: str, out: Path, **options) -> None:
    quiet_transformers()
    settings = Settings(out=out, **options)
    general, report = general_student(settings)
    results = {"command": shlex.join(["python", "-m", "bench.ablation", *sys.argv[1:]]),
               "settings": {k: str(v) for k, v in vars(settings).items()}, "general": report, "tasks": {}}
    for task in tasks.split(","):
        results["tasks"][task] = task_rows(task, general, settings)
        save_result("ablation", results)
    print(table(results))
    print(f"general distillation: {json.dumps(report)}")
    print(f"results: {(RESULTS / 'ablation.json').relative_to(REPO)}")


if __name__ == "__main__":
    main()
