"""Compact targets in the student: general then task distillation of a TinyBERT4-shaped student
from caches in each encoding, same seed and schedule, against float16 maps. Not run in CI.

    python -m bench.encoding_quality                          # about two hours on 2 CPU cores
    python -m bench.encoding_quality --corpus-limit 300 --task-limit 300 --encodings "float16 maps,qk"  # smoke

For each encoding: the packaged MiniLM's targets over the corpus (packed, L=128) distil a general
student (by default TinyBERT4's depth at the teacher's width, initialised from 4 of its 6 layers;
`--init random`: TinyBERT4's shape, d=312, from a random start), its held-out losses
measured against exact float16 maps of held-out corpus text whatever the encoding it learnt from;
then, per task (SST-2 at L=64, MRPC at L=128), a MiniLM fine-tuned on the task (once, shared by
all encodings) is dumped in the same encoding and distils the general student further
(intermediate, then prediction), scored on the dev set. Every cache stores probabilities and
every student matches them (top-k and uint8 hold nothing else), so that the encoding is the only
difference. `--work DIR` keeps every step's output and skips the finished ones on a re-run.
Writes bench/results/encoding-quality.json.
"""

import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import click

from bench.common import GLUE, REPO, save_result
from cache.data.checkpoints import default_teacher_path, quiet_transformers
from cache.data.evaluate import evaluate_saved, metric_for
from cache.data.metrics import MAIN_METRIC
from cache.read.inspect import cache_summary
from cache.runtime.layer_map import uniform_layer_map
from cache.teacher.config import FinetuneConfig, InitConfig
from cache.teacher.dump import DumpConfig, dump_teacher
from cache.teacher.finetune import finetune_teacher
from cache.teacher.init_student import init_student
from student.trainer import TrainConfig, train_student

CORPUS = REPO.parent / "shared" / "data" / "corpus"
STUDENT = "layers=4,hidden=312,ffn=1200,heads=12"
"""TinyBERT4's shape, from a random start (`--init random`)."""
LAYERS = (0, *uniform_layer_map(4, 6))
"""What TinyBERT4's uniform map reads from the 6-layer teacher (embeddings and 4 layers): dumping
those only is what a user distilling this shape would do."""
ENCODINGS: dict[str, dict[str, Any]] = {  # name: the dump's encoding options
    "float16 maps": {"hidden_encoding": "float16", "attention_encoding": "maps"},
    "qk": {"hidden_encoding": "float16", "attention_encoding": "qk"},
    "uint8 maps": {"hidden_encoding": "float16", "attention_encoding": "uint8"},
    "int8 + qk:int8": {"hidden_encoding": "int8", "attention_encoding": "qk:int8"},
    "int8 + topk:8": {"hidden_encoding": "int8", "attention_encoding": "topk:8"},
    "fp8 + topk:4": {"hidden_encoding": "fp8", "attention_encoding": "topk:4"},
    "int8 + topk:4 + tables": {"hidden_encoding": "int8", "attention_encoding": "topk:4", "embedding_output": "tables"},
}
TASKS = {"sst2": ("SST-2", 64), "mrpc": ("MRPC", 128)}


def once(done: Path, step, *args, **kwargs):
    """Run `step` unless `done` exists (a finished step of an earlier run with the same --work)."""
    if not done.exists():
        step(*args, **kwargs)


def held_out(work: Path, limit: int) -> Path:
    """Exact targets of held-out corpus text: what every general student is measured against."""
    out = work / "corpus-holdout"
    once(out / "manifest.json", dump_teacher,
         DumpConfig(task="corpus", data=CORPUS, split="holdout", holdout=0.02, out=out, layers=LAYERS,
                    attention="probs", limit=limit), command="bench", progress=False)
    return out


def teacher(work: Path, task: str, limit: int) -> Path:
    folder, length = TASKS[task]
    out = work / f"teacher-{task}"
    once(out / "config.json", finetune_teacher,
         FinetuneConfig(task=task, data=GLUE / folder, out=out, epochs=3, lr=5e-5, limit=limit, max_seq_len=length),
         command="bench", progress=False)
    return out


def starting_student(work: Path, init: str) -> str:
    """TinyBERT4's shape from a random start, or its depth at the teacher's width initialised from
    the teacher's layers (what a short run on a CPU can distil into a working student)."""
    if init == "random":
        return STUDENT
    once(work / "init" / "config.json", init_student,
         InitConfig(teacher=str(default_teacher_path()), out=work / "init", layers=4), command="bench")
    return str(work / "init")


