"""Training precision on this machine: the intermediate stage from the cache in float32 and in bfloat16.

    python -m bench.precision_bench

The same TinyBERT4-shaped student, cache (real MiniLM teacher, SST-2 sentences), batches and seed,
trained with `--precision float32` and `--precision bfloat16`, alternating, in one process. Reports
examples/s, the ratio, and how far apart the two runs' logged losses are. Writes
bench/results/precision.json. Run it on the machine you train on: without AVX512-BF16 or AMX a CPU
has no native bfloat16 matrix products.
"""

import platform
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import click
import torch

from bench.common import data_option, save_result
from bench.train_bench import examples_per_s, logged_steps
from cache.data.checkpoints import default_teacher_path, quiet_transformers
from cache.teacher.dump import DumpConfig, dump_teacher
from student.trainer import TrainConfig, train_student

COMPARED = ("float32", "bfloat16")


@click.command()
@click.option("--limit", default=1000, help="First N SST-2 training sentences.")
@click.option("--steps", default=60, help="Intermediate-stage steps per run (batch 32).")
@click.option("--rounds", default=2)
@data_option
def main(limit, steps, rounds, data):
    quiet_transformers()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dump = DumpConfig(task="sst2", data=data, split="train", out=tmp / "c.zarr", teacher=default_teacher_path(),
                          limit=limit, max_seq_len=64)
        dump_teacher(dump, command="bench", progress=False)
        config = TrainConfig(cache=dump.out, out=tmp / "run", student="tinybert4", stage="intermediate",
                             max_steps=steps, epochs_intermediate=-(-steps * 32 // limit), save_every=10**9)
        rates, logged = {p: [] for p in COMPARED}, {}
        for r in range(rounds):
            for precision in COMPARED:
                out = tmp / f"{precision}{r}"
                train_student(replace(config, out=out, precision=precision), command="bench", progress=False)
                rates[precision].append(examples_per_s(out))
                logged[precision] = [step["loss"] for step in logged_steps(out)]
    median = {p: statistics.median(v) for p, v in rates.items()}
    gap = max(abs(a - b) / a for a, b in zip(logged["float32"], logged["bfloat16"], strict=True))
    result = {"machine": f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}",
              "examples_per_s": median, "bfloat16_over_float32": median["bfloat16"] / median["float32"],
              "max_relative_loss_gap": gap, "rounds": rates}
    save_result("precision", result)
    print(", ".join(f"{k} {v:.1f} ex/s" for k, v in median.items()) +
          f"; bfloat16/float32 {result['bfloat16_over_float32']:.2f}; largest relative gap between the logged "
          f"losses {gap:.3%}")


if __name__ == "__main__":
    main()
