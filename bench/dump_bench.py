"""Dump benchmark: throughput against the bare teacher forward, size, and what compression buys.

Everything it compares runs in this one process, alternating (per round: the bare forward, then
the dump in each encoding with each writer), and the table reports ratios, each round's dump
against the same round's bare forward (machines here are shared and noisy): median and range.

    python -m bench.dump_bench                      # real MiniLM, first 2000 SST-2 sentences
    python -m bench.dump_bench --teacher-shape base # random BERT-base-shaped teacher
    python -m bench.dump_bench --encodings float16,maps --encodings int8,topk:8 --writers thread,process

Writes bench/results/dump-<teacher>.json.
"""

import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import click
import numpy as np
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

from bench.common import data_option, save_result
from cache import open_cache
from cache.data.checkpoints import default_teacher_path, quiet_transformers
from cache.data.readers import load_examples
from cache.format.encoding import attention_encoding
from cache.format.layout import BlockIndex
from cache.read.inspect import cache_summary
from cache.runtime.device import resolve_device
from cache.runtime.kinds import AttentionKind
from cache.teacher.dump import DumpConfig, block_batches, dump_teacher, prepare_dump
from cache.teacher.runner import teacher_forward


def base_shaped_teacher(folder: Path) -> str:
    """A randomly initialised BERT-base shape (12 x 768, 12 heads) with MiniLM's vocabulary:
    speed depends on shape, not on weights."""
    config = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                        num_labels=2)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)  # with a task head: logits too
    BertTokenizer(vocab=str(Path(default_teacher_path()) / "vocab.txt")).save_pretrained(folder)
    return str(folder)


def bare_forward_seconds(config: DumpConfig) -> float:
    """Load, tokenise and run the dump's exact batches through the same teacher and attention
    function (queries and keys are captured by a fused kernel), outputs discarded: everything the
    dump does except encoding and storing."""
    started = time.perf_counter()
    examples = load_examples(config.task, config.data, config.split, limit=config.limit)
    prepared = prepare_dump(config, examples, command="bench")
    starts = prepared.block_starts
    for k in range(len(starts) - 1):
        lengths = prepared.tokens.lengths[starts[k]:starts[k + 1]]
        block = BlockIndex.build(int(starts[k]), lengths, prepared.geometry.num_heads)
        for batch in block_batches(prepared.tokens, block, config.batch_size, prepared.device):
            teacher_forward(prepared.model, batch.input_ids, batch.token_type_ids, batch.mask.long())
    if prepared.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def encoded(config: DumpConfig, encodings: str) -> DumpConfig:
    """`config` with HIDDEN,ATTENTION encodings (probabilities where the attention one holds nothing else)."""
    hidden, attention = encodings.split(",")
    probs = attention != "auto" and attention_encoding(attention).probabilities_only
    return replace(config, hidden_encoding=hidden, attention_encoding=attention,
                   attention=AttentionKind.PROBS if probs else config.attention)


def dump_seconds(config: DumpConfig) -> float:
    started = time.perf_counter()
    dump_teacher(config, command="bench", progress=False)
    return time.perf_counter() - started


def read_rates(path: Path, samples: int = 300) -> dict:
    """Examples/s for random single-example reads and for whole-block streaming."""
    cache = open_cache(path)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for i in rng.integers(0, len(cache), samples):
        cache[int(i)]
    random_rate = samples / (time.perf_counter() - started)
    started = time.perf_counter()
    n = sum(len(block) for block in cache.iter_blocks())
    return {"random_examples_per_s": random_rate, "block_examples_per_s": n / (time.perf_counter() - started)}


@click.command()
@click.option("--limit", default=2000, help="First N SST-2 training sentences.")
@click.option("--teacher-shape", type=click.Choice(["minilm", "base"]), default="minilm")
@click.option("--rounds", default=3, help="Alternating rounds of bare forward and dumps; medians reported.")
@click.option("--encodings", multiple=True, default=["float16,maps"],
              help="HIDDEN,ATTENTION encodings to dump (repeat the option for several).")
@click.option("--writers", default="thread", help="Comma-separated: thread, process.")
@click.option("--compression/--no-compression", default=True, help="Also compare compression codecs.")
@click.option("--under", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write the caches under this folder (e.g. /dev/shm, to leave the disk out); default: the "
              "system's temporary folder.")
