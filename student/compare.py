"""Compare saved models side by side, each in the format it is served in (PyTorch, ONNX, ONNX
int8): task metric, retention, size on disk and inference latency (the demo's table); and
embedders: agreement with the first, size, and sentences encoded per second."""

import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from cache.data.evaluate import SavedClassifier, evaluate, examples_to_score, metric_for
from cache.data.metrics import MAIN_METRIC
from cache.data.served import WEIGHT_SUFFIXES, disk_bytes, parameters_count, served_format
from student.embedder import ONNX_GRAPHS, OnnxEmbedder, load_embedder, vectors_agreement

LATENCY_BATCHES = (1, 32)
"""Batch sizes latency is measured at: one request at a time (interactive), and a batch (serving)."""


def latency_batches(tokenizer, texts: list[str], pairs: Sequence[str] | None, max_seq_len: int,
                    batch_size: int) -> list[dict]:
    """The examples as the model would be served them: batches of `batch_size`, truncated at the
    task's `max_seq_len` and padded to each batch's longest."""
    return [tokenizer(texts[start:start + batch_size], pairs[start:start + batch_size] if pairs else None,
                      truncation=True, max_length=max_seq_len, padding=True, return_tensors="pt")
            for start in range(0, len(texts), batch_size)]


@torch.inference_mode()
def latency_ms(model, batches: list[dict], repeats: int = 3) -> float:
    """Median milliseconds per example over `repeats` timed passes over `batches`, after a warm-up
    pass over the first."""
    model(**batches[0])
    examples = sum(len(batch["input_ids"]) for batch in batches)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for inputs in batches:
            model(**inputs)
        times.append((time.perf_counter() - started) / examples * 1e3)
    return statistics.median(times)


def compare_models(models: dict[str, Path], task: str, data: Path, split: str, max_seq_len: int,
                   latency_examples: int = 200, progress: bool = True) -> list[dict]:
    """One row per model; latency per example at batch sizes 1 (`latency_ms`) and 32 over the
    split's first `latency_examples` examples, inputs truncated at `max_seq_len`, on torch's threads
    (ONNX Runtime gets as many); speed-ups are relative to the first model. Every model is checked
    against the task before the first is scored."""
    first = next(iter(models))
    examples = examples_to_score(task, data, split, models[first], f"--model {first}")
    key = MAIN_METRIC[metric_for(examples.task)]
    texts = examples.texts[:latency_examples]
    pairs = examples.pairs[:latency_examples] if examples.pairs else None
    checked = {name: SavedClassifier.check(folder, examples, max_seq_len, f"--model {name}")
               for name, folder in models.items()}
    rows = []
    for name, saved in tqdm(checked.items(), desc="compare", unit="model", disable=not progress):
        model, tokenizer, folder = saved.load(), saved.tokenizer, saved.folder
        metrics = evaluate(model, tokenizer, examples, max_seq_len)
        latency = {size: latency_ms(model, latency_batches(tokenizer, texts, pairs, max_seq_len, size))
                   for size in LATENCY_BATCHES}
        rows.append({"model": name, "path": str(folder), "format": served_format(folder), "metric": key,
                     key: metrics[key], "parameters": parameters_count(model), "disk_mb": disk_bytes(folder) / 1e6,
                     "latency_ms": latency[1], "latency_ms_batch32": latency[32], "threads": torch.get_num_threads()})
    for row in rows:
        row["speedup"] = rows[0]["latency_ms"] / row["latency_ms"]
        row["speedup_batch32"] = rows[0]["latency_ms_batch32"] / row["latency_ms_batch32"]
        row["retention"] = row[key] / rows[0][key] if rows[0][key] else float("nan")
    return rows


def format_rows(rows: list[dict]) -> str:
    metric = rows[0]["metric"]
    width = max(10, *(len(r["model"]) + 2 for r in rows))
    header = (f"{'model':<{width}}{'format':<11}{metric:>10}{'retention':>11}{'parameters':>13}{'disk':>10}"
              f"{'ms/ex (1)':>11}{'speed-up':>10}{'ms/ex (32)':>12}{'speed-up':>10}")
    lines = [header] + [f"{r['model']:<{width}}{r['format']:<11}{r[metric]:>10.4f}{r['retention']:>10.1%}"
                        f"{r['parameters'] / 1e6:>12.1f}M{r['disk_mb']:>8.1f}MB{r['latency_ms']:>11.2f}"
                        f"{r['speedup']:>9.1f}x{r['latency_ms_batch32']:>12.2f}{r['speedup_batch32']:>9.1f}x"
                        for r in rows]
    threads = rows[0]["threads"]
    return "\n".join([*lines, f"latency: median of 3 timed passes after a warm-up, {threads} thread"
                                f"{'s' if threads > 1 else ''}"])


