"""Read bandwidth: the cache read cold, against `dd`-style sequential reading of the same files.

    python -m bench.read_bench                          # dumps 5,000 SST-2 sentences with MiniLM
    python -m bench.read_bench --cache runs/c.zarr      # an existing cache

Each measurement starts from a cold page cache: every file of the cache is flushed and dropped with
posix_fadvise(DONTNEED), and mincore(2) checks that no page stayed resident. Then, side by side in
one process: plain sequential reads of every file in 8 MiB pieces (the disk's limit for these
files), the reader streaming whole blocks with every layer, and the trainer's stream with the
TinyBERT4 student's layers (4 of MiniLM's 6, or of BERT-base's 12) with 0 and 2 worker processes.
A GPU student becomes read-bound where its examples/s exceed the stream's; the README says what
that means. Writes bench/results/read-<teacher>.json.
"""

import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import click

from bench.common import data_option, save_result
from bench.dump_bench import base_shaped_teacher
from cache import open_cache
from cache.data.checkpoints import default_teacher_path, quiet_transformers
from cache.format.manifest import Manifest
from cache.runtime.layer_map import uniform_layer_map
from cache.teacher.dump import DumpConfig, dump_teacher
from student.stream import BatchOrder, stream_batches

PIECE = 8 << 20


def cache_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def resident_bytes(files: list[Path]) -> int:
    """Bytes of `files` in the page cache, by util-linux's fincore (mincore(2) underneath)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", *map(str, files)],
                         check=True, capture_output=True, text=True).stdout
    return sum(int(line) for line in out.split())


def evict(files: list[Path]) -> None:
    """Drop the files from the page cache and check that they are gone."""
    os.sync()  # DONTNEED drops clean pages only
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    left = resident_bytes(files)
    if left > 0.01 * sum(p.stat().st_size for p in files):
        raise RuntimeError(f"{left} bytes of the cache stayed in the page cache; cold figures would be wrong")


def sequential_read(files: list[Path]) -> int:
    """`dd`-style: every file front to back in 8 MiB pieces; returns the bytes read."""
    buffer, total = bytearray(PIECE), 0
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buffer):
                total += n
    return total


def stream_examples(path: Path, layers: list[int] | None, workers: int) -> int:
    """The trainer's read path: epoch-0 ragged batches of 32, as train-student streams them."""
    cache = open_cache(path, layers=layers)
    order = BatchOrder(cache.block_starts, 32, 4, seed=0)
    return sum(len(share.examples) for share in stream_batches(cache, order, 0, 0, workers))


def cold(files: list[Path], fn, *args) -> tuple[float, object]:
    evict(files)
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


@click.command()
@click.option("--cache", "cache_path", type=click.Path(path_type=Path), default=None,
              help="An existing cache (default: dump one).")
@click.option("--teacher-shape", type=click.Choice(["minilm", "base"]), default="minilm")
@click.option("--limit", default=5000, help="First N SST-2 training sentences to dump.")
@data_option
def main(cache_path, teacher_shape, limit, data):
    quiet_transformers()
    with tempfile.TemporaryDirectory() as tmp:
        if cache_path is None:
            teacher = default_teacher_path() if teacher_shape == "minilm" else base_shaped_teacher(Path(tmp) / "t")
            cache_path = Path(tmp) / "c.zarr"
            dump_teacher(DumpConfig(task="sst2", data=data, split="train", out=cache_path, teacher=teacher,
                                    limit=limit), command="bench", progress=False)
        result = measure(cache_path)
    result["teacher"] = teacher_shape
    save_result(f"read-{teacher_shape}", result)
    print(f"{result['examples']} examples, {result['bytes'] / 1e6:.0f} MB, {result['machine']}")
    print(f"{'cold read':<34}{'examples/s':>12}{'MB/s':>9}{'vs dd':>7}")
    for name, r in result["reads"].items():
        print(f"{name:<34}{r['examples_per_s']:>12.0f}{r['mb_per_s']:>9.0f}{r['vs_sequential']:>7.2f}")


def measure(path: Path) -> dict:
    files, cache = cache_files(path), open_cache(path)
    n, total = len(cache), sum(p.stat().st_size for p in cache_files(path))
    student_layers = [0, *uniform_layer_map(4, cache.manifest.teacher.num_layers)]
    seconds, _ = cold(files, sequential_read, files)
    reads = {"sequential 8 MiB reads (dd)": (seconds, total)}
    seconds, _ = cold(files, lambda: sum(len(block) for block in cache.iter_blocks()))
    reads["reader, whole blocks, all layers"] = (seconds, total)
    for workers in (0, 2):
        subset = sum(p.stat().st_size for p in files if _stored_layer(p, cache.manifest) in (None, *student_layers))
        seconds, _ = cold(files, stream_examples, path, student_layers, workers)
        reads[f"trainer stream, student layers, {workers} workers"] = (seconds, subset)
    dd = total / reads["sequential 8 MiB reads (dd)"][0]
    return {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs", "examples": n,
            "bytes": total, "student_layers": student_layers,
            "reads": {name: {"seconds": s, "examples_per_s": n / s, "mb_per_s": b / s / 1e6,
                             "vs_sequential": b / s / dd}
                      for name, (s, b) in reads.items()}}


def _stored_layer(path: Path, manifest: Manifest) -> int | None:
    """The teacher layer a Zarr chunk holds (blocks/<k>/<array>/c/<i>/<chunk>), None for other files."""
    parts = path.parts
    if len(parts) < 4 or parts[-3] != "c" or parts[-4] not in ("hidden", "attention"):
        return None
    return (manifest.layers if parts[-4] == "hidden" else manifest.attention_layers)[int(parts[-2])]


if __name__ == "__main__":
    main()
