"""One rank against K ranks (torchrun) for the dump and for training, on the same cores.

Each round launches, alternately, `python cli.py ...` and `torchrun --nproc-per-node K cli.py ...`
for the same dump (the real MiniLM over SST-2) and the same training run (a TinyBERT4 student on
that cache, the same global batch), and checks that both dumps give the same cache. It reports
whole-command wall times (start-up included, as a user sees them) and the rates the commands
report themselves (the dump's examples/s; training's examples/s over its last logged step).
Threads are split evenly: the one process gets every core, each of the K ranks its share, so the
figures are the coordination overhead and the speed-up the cores allow, not more hardware.
Reproduce:

    python -m bench.distributed_bench                       # 2 ranks, 2000 sentences, 3 rounds
    python -m bench.distributed_bench --ranks 4 --limit 8000

Writes bench/results/distributed.json.
"""

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import numpy as np

from bench.common import REPO, data_option, save_result, timed
from cache import open_cache


def cli(args: list, ranks: int, threads: int) -> tuple[str, float]:
    """(stdout, wall seconds) of one command, as one process or as a torchrun job."""
    launcher = [sys.executable] if ranks == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    done, wall = timed(subprocess.run, [*launcher, str(REPO / "cli.py"), *map(str, args)], cwd=REPO, env=env,
                       capture_output=True, text=True, check=False)
    if done.returncode:
        raise click.ClickException(f"{' '.join(map(str, args[:1]))} failed with {ranks} ranks:\n{done.stderr[-2000:]}")
    return done.stdout, wall


def same_targets(a: Path, b: Path) -> bool:
    left, right = open_cache(a), open_cache(b)
    return len(left) == len(right) and all(
        all(np.array_equal(x.targets[name][6], y.targets[name][6]) for name in ("hidden", "attention"))
        for x, y in zip(left.iter_blocks(), right.iter_blocks(), strict=True))


def dump_rate(stdout: str) -> float:
    return float(re.search(r"\(([\d.]+) examples/s\)", stdout).group(1))  # type: ignore[union-attr]


def train_rate(run: Path) -> float:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [entry["examples_per_s"] for entry in map(json.loads, lines) if "examples_per_s" in entry][-1]


@click.command()
@data_option
@click.option("--ranks", type=click.IntRange(2), default=2)
@click.option("--limit", type=click.IntRange(1), default=2000, help="SST-2 sentences to dump.")
@click.option("--batch-size", type=click.IntRange(1), default=32, help="Global training batch.")
@click.option("--steps", type=click.IntRange(1), default=40, help="Training steps per run.")
@click.option("--rounds", type=click.IntRange(1), default=3)
def main(data, ranks, limit, batch_size, steps, rounds):
    cores = len(os.sched_getaffinity(0))
    work = Path(tempfile.mkdtemp(prefix="distributed-bench-"))
    dump = ["dump-teacher", "--task", "sst2", "--data", data, "--limit", limit, "--block-mb", 4, "--device", "cpu"]
    train = ["train-student", "--student", "tinybert4", "--stage", "intermediate", "--max-steps", steps,
             "--log-every", 1, "--save-every", 10**6, "--workers", 0, "--device", "cpu"]
    names = ("dump 1", f"dump {ranks}", "train 1", f"train {ranks}")
    times: dict[str, list[float]] = {name: [] for name in names}
    rates: dict[str, list[float]] = {name: [] for name in names}
    same_cache = True
    try:
        for r in range(rounds):
            for k in (1, ranks):
                cache, run = work / f"cache-{k}", work / f"run-{k}"
                shutil.rmtree(cache, ignore_errors=True), shutil.rmtree(run, ignore_errors=True)
                stdout, wall = cli([*dump, "--out", cache], k, max(cores // k, 1))
                times[f"dump {k}"].append(wall), rates[f"dump {k}"].append(dump_rate(stdout))
                per_rank = ["--batch-size", batch_size // k]  # the same global batch
                _, wall = cli([*train, "--cache", cache, "--out", run, *per_rank], k, max(cores // k, 1))
                times[f"train {k}"].append(wall), rates[f"train {k}"].append(train_rate(run))
            same_cache &= same_targets(work / "cache-1", work / f"cache-{ranks}")
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: statistics.median(v) for k, v in rates.items()}
    result = {
        "machine": {"cpu_cores": cores, "platform": platform.platform()},
        "setup": {"ranks": ranks, "sentences": limit, "global_batch": batch_size, "steps": steps, "rounds": rounds},
        "seconds": times, "examples_per_s": rates,
        "wall_speedup": {"dump": median["dump 1"] / median[f"dump {ranks}"],
                         "train": median["train 1"] / median[f"train {ranks}"]},
        "rate_speedup": {"dump": rate[f"dump {ranks}"] / rate["dump 1"],
                         "train": rate[f"train {ranks}"] / rate["train 1"]},
        "same_cache": same_cache,
    }
    print(json.dumps({k: result[k] for k in ("wall_speedup", "rate_speedup", "same_cache")}, indent=2))
    save_result("distributed", result)


if __name__ == "__main__":
    main()