def general_student(work: Path, encoding: str, config: dict, holdout: Path) -> dict:
    tag = encoding.replace(" ", "").replace(":", "").replace("+", "-")
    cache, out = work / f"corpus-{tag}", work / f"general-{tag}"
    once(cache / "manifest.json", dump_teacher,
         DumpConfig(task="corpus", data=CORPUS, split="train", holdout=0.02, out=cache, layers=LAYERS,
                    attention="probs", limit=config["corpus_limit"], **ENCODINGS[encoding]),
         command="bench", progress=False)
    once(out / "last", train_student,
         TrainConfig(cache=cache, out=out, student=config["start"], stage="general", eval_cache=holdout,
                     epochs_intermediate=config["general_epochs"], lr_intermediate=config["lr"], log_every=5,
                     seed=config["seed"]), command="bench", progress=False)
    return {"bytes_per_token": cache_summary(cache)["sizes"]["bytes_per_token"], "log": _log(out)}


def task_student(work: Path, encoding: str, task: str, config: dict) -> dict:
    folder, length = TASKS[task]
    tag = encoding.replace(" ", "").replace(":", "").replace("+", "-")
    cache, out = work / f"{task}-{tag}", work / f"{task}-student-{tag}"
    once(cache / "manifest.json", dump_teacher,
         DumpConfig(task=task, data=GLUE / folder, out=cache, teacher=str(work / f"teacher-{task}"), layers=LAYERS,
                    attention="probs", limit=config["task_limit"], max_seq_len=length, **ENCODINGS[encoding]),
         command="bench", progress=False)
    once(out / "best", train_student,
         TrainConfig(cache=cache, out=out, student=str(work / f"general-{tag}" / "last"), stage="all",
                     eval_data=GLUE / folder, epochs_intermediate=config["task_epochs"],
                     epochs_prediction=config["task_epochs"], lr_intermediate=config["lr"],
                     lr_prediction=config["lr"], log_every=5, seed=config["seed"]), command="bench", progress=False)
    metrics = evaluate_saved(out / "best", task, GLUE / folder, "dev", length)
    return {"metric": MAIN_METRIC[metric_for(task)], "dev": metrics[MAIN_METRIC[metric_for(task)]],
            "bytes_per_token": cache_summary(cache)["sizes"]["bytes_per_token"], "log": _log(out)}


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@click.command()
@click.option("--encodings", default=",".join(ENCODINGS), help="Comma-separated names of ENCODINGS.")
@click.option("--corpus-limit", default=3000, help="Packed corpus sequences (L=128) for general distillation.")
@click.option("--holdout-limit", default=200, help="Held-out corpus sequences the general students are scored on.")
@click.option("--task-limit", default=4000, help="First N training examples of each task.")
@click.option("--general-epochs", default=2)
@click.option("--task-epochs", default=2, help="Epochs of each task stage (intermediate, then prediction).")
@click.option("--lr", default=1e-4)
@click.option("--seed", default=42)
@click.option("--tasks", default=",".join(TASKS), help="Comma-separated: sst2, mrpc.")
@click.option("--init", type=click.Choice(["teacher", "random"]), default="teacher",
              help="The general student's start: the teacher's layers (4 of 6, at its width) or TinyBERT4's shape "
              "at random.")
@click.option("--work", type=click.Path(path_type=Path), default=None,
              help="Keep every cache and student here; a re-run skips what is done (default: a temporary folder).")
def main(encodings, corpus_limit, holdout_limit, task_limit, general_epochs, task_epochs, lr, seed, tasks, init,
         work):
    quiet_transformers()
    config = {"corpus_limit": corpus_limit, "task_limit": task_limit, "general_epochs": general_epochs,
              "task_epochs": task_epochs, "lr": lr, "seed": seed, "init": init, "layers": LAYERS}
    tasks = tasks.split(",")
    names = encodings.split(",")
    unknown = [name for name in names if name not in ENCODINGS]
    if unknown:
        raise click.BadParameter(f"{unknown}: choose from {list(ENCODINGS)}", param_hint="--encodings")
    with tempfile.TemporaryDirectory() as tmp:
        work = work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        holdout = held_out(work, holdout_limit)
        config["start"] = starting_student(work, init)
        teachers = {task: teacher(work, task, task_limit) for task in tasks}
        results = {}
        for name in names:
            results[name] = {"general": general_student(work, name, config, holdout)}
            results[name] |= {task: task_student(work, name, task, config) for task in tasks}
            print(name, {task: round(results[name][task]["dev"], 4) for task in tasks}, flush=True)
        teacher_dev = {task: evaluate_saved(path, task, GLUE / TASKS[task][0], "dev", TASKS[task][1])
                       for task, path in teachers.items()}
    save_result("encoding-quality", {"machine": f"{platform.node()} {platform.machine()}", "config": config,
                                     "teacher": str(default_teacher_path()), "teacher_dev": teacher_dev,
                                     "students": results})
    print(f"{'encoding':<18}{'general held-out attn':>22}" + "".join(f"{task:>8}" for task in tasks))
    for name, r in results.items():
        evals = [entry["eval"] for entry in r["general"]["log"] if "eval" in entry]
        print(f"{name:<18}{evals[-1]['attn'] if evals else float('nan'):>22.5f}"
              + "".join(f"{r[task]['dev']:>8.4f}" for task in tasks))


if __name__ == "__main__":
    main()
