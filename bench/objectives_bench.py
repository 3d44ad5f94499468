"""TinyBERT's layer losses against MiniLMv2's self-attention relations for general distillation.

One corpus slice (the shared corpus, each file one document, 128-token sequences) is dumped twice
from the packaged MiniLM: the layers TinyBERT4 reads (0, 1, 3, 4, 6) in the smallest exact
encoding (`auto`), and the last layer's queries, keys and values (`qkv`, with that layer's hidden
state) for MiniLMv2. Each student shape, TinyBERT4 (4 x 312, 12 heads; layer map 1, 3, 4, 6) and
3 x 384 with 6 heads (3, 4, 6), is distilled from each cache with the same steps, batch and learning
rate; then every general student,
a randomly initialised one of each shape and the teacher itself are fine-tuned on the gold labels
of SST-2, MRPC and CoLA slices (MiniLMv2's protocol) and scored on their dev sets. Last, the general
student with the best mean score is task-distilled as `make recipe` does (TinyBERT's layer losses,
then the logits, from the fine-tuned teacher's cache of the same slice; no augmentation).

    python -m bench.objectives_bench                  # 4,000 sequences, 2 epochs, 2,000 examples per task
    python -m bench.objectives_bench --sequences 4000 --epochs 2 --task-examples 2000 --threads 2

Reports each cache's bytes per token, the dump and training wall times, and every dev score.
torch runs on --threads threads (pinned: its default of one per core collapses when another busy
process shares them). Writes bench/results/objectives.json.
"""

import platform
import tempfile
from pathlib import Path

import click
import torch

from bench.common import GLUE, REPO, save_result, timed
from cache import open_cache
from cache.data.checkpoints import default_teacher_path, quiet_transformers
from cache.data.evaluate import metric_for
from cache.data.metrics import MAIN_METRIC
from cache.read.inspect import cache_summary
from cache.teacher.dump import DumpConfig, dump_teacher
from cache.teacher.finetune import FinetuneConfig, finetune_teacher
from student.config import StudentShape, TrainConfig
from student.model import build_student
from student.trainer import train_student

CORPUS = REPO.parent / "shared" / "data" / "corpus"
SHAPES = {"tinybert4 (4x312, h12)": StudentShape(4, 312, 1200, 12), "3x384, h6": StudentShape(3, 384, 1536, 6)}
LAYER_MAPS = {4: "uniform", 3: "3,4,6"}
"""TinyBERT's layer map of each shape, within the layers its cache stores (uniform: 1, 3, 4, 6)."""
CACHES = {"tinybert": {"layers": (0, 1, 3, 4, 6), "attention_encoding": "auto", "embedding_output": "auto"},
          "minilmv2": {"layers": (6,), "attention_encoding": "qkv"}}
TASKS = {"sst2": ("SST-2", 64), "mrpc": ("MRPC", 128), "cola": ("CoLA", 64)}


def general_students(work: Path, sequences: int, epochs: int, lr: float) -> tuple[dict, dict[str, Path]]:
    """Both caches, and every shape distilled from each: (figures, student folders by name)."""
    figures: dict = {"caches": {}, "training": {}}
    folders = {}
    for objective, options in CACHES.items():
        cache = work / f"{objective}.zarr"
        _, seconds = timed(dump_teacher, DumpConfig(task="corpus", data=CORPUS, documents="file", holdout=0.02,
                                                    limit=sequences, out=cache, **options),
                           command="bench", progress=False)
        sizes = cache_summary(cache)["sizes"]
        figures["caches"][objective] = {"dump_seconds": seconds, "bytes_per_token": sizes["bytes_per_token"],
                                        "encoding": str(open_cache(cache).manifest.attention_encoding)}
        for shape_name, shape in SHAPES.items():
            out = work / f"{objective}-{shape.layers}x{shape.hidden}"
            config = TrainConfig(cache=cache, out=out, stage="general", objective=objective,
                                 student=f"layers={shape.layers},hidden={shape.hidden},ffn={shape.ffn},"
                                         f"heads={shape.heads}",
                                 layer_map=LAYER_MAPS[shape.layers] if objective == "tinybert" else "uniform",
                                 epochs_intermediate=epochs, lr_intermediate=lr, batch_size=32, workers=0)
            _, seconds = timed(train_student, config, command="bench", progress=False)
            figures["training"][f"{objective}, {shape_name}"] = {"seconds": seconds}
            folders[f"{objective}, {shape_name}"] = out / "last"
    return figures, folders


