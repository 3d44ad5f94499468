"""Pictures: attention maps of teacher and student, training curves, what a cache holds, and the
compared models. Each function draws one PNG of a fixed size (matplotlib `Figure` objects, which
render with Agg and touch no global pyplot state; inputs in a fixed order, so the same inputs give
the same file) and returns the data it drew, so that tests
compare the picture's content with its source."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from cache import Cache, open_cache
from cache.data.families import forward_inputs
from cache.format.entries import ATTENTION, HIDDEN
from cache.read.decode import attended
from cache.runtime.attention import use_attention
from cache.runtime.errors import UserError
from cache.runtime.layer_map import uniform_layer_map
from cache.runtime.paths import model_folder

DPI = 100
PANEL = 1.7
"""Inches per attention panel (one per head)."""


@dataclass(frozen=True)
class AttentionMaps:
    """What `show attention` drew: maps (h, L, L) of one example, and which layers they come from."""

    tokens: list[str]
    teacher_layer: int
    teacher: np.ndarray
    student_layer: int | None
    student: np.ndarray | None


def attention_maps(cache_path: Path, example: int, student: Path | None, layer: int | None) -> AttentionMaps:
    """Teacher attention of `example` from the cache; with `student`, the student's own maps of the
    same kind (scores or probabilities) for the student layer `layer` (default: its last), next to
    the teacher layer the run's layer map pairs it with. Without a student, `layer` is a teacher layer."""
    cache = open_cache(cache_path)
    if not 0 <= example < len(cache):
        raise UserError(f"--example: {example} is not in 0..{len(cache) - 1}")
    item = cache[example]
    tokens = cache.load_tokenizer().convert_ids_to_tokens(item["input_ids"].tolist())
    if student is None:
        n = layer if layer is not None else cache.attention_layers[-1]
        return AttentionMaps(tokens, n, _teacher_map(cache, item, n), None, None)
    model, layer_map = _student(model_folder(student, "--student"), cache)
    m = layer if layer is not None else len(layer_map)
    if not 1 <= m <= len(layer_map):
        raise UserError(f"--layer: the student has layers 1..{len(layer_map)}, not {m}")
    use_attention(model, cache.manifest.geometry.decodes_to)
    with torch.no_grad():
        ids = item["input_ids"][None]
        out = model(**forward_inputs(model, ids, item["token_type_ids"][None], torch.ones_like(ids)),
                    output_attentions=True)
    n = layer_map[m - 1]
    window = cache.manifest.geometry.window(n)  # outside the teacher layer's window: no targets, left blank
    ours = out.attentions[m - 1][0].float().masked_fill(~attended(torch.ones_like(ids, dtype=torch.bool), window)[0],
                                                        0.0).numpy()  # (h, L, L)
    return AttentionMaps(tokens, n, _teacher_map(cache, item, n), m, ours)


def _teacher_map(cache: Cache, item: dict, layer: int) -> np.ndarray:
    if layer not in item["attention"]:
        raise UserError(f"--layer: teacher layer {layer} has no attention in the cache "
                        f"(it stores {cache.attention_layers})")
    return item["attention"][layer].float().numpy()


