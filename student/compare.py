"""Compare saved models side by side: task metric, size and inference latency (the demo's table)."""

import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from student.evaluate import SavedClassifier, evaluate, examples_to_score, metric_for
from student.metrics import MAIN_METRIC


@torch.inference_mode()
def latency_ms(model, tokenizer, texts: list[str], pairs: Sequence[str] | None, repeats: int = 3) -> float:
    """Median milliseconds per example at batch size 1 (the interactive case), after a warm-up."""
    encoded = [tokenizer(text, pair, return_tensors="pt", truncation=True, max_length=128)
               for text, pair in zip(texts, pairs if pairs is not None else [None] * len(texts), strict=True)]
    model(**encoded[0])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for inputs in encoded:
            model(**inputs)
        times.append((time.perf_counter() - started) / len(encoded) * 1e3)
    return statistics.median(times)


def compare_models(models: dict[str, Path], task: str, data: Path, split: str, max_seq_len: int,
                   latency_examples: int = 200, progress: bool = True) -> list[dict]:
    """One row per model; `speedup` is relative to the first model. Every model is checked against
    the task before the first is scored."""
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
        rows.append({"model": name, "path": str(folder), "metric": key, key: metrics[key],
                     "parameters": sum(p.numel() for p in model.parameters()),
                     "latency_ms": latency_ms(model, tokenizer, texts, pairs)})
    for row in rows:
        row["speedup"] = rows[0]["latency_ms"] / row["latency_ms"]
        row["retention"] = row[key] / rows[0][key] if rows[0][key] else float("nan")
    return rows


def format_rows(rows: list[dict]) -> str:
    metric = rows[0]["metric"]
    header = f"{'model':<10}{metric:>10}{'retention':>11}{'parameters':>13}{'ms/example':>12}{'speed-up':>10}"
    lines = [header] + [f"{r['model']:<10}{r[metric]:>10.4f}{r['retention']:>10.1%}{r['parameters'] / 1e6:>12.1f}M"
                        f"{r['latency_ms']:>12.2f}{r['speedup']:>9.1f}x" for r in rows]
    return "\n".join(lines)
