"""Memory: the trainer's peak resident memory on a 10k-example cache against a 100k-example one.

    python -m bench.memory_bench                      # 10,000 and 100,000 SST-2 sentences (~11 GB)
    python -m bench.memory_bench --sizes 2000,20000   # smaller

SST-2 has 67k training sentences, so the data file cycles through them. Each cache is dumped with
the packaged MiniLM, then `cli.py train-student` runs as a child process for a fixed number of
intermediate steps (TinyBERT4 student; `--workers` reader processes, default the trainer's) while
this process samples the proportional set size (PSS: resident memory, shared pages split between
the processes sharing them) of the trainer and any reader processes together. The trainer
streams windows of blocks, so its memory should not grow with the cache. Writes
bench/results/memory.json.
"""

import csv
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from bench.common import REPO, data_option, save_result
from cache.data.checkpoints import quiet_transformers
from cache.teacher.dump import DumpConfig, dump_teacher


def cycled_sst2(source: Path, size: int, folder: Path) -> Path:
    """A train.tsv of `size` rows cycling through SST-2's training sentences."""
    with open(source / "train.tsv", newline="") as f:
        header, *rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    folder.mkdir(parents=True)
    with open(folder / "train.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
        writer.writerows([header, *(rows[i % len(rows)] for i in range(size))])
    return folder


def tree_pss(pid: int) -> int:
    """Proportional set size of a process and all its descendants, from /proc: reader processes are
    forks that share pages with the trainer, which a sum of RSS would count twice."""
    total, pending = 0, [pid]
    while pending:
        p = pending.pop()
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            total += int(next(line.split()[1] for line in rollup.splitlines() if line.startswith("Pss:"))) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue  # the process ended while being read
    return total


def peak_memory(command: list[str]) -> int:
    """Run `command` to the end, sampling its tree's memory every 50 ms; the peak in bytes."""
    child, peak = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), 0
    while child.poll() is None:
        peak = max(peak, tree_pss(child.pid))
        time.sleep(0.05)
    if child.returncode:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {child.returncode}")
    return peak


@click.command()
@click.option("--sizes", default="10000,100000", help="Cache sizes in examples, comma-separated.")
@click.option("--steps", default=150, help="Intermediate-stage steps per run (batch 32).")
@data_option
@click.option("--work", type=click.Path(path_type=Path), default=None,
              help="Where the caches go (default: a temp dir).")
@click.option("--workers", type=int, default=None, help="Reader processes of the trainer (default: the trainer's).")
def main(sizes, steps, data, work, workers):
    quiet_transformers()
    peaks = {}
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for size in map(int, sizes.split(",")):
            folder = Path(tmp) / str(size)
            dump = DumpConfig(task="sst2", data=cycled_sst2(data, size, folder / "data"), split="train",
                              out=folder / "c.zarr", max_seq_len=64)
            dump_teacher(dump, command="bench", progress=False)
            reader_flags = [] if workers is None else ["--workers", str(workers)]
            peaks[size] = peak_memory([sys.executable, "cli.py", "train-student", "--cache", str(dump.out), "--out",
                                       str(folder / "run"), "--student", "tinybert4", "--stage", "intermediate",
                                       "--max-steps", str(steps), *reader_flags])
            print(f"{size} examples: peak memory (PSS) {peaks[size] / 2**20:.0f} MiB", flush=True)
    smallest, largest = min(peaks), max(peaks)
    result = {"machine": f"{platform.node()} {platform.machine()}", "steps": steps, "workers": workers,
              "peak_pss_bytes": peaks, "largest_over_smallest": peaks[largest] / peaks[smallest]}
    save_result("memory", result)
    print(f"peak memory {largest} / {smallest} examples: {result['largest_over_smallest']:.3f}")


if __name__ == "__main__":
    main()