ENCODE_BATCH = 32
"""The batch size embedders encode at when timed (sentence-transformers' default)."""


def sentences_per_second(encode, sentences: list[str], repeats: int = 3) -> float:
    """Median sentences per second of `encode` over all `sentences`, after a warm-up batch."""
    encode(sentences[:ENCODE_BATCH])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        encode(sentences)
        times.append(time.perf_counter() - started)
    return len(sentences) / statistics.median(times)


def served_embedders(folder: Path, teacher: Path) -> Iterator[tuple[str, Any, float]]:
    """(format, encoder, megabytes of weights on disk) of each way `folder` serves: PyTorch (the
    encoder and the modules after it), and each ONNX encoder it holds (the graph and those modules)."""
    model = load_embedder(folder, teacher)
    weights = {path.relative_to(folder).parts: path.stat().st_size for path in folder.rglob("*")
               if path.suffix in WEIGHT_SUFFIXES and path.is_file()}
    modules = sum(size for parts, size in weights.items() if len(parts) > 1 and parts[0] != "onnx")
    yield "pytorch", model, sum(size for parts, size in weights.items() if parts[0] != "onnx") / 1e6
    for name, graph in ONNX_GRAPHS.items():
        if (folder / "onnx" / graph).is_file():
            yield name, OnnxEmbedder(folder, graph), ((folder / "onnx" / graph).stat().st_size + modules) / 1e6


@torch.inference_mode()
def compare_embedders(models: dict[str, Path], sentences: list[str], progress: bool = True) -> list[dict]:
    """One row per embedder (a sentence-transformers folder, or a student as `export` makes it) and
    format it serves in (`served_embedders`): the agreement of its vectors with the first model's
    PyTorch ones over `sentences` (`student.embedder.Agreement`), parameters, size on disk and
    sentences per second at batch 32 (on torch's threads; ONNX Runtime gets as many); speed-ups
    relative to the first row."""
    first = next(iter(models))
    rows: list[dict] = []
    reference = None
    for name, folder in tqdm(models.items(), desc="compare", unit="model", disable=not progress):
        for served, encoder, megabytes in served_embedders(folder, models[first]):
            vectors = encoder.encode(sentences, batch_size=ENCODE_BATCH, normalize_embeddings=True)
            reference = vectors if reference is None else reference
            rows.append({"model": name, "path": str(folder), "format": served, "dimensions": vectors.shape[1],
                         **vars(vectors_agreement(vectors, reference)),
                         "parameters": sum(p.numel() for p in encoder.parameters()),
                         "disk_mb": megabytes, "threads": torch.get_num_threads(),
                         "sentences_per_s": sentences_per_second(
                             lambda s, e=encoder: e.encode(s, batch_size=ENCODE_BATCH), sentences)})
    for row in rows:
        row["speedup"] = row["sentences_per_s"] / rows[0]["sentences_per_s"]
    return rows


def format_embedder_rows(rows: list[dict]) -> str:
    def cell(value: float | None, spec: str, width: int, suffix: str = "") -> str:
        return f"{'-' if value is None else f'{value:{spec}}{suffix}':>{width}}"

    width = max(10, *(len(r["model"]) + 2 for r in rows))
    header = (f"{'model':<{width}}{'format':<11}{'spearman':>9}{'cosine':>8}{'top-10':>8}{'parameters':>12}"
              f"{'disk':>9}{'sent/s':>9}{'speed-up':>10}")
    lines = [header] + ["".join([
        f"{r['model']:<{width}}{r['format']:<11}", cell(r["spearman"], ".4f", 9), cell(r["mean_cosine"], ".4f", 8),
        cell(r["top10_overlap"], ".1%", 8), cell(r["parameters"] / 1e6, ".1f", 12, "M"),
        cell(r["disk_mb"], ".1f", 9, "MB"), cell(r["sentences_per_s"], ".0f", 9), cell(r["speedup"], ".1f", 10, "x")])
        for r in rows]
    threads = rows[0]["threads"]
    return "\n".join([*lines, f"agreement with {rows[0]['model']} ({rows[0]['format']}) over {rows[0]['sentences']} "
                                f"sentences; sentences/s at batch {ENCODE_BATCH}: median of 3 passes after a warm-up, "
                                f"{threads} thread{'s' if threads > 1 else ''}"])
