"""Streaming a cache from an S3 server against from a folder, with and without prefetch.

The same cache (the real MiniLM over SST-2) is dumped into a folder and into a local S3 server
(moto's, on 127.0.0.1, in a process of its own); then, alternating, each round streams one epoch of
training batches (`stream_batches`, as `train-student` reads them) from the folder, from S3 one
block at a time, and from S3 with `--prefetch-blocks` blocks at once and the next window read
ahead; and, as the server's own ceiling, the time to GET every object of the blocks with no
decoding at all. Figures are examples/s and the ratios to the folder. Reproduce:

    python -m bench.object_store_bench                  # 2000 sentences, 3 rounds, prefetch 8

The server is one Python process sharing this machine's cores with the reader, so it caps
what S3 can reach here (docs/benchmarks.md says by how much); a real object store is limited by
latency per request instead, which prefetch hides the same way. Writes
bench/results/object_store.json.
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from bench.common import data_option, save_result, timed
from cache import open_cache
from cache.data.checkpoints import quiet_transformers
from cache.teacher.dump import DumpConfig, dump_teacher
from student.stream import BatchOrder, stream_batches


def start_server() -> subprocess.Popen:
    """moto's S3 server in a process of its own on a free port of 127.0.0.1 (in this process it
    would share the reader's GIL), with a bucket; the environment points at it."""
    import s3fs

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while socket.socket().connect_ex(("127.0.0.1", port)):
        time.sleep(0.1)
    os.environ |= {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
                   "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir("bench")
    return server


def epoch_examples(target, prefetch: int, window_blocks: int) -> int:
    cache = open_cache(target, layers=[0, 2, 4, 6])  # what TinyBERT4 reads from MiniLM
    order = BatchOrder(cache.block_starts, 32, window_blocks, seed=0)
    return sum(len(share.examples) for share in stream_batches(cache, order, 0, 0, 0, prefetch))


def seconds_to_fetch(prefix: str, concurrent: int) -> float:
    """Seconds to GET every object under `prefix`, `concurrent` at a time, bytes only: no zarr, no
    decoding, no gathering. What the server can serve at best."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, max_concurrency=concurrent)
    paths = fs.find(prefix)
    return timed(fs.cat, paths, batch_size=concurrent)[1]


@click.command()
@data_option
@click.option("--limit", type=click.IntRange(1), default=2000, help="SST-2 sentences in the cache.")
@click.option("--block-mb", type=float, default=1.0, help="Block size of the cache.")
@click.option("--prefetch", type=click.IntRange(2), default=8, help="Blocks read at once in the prefetch row.")
@click.option("--rounds", type=click.IntRange(1), default=3)
def main(data, limit, block_mb, prefetch, rounds):
    quiet_transformers()
    server = start_server()
    work = Path(tempfile.mkdtemp(prefix="object-store-bench-"))
    dumps = {}
    for name, out in (("folder", work / "cache"), ("s3", "s3://bench/cache")):
        config = DumpConfig(task="sst2", data=data, split="train", out=out, limit=limit, block_mb=block_mb,
                            layers=(0, 2, 4, 6))
        dumps[name] = timed(dump_teacher, config, command="bench", progress=False)[1]
    window = 4
    rows = {"folder": (work / "cache", 1), "s3, one block at a time": ("s3://bench/cache", 1),
            f"s3, prefetch {prefetch}": ("s3://bench/cache", prefetch)}
    rates: dict[str, list[float]] = {name: [] for name in [*rows, "s3, raw GETs (the server's ceiling)"]}
    for r in range(rounds):
        for name, (target, blocks) in rows.items():
            examples, seconds = timed(epoch_examples, target, blocks, window)
            rates[name].append(examples / seconds)
        rates["s3, raw GETs (the server's ceiling)"].append(limit / seconds_to_fetch("bench/cache/blocks", prefetch))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} ex/s" for k, v in rates.items()))
    server.terminate()
    median = {name: statistics.median(values) for name, values in rates.items()}
    cache = open_cache(work / "cache")
    result = {
        "setup": {"sentences": limit, "blocks": cache.num_blocks, "block_mb": block_mb, "window_blocks": window,
                  "layers": [0, 2, 4, 6], "prefetch": prefetch, "rounds": rounds},
        "dump_seconds": dumps, "examples_per_s": rates, "median_examples_per_s": median,
        "ratio_to_folder": {name: value / median["folder"] for name, value in median.items()},
    }
    for name, value in result["ratio_to_folder"].items():
        print(f"{name:<28} {median[name]:>8.0f} ex/s  x{value:.3f} of the folder")
    save_result("object_store", result)


if __name__ == "__main__":
    main()