def random_students(work: Path, cache: Path) -> dict[str, Path]:
    """A randomly initialised student of each shape, saved as a checkpoint with the teacher's tokenizer."""
    manifest = open_cache(cache).manifest
    folders = {}
    for shape_name, shape in SHAPES.items():
        torch.manual_seed(0)
        folder = work / f"random-{shape.layers}x{shape.hidden}"
        build_student(shape, manifest.teacher.config, 2, head=False).save_pretrained(folder)
        open_cache(cache).load_tokenizer().save_pretrained(folder)
        folders[f"random, {shape_name}"] = folder
    return folders


def fine_tuned_scores(work: Path, models: dict[str, Path | str], examples: int) -> dict[str, dict[str, float]]:
    """Each model fine-tuned on each task's gold labels; its main dev metric after the last epoch."""
    scores: dict[str, dict[str, float]] = {}
    for name, base in models.items():
        for task, (folder, length) in TASKS.items():
            out = work / "tuned" / f"{name.split(' (')[0].replace(', ', '-')}-{task}"
            metrics = finetune_teacher(FinetuneConfig(task=task, data=GLUE / folder, out=out, base=str(base),
                                                      limit=examples, epochs=3, lr=1e-4, max_seq_len=length),
                                       command="bench", progress=False)
            scores.setdefault(name, {})[task] = metrics[MAIN_METRIC[metric_for(task)]]
            print(f"{name} {task}: {scores[name][task]:.4f}", flush=True)
    return scores


def task_distilled_scores(work: Path, name: str, general: Path, examples: int, epochs: int,
                          lr: float) -> dict[str, float]:
    """`general` distilled on each task from the teacher fine-tuned there: its main dev metric."""
    shape = next(shape for shape_name, shape in SHAPES.items() if name.endswith(shape_name))
    scores = {}
    for task, (folder, length) in TASKS.items():
        teacher = work / "tuned" / f"teacher-{task}"
        cache = work / f"task-{task}.zarr"
        dump_teacher(DumpConfig(task=task, data=GLUE / folder, teacher=str(teacher), limit=examples,
                                layers=CACHES["tinybert"]["layers"], max_seq_len=length, out=cache),
                     command="bench", progress=False)
        config = TrainConfig(cache=cache, out=work / f"distilled-{task}", student=str(general), stage="all",
                             layer_map=LAYER_MAPS[shape.layers], epochs_intermediate=epochs,
                             epochs_prediction=3, lr_intermediate=lr, lr_prediction=lr,
                             eval_data=GLUE / folder, batch_size=32, workers=0)
        metrics = train_student(config, command="bench", progress=False)
        scores[task] = metrics[MAIN_METRIC[metric_for(task)]]
        print(f"task-distilled {name} {task}: {scores[task]:.4f}", flush=True)
    return scores


@click.command()
@click.option("--sequences", default=4000, help="Packed corpus sequences of 128 tokens in each cache.")
@click.option("--epochs", default=2, help="Epochs of general distillation (the same steps for both objectives).")
@click.option("--lr", default=1e-4, help="Peak learning rate of general distillation, both objectives.")
@click.option("--task-examples", default=2000, help="Training examples of each task's fine-tuning.")
@click.option("--threads", default=2, help="torch threads (pinned).")
def main(sequences, epochs, lr, task_examples, threads):
    quiet_transformers()
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        figures, folders = general_students(work, sequences, epochs, lr)
        models = {"teacher": default_teacher_path(), **folders,
                  **random_students(work, work / "tinybert.zarr")}
        figures["scores"] = fine_tuned_scores(work, models, task_examples)
        best = max(folders, key=lambda name: sum(figures["scores"][name].values()))
        figures["task_distilled"] = {best: task_distilled_scores(work, best, folders[best], task_examples,
                                                                 epochs, lr)}
    save_result("objectives", {"machine": f"{platform.node()} {platform.machine()}, torch threads {threads}",
                               "sequences": sequences, "epochs": epochs, "lr": lr, "task_examples": task_examples,
                               **figures})


if __name__ == "__main__":
    main()
