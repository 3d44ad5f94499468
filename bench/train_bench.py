"""Training throughput: the intermediate stage fed from the cache, from RAM, and by a live teacher.

    python -m bench.train_bench                        # real MiniLM teacher
    python -m bench.train_bench --teacher-shape base   # random BERT-base-shaped teacher

The same TinyBERT4-shaped student (4 layers, d=312, d'=1200, h=12, uniform layer map), the same
batches and the same trainer code run three ways in one process, alternating: targets streamed
from the cache (what train-student does), all targets already padded in RAM (the limit), and the
teacher computing them in the loop (online distillation). Reports examples/s and the ratios;
writes bench/results/train-<teacher>-b<batch size>.json.
"""

import json
import platform
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import click
import torch

from bench.common import data_option, save_result
from bench.dump_bench import base_shaped_teacher
from bench.online import OnlineTargets
from cache.data.checkpoints import default_teacher_path, quiet_transformers
from cache.runtime.device import resolve_device
from cache.runtime.layer_map import uniform_layer_map
from cache.teacher.dump import DumpConfig, dump_teacher
from student.setup import CachedTargets
from student.stream import BatchOrder
from student.trainer import TrainConfig, train_student


class InMemoryTargets(CachedTargets):
    """Every batch of epoch 0 read from the cache and padded before training starts."""

    def __init__(self, path: Path, layers: list[int], config: TrainConfig):
        super().__init__(path, layers)
        order = BatchOrder(self.block_starts, config.batch_size, config.window_blocks, config.seed)
        self.ready = list(super().batches(order, 0, 0, 0, resolve_device(config.device), None, True))

    def batches(self, order, epoch, skip, workers, device, attention, intermediate):
        return iter(self.ready[skip:])


def logged_steps(out: Path) -> list[dict]:
    """The training steps a run logged (its evaluations left out)."""
    entries = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [e for e in entries if "examples_per_s" in e]


def examples_per_s(out: Path, batch_size: int = 32) -> float:
    """Steady-state rate: from the log entry a fifth of the way in to the last, so that starting the
    reader processes and filling the first window do not count (both are paid once per stage)."""
    logged = logged_steps(out)
    first, last = next(e for e in logged if e["step"] >= logged[-1]["step"] / 5), logged[-1]

    def elapsed(e):  # the logged rate is cumulative: examples seen so far over time so far
        return e["step"] * batch_size / e["examples_per_s"]

    return (last["step"] - first["step"]) * batch_size / (elapsed(last) - elapsed(first))


@click.command()
@click.option("--teacher-shape", type=click.Choice(["minilm", "base"]), default="minilm")
@click.option("--limit", default=1000, help="First N SST-2 training sentences.")
@click.option("--steps", default=30, help="Intermediate-stage steps per run.")
@click.option("--batch-size", default=32, help="Examples per step (a GPU student is launch-bound at 32).")
@click.option("--rounds", default=2)
@click.option("--workers", type=int, default=None, help="Reader processes of the cached run (default: the trainer's).")
@data_option
def main(teacher_shape, limit, steps, batch_size, rounds, workers, data):
    quiet_transformers()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        teacher = default_teacher_path() if teacher_shape == "minilm" else base_shaped_teacher(tmp / "teacher")
        dump = DumpConfig(task="sst2", data=data, split="train", out=tmp / "c.zarr", teacher=teacher, limit=limit,
                          max_seq_len=64)
        dump_teacher(dump, command="bench", progress=False)
        config = TrainConfig(cache=dump.out, out=tmp / "run", student="tinybert4", stage="intermediate",
                             max_steps=steps, epochs_intermediate=-(-steps * batch_size // limit), workers=workers,
                             batch_size=batch_size,
                             save_every=10**9)
        num_layers = json.loads((dump.out / "manifest.json").read_text())["teacher"]["num_layers"]
        needed = [0, *uniform_layer_map(4, num_layers)]  # what tinybert4's uniform map reads
        rates = {"cache": [], "ram": [], "online": []}
        for r in range(rounds):
            sources = {"cache": None, "ram": InMemoryTargets(dump.out, needed, config), "online": OnlineTargets(dump)}
            for name, source in sources.items():
                out = tmp / f"{name}{r}"
                train_student(replace(config, out=out), command="bench", progress=False, source=source)
                rates[name].append(examples_per_s(out, batch_size))
    median = {name: statistics.median(values) for name, values in rates.items()}
    result = {"machine": f"{platform.machine()}, torch threads {torch.get_num_threads()}", "teacher": teacher_shape,
              "batch_size": batch_size,
              "examples_per_s": median, "cache_over_ram": median["cache"] / median["ram"],
              "cache_over_online": median["cache"] / median["online"], "rounds": rates}
    save_result(f"train-{teacher_shape}-b{batch_size}", result)
    print(f"teacher {teacher_shape}, batch {batch_size}: " + ", ".join(f"{k} {v:.1f} ex/s" for k, v in median.items()) +
          f"; cache/RAM {result['cache_over_ram']:.2f}, cache/online {result['cache_over_online']:.2f}")


if __name__ == "__main__":
    main()