@data_option
def main(limit, teacher_shape, rounds, encodings, writers, compression, under, data):
    quiet_transformers()
    torch.manual_seed(0)
    runs = [(encoding, writer) for encoding in encodings for writer in writers.split(",")]
    with tempfile.TemporaryDirectory(dir=under) as tmp:
        tmp = Path(tmp)
        teacher = default_teacher_path() if teacher_shape == "minilm" else base_shaped_teacher(tmp / "base")
        config = DumpConfig(task="sst2", data=data, split="train", out=tmp / "c", teacher=teacher, limit=limit)
        configs = {run: encoded(replace(config, writer=run[1]), run[0]) for run in runs}
        bare = {encoding: [] for encoding in encodings}
        dumped = {run: [] for run in runs}
        for r in range(rounds):
            for encoding in encodings:  # a factored encoding's teacher runs a fused attention kernel
                bare[encoding].append(bare_forward_seconds(configs[(encoding, writers.split(",")[0])]))
            for i, (run, seconds) in enumerate(dumped.items()):
                seconds.append(dump_seconds(replace(configs[run], out=tmp / f"{r}-{i}.zarr")))
        first = tmp / "0-0.zarr"
        sizes = cache_summary(first)["sizes"]
        codecs = {"none": {"bytes": sizes["target_bytes"], **read_rates(first)}}
        for codec in ["lz4", "zstd", "gzip"] if compression else []:
            out = tmp / f"{codec}.zarr"
            seconds = dump_seconds(replace(configs[runs[0]], out=out, compression=codec))
            codecs[codec] = {"bytes": cache_summary(out)["sizes"]["target_bytes"], "dump_seconds": seconds,
                             **read_rates(out)}
    results = {}
    for (encoding, writer), seconds in dumped.items():
        ratios = [b / d for b, d in zip(bare[encoding], seconds, strict=True)]
        results[f"{encoding} {writer}"] = {
            "dump_examples_per_s": limit / statistics.median(seconds),
            "bare_examples_per_s": limit / statistics.median(bare[encoding]),
            "dump_over_bare": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "rounds": ratios}
    result = {
        "machine": (f"{platform.node()} {platform.processor() or platform.machine()}, "
                    f"torch threads {torch.get_num_threads()}"),
        "teacher": teacher_shape, "examples": limit, "device": str(resolve_device("auto")),
        "written_under": str(under or tempfile.gettempdir()), "dumps": results,
        "bytes_per_example": sizes["bytes_per_example"],
        "over_ragged_ideal": sizes["target_bytes"] / sizes["ideal_ragged_bytes"],
        "padded_float32_bytes_per_example": sizes["padded_float32_bytes"] / limit,
        "padded_float32_over_cache": sizes["padded_float32_bytes"] / sizes["target_bytes"],
        "compression": {name: {**c, "size_vs_none": c["bytes"] / sizes["target_bytes"],
                               "random_read_vs_none": (c["random_examples_per_s"]
                                                       / codecs["none"]["random_examples_per_s"]),
                               "block_read_vs_none": c["block_examples_per_s"] / codecs["none"]["block_examples_per_s"]}
                        for name, c in codecs.items()},
        "seconds": {"bare": bare, "dumps": {f"{e} {w}": s for (e, w), s in dumped.items()}},
    }
    save_result(f"dump-{teacher_shape}", result)
    print(f"teacher {teacher_shape}, {limit} SST-2 sentences, {result['machine']}")
    for name, d in results.items():
        print(f"dump {name}: {d['dump_examples_per_s']:.1f} ex/s vs bare forward {d['bare_examples_per_s']:.1f} ex/s: "
              f"ratio {d['dump_over_bare']:.3f} (rounds {d['min']:.3f}-{d['max']:.3f})")
    print(f"size {result['bytes_per_example'] / 1e3:.1f} kB/example = x{result['over_ragged_ideal']:.3f} of its "
          f"ragged ideal; padded float32 would be {result['padded_float32_bytes_per_example'] / 1e3:.1f} kB "
          f"(x{result['padded_float32_over_cache']:.1f} larger)")
    if compression:
        print(f"{'compression':<12}{'size':>8}{'random read':>13}{'block read':>12}")
        for name, c in result["compression"].items():
            print(f"{name:<12}{c['size_vs_none']:>8.3f}{c['random_read_vs_none']:>13.3f}"
                  f"{c['block_read_vs_none']:>12.3f}")
        print("(ratios vs none)")


if __name__ == "__main__":
    main()