def _student(folder: Path, cache: Cache):
    """The student's encoder and its layer map (the run's, else uniform over the teacher's layers)."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    record = folder.parent / "train_config.json"
    if record.is_file():
        return model, json.loads(record.read_text())["layer_map_resolved"]
    return model, uniform_layer_map(model.config.num_hidden_layers, cache.manifest.teacher.num_layers)


def draw_attention(maps: AttentionMaps, out: Path) -> None:
    rows: list[tuple[str, int | None, np.ndarray]] = [("teacher", maps.teacher_layer, maps.teacher)]
    if maps.student is not None:
        rows.append(("student", maps.student_layer, maps.student))
    heads = maps.teacher.shape[0]
    figure, axes = _figure(PANEL * heads, PANEL * len(rows) + 0.4, len(rows), heads)
    ticks = range(len(maps.tokens))
    for r, (who, layer, values) in enumerate(rows):
        for head in range(heads):
            axis = axes[r][head]
            axis.imshow(values[head], cmap="viridis")
            axis.set_title(f"{who} L{layer} h{head}", fontsize=6)
            axis.set_xticks(ticks, maps.tokens if r == len(rows) - 1 else [], rotation=90, fontsize=3)
            axis.set_yticks(ticks, maps.tokens if head == 0 else [], fontsize=3)
    _save(figure, out)


CURVES = ("embd", "hidn", "attn", "pred")
"""Loss components, one panel each, in this order; the eval metric gets the last panel."""


def training_curves(runs: list[Path]) -> dict[str, dict[str, tuple[list[int], list[float]]]]:
    """Per run (by folder name), each series in its metrics.jsonl: loss components and the eval
    metrics against the step of their stage."""
    curves: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    for run in runs:
        log = Path(run) / "metrics.jsonl"
        if not log.is_file():
            raise UserError(f"--run: {run} has no metrics.jsonl (not a training run)")
        series: dict[str, tuple[list[int], list[float]]] = {}
        for entry in _log_entries(log):
            values = entry.get("eval", {k: entry[k] for k in CURVES if k in entry})
            prefix = "eval " if "eval" in entry else ""
            for key, value in values.items():
                steps, points = series.setdefault(prefix + key, ([], []))
                steps.append(entry["step"])
                points.append(value)
        curves[Path(run).name if Path(run).name not in curves else str(run)] = series
    return curves


def _log_entries(log: Path) -> list[dict]:
    """A run's logged entries; a line that is not one (a run killed mid-write, an edit) is named."""
    entries = []
    for number, line in enumerate(log.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
            raise UserError(f"{log}:{number}: not a logged step (a JSON object with a step)")
        entries.append(entry)
    return entries


def draw_curves(curves: dict[str, dict[str, tuple[list[int], list[float]]]], out: Path) -> None:
    names = sorted({name for series in curves.values() for name in series},
                   key=lambda n: (n.startswith("eval"), CURVES.index(n) if n in CURVES else 0, n))
    figure, axes = _figure(3.2 * len(names), 2.8, 1, len(names))
    for axis, name in zip(axes[0], names, strict=True):
        for run, series in curves.items():
            if name in series:
                axis.plot(*series[name], label=run, linewidth=1, marker="o", markersize=2)
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    _save(figure, out)


@dataclass(frozen=True)
class CacheContents:
    """What `show cache` drew: the length histogram and the bytes of each kind of target."""

    length_bins: np.ndarray  # (bins + 1,)
    length_counts: np.ndarray  # (bins,)
    bytes_by_target: dict[str, int]
    """`hidden L<n>`, `attention L<n>`, `tokens`, `labels and logits`: bytes on disk before compression."""


def cache_contents(cache_path: Path) -> CacheContents:
    cache = open_cache(cache_path)
    manifest, lengths = cache.manifest, cache.lengths.astype(np.int64)
    counts, bins = np.histogram(lengths, bins=np.arange(1, manifest.max_seq_len + 2))
    geometry = manifest.geometry
    hidden = int(geometry.example_bytes(lengths, HIDDEN).sum()) // max(len(manifest.layers), 1)
    attention = int(geometry.example_bytes(lengths, ATTENTION).sum()) // max(len(manifest.attention_layers), 1)
    sizes = {f"hidden L{n}": hidden for n in manifest.layers}
    sizes |= {f"attention L{n}": attention for n in manifest.attention_layers}
    sizes["tokens"] = int(lengths.sum()) * (4 + 1)  # int32 ids, int8 token types
    sizes["labels and logits"] = len(lengths) * (8 + 4 * manifest.teacher.num_labels)
    return CacheContents(bins, counts, sizes)


def draw_cache(contents: CacheContents, out: Path) -> None:
    figure, axes = _figure(10, 4, 1, 2)
    lengths, sizes = axes[0]
    lengths.bar(contents.length_bins[:-1], contents.length_counts, width=1.0)
    lengths.set_xlabel("tokens per example")
    lengths.set_ylabel("examples")
    names = list(contents.bytes_by_target)
    sizes.barh(names, [contents.bytes_by_target[n] / 1e6 for n in names])
    sizes.invert_yaxis()
    sizes.set_xlabel("MB")
    sizes.tick_params(labelsize=7)
    _save(figure, out)


def draw_comparison(rows: list[dict], out: Path) -> list[tuple[str, float, float, int]]:
    """Metric against latency, marker area by parameters; returns (model, latency, metric, parameters)."""
    metric = rows[0]["metric"]
    points = [(r["model"], r["latency_ms"], r[metric], r["parameters"]) for r in rows]
    figure, axes = _figure(5, 4)
    axis = axes[0][0]
    largest = max(p[3] for p in points)
    for name, latency, score, parameters in points:
        axis.scatter(latency, score, s=400 * parameters / largest, alpha=0.6)
        axis.annotate(f"{name} ({parameters / 1e6:.1f}M)", (latency, score), fontsize=8)
    axis.margins(x=0.35, y=0.2)  # room for the labels
    axis.set_xlabel("ms per example (batch size 1)")
    axis.set_ylabel(metric)
    _save(figure, out)
    return points


def _figure(width: float, height: float, rows: int = 1, columns: int = 1):
    """A figure of `width` x `height` inches and its grid of axes (always 2-D)."""
    figure = Figure(figsize=(width, height))
    return figure, figure.subplots(rows, columns, squeeze=False)


def _save(figure: Figure, out: Path) -> None:
    figure.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=DPI, metadata={"Software": None})  # no version stamp: same inputs, same bytes
