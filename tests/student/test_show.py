"""Pictures and TensorBoard: each PNG is valid and of its stated size, and what each function drew
equals its source, recomputed here (a fresh forward, metrics.jsonl, the stored arrays)."""

import json
import struct

import numpy as np
import pytest
import torch

from cache import open_cache
from cache.data.checkpoints import default_teacher_path
from cache.format.store import block_unit
from student.show import (
    DPI,
    PANEL,
    attention_maps,
    cache_contents,
    draw_attention,
    draw_cache,
    draw_curves,
    training_curves,
)
from student.trainer import train_student
from tests.helpers import dump, run, train_config
from tests.reference import load_reference, reference_targets


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_cache, glue):
    out = tmp_path_factory.mktemp("run") / "run"
    train_student(train_config(tiny_cache, out, stage="all", max_steps=6, log_every=2, eval_every=3,
                               eval_data=glue / "SST-2", tensorboard=True), command="test", progress=False)
    return out


def test_attention_maps_equal_the_cache_and_a_fresh_student_forward(tmp_path, tiny_cache, trained):
    maps = attention_maps(tiny_cache, 5, trained / "last", layer=2)
    item = open_cache(tiny_cache)[5]
    assert maps.student_layer == 2 and maps.teacher_layer == 2  # the run's uniform map, 3 layers from 3
    np.testing.assert_array_equal(maps.teacher, item["attention"][2].float().numpy())
    student = load_reference(trained / "last")
    fresh = reference_targets(student, item["input_ids"], item["token_type_ids"])["scores"][1]  # the cache's kind
    np.testing.assert_allclose(maps.student, fresh.numpy(), rtol=1e-4, atol=1e-5)
    assert len(maps.tokens) == len(item["input_ids"]) and maps.tokens[0] == "[CLS]"
    draw_attention(maps, tmp_path / "a.png")
    heads = maps.teacher.shape[0]
    assert png_size(tmp_path / "a.png") == (round(PANEL * heads * DPI), round((PANEL * 2 + 0.4) * DPI))


@pytest.mark.slow
def test_real_minilm_through_the_commands(tmp_path, glue):
    """The real MiniLM on real sentences: its attention, its cache, and a student's curves and events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    dump(default_teacher_path(), glue, tmp_path / "c", limit=16, block_mb=1)
    result = run("show", "attention", "--cache", tmp_path / "c", "--example", 3, "--layer", 6,
                 "--out", tmp_path / "a.png")
    assert result.exit_code == 0 and "teacher layer 6" in result.output, result.output
    assert png_size(tmp_path / "a.png") == (round(PANEL * 12 * DPI), round((PANEL + 0.4) * DPI))
    assert run("show", "cache", tmp_path / "c", "--out", tmp_path / "k.png").exit_code == 0
    assert png_size(tmp_path / "k.png") == (1000, 400)
    trained = run("train-student", "--cache", tmp_path / "c", "--student", "layers=2,hidden=48,ffn=64,heads=12",
                  "--stage", "intermediate", "--max-steps", 4, "--batch-size", 4, "--tensorboard",
                  "--out", tmp_path / "run")
    assert trained.exit_code == 0, trained.output
    assert run("show", "curves", "--run", tmp_path / "run", "--out", tmp_path / "c.png").exit_code == 0
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    logged = training_curves([tmp_path / "run"])["run"]["attn"]
    read = [(s.step, s.value) for s in events.Scalars("intermediate/attn")]
    assert [step for step, _ in read] == logged[0]
    assert [value for _, value in read] == pytest.approx(logged[1], rel=1e-6)


def test_curves_are_the_logged_values(tmp_path, trained):
    curves = training_curves([trained])
    entries = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    for name in ("embd", "hidn", "attn", "pred"):
        logged = [(e["step"], e[name]) for e in entries if name in e]
        assert list(zip(*curves["run"][name], strict=True)) == logged and logged
    evaluated = [(e["step"], e["eval"]["accuracy"]) for e in entries if "eval" in e]
    assert list(zip(*curves["run"]["eval accuracy"], strict=True)) == evaluated and evaluated
    draw_curves(curves, tmp_path / "c.png")
    assert png_size(tmp_path / "c.png") == (round(3.2 * 5 * DPI), round(2.8 * DPI))
    refused = run("show", "curves", "--run", tmp_path, "--out", tmp_path / "x.png")
    assert refused.exit_code == 1 and "has no metrics.jsonl" in refused.output


def test_cache_contents_equal_the_stored_arrays(tmp_path, tiny_cache):
    contents = cache_contents(tiny_cache)
    cache = open_cache(tiny_cache)
    assert contents.length_counts.sum() == len(cache)
    assert contents.length_counts[int(cache.lengths.max()) - 1] == (cache.lengths == cache.lengths.max()).sum()
    stored = {"hidden": 0, "attention": 0}
    for k in range(cache.num_blocks):
        for kind in stored:
            stored[kind] += cache.store.read(block_unit(k), kind).nbytes
    layers, attention_layers = cache.manifest.layers, cache.manifest.attention_layers
    assert sum(contents.bytes_by_target[f"hidden L{n}"] for n in layers) == stored["hidden"]
    assert sum(contents.bytes_by_target[f"attention L{n}"] for n in attention_layers) == stored["attention"]
    draw_cache(contents, tmp_path / "k.png")
    assert png_size(tmp_path / "k.png") == (1000, 400)


def test_tensorboard_events_are_the_logged_scalars(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained / "tensorboard"))
    events.Reload()
    entries = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    for stage, name in [("intermediate", "hidn"), ("prediction", "pred"), ("prediction", "lr"),
                        ("prediction", "eval/accuracy")]:
        logged = [(e["step"], e["eval"]["accuracy"] if name == "eval/accuracy" else e[name]) for e in entries
                  if e["stage"] == stage and (name in e or (name == "eval/accuracy" and "eval" in e))]
        read = [(s.step, s.value) for s in events.Scalars(f"{stage}/{name}")]
        assert len(read) == len(logged) > 0
        assert all(a == b and x == pytest.approx(y, rel=1e-6) for (a, x), (b, y) in zip(read, logged, strict=True))


def test_compare_plot(tmp_path, small_sst2, tiny_teacher):
    result = run("compare", "--model", f"a={tiny_teacher}", "--model", f"b={tiny_teacher}", "--task", "sst2",
                 "--data", small_sst2, "--plot", tmp_path / "p.png", "--json")
    assert result.exit_code == 0, result.output
    assert png_size(tmp_path / "p.png") == (500, 400)
    rows = json.loads(result.stdout)["models"]
    from student.show import draw_comparison

    points = draw_comparison(rows, tmp_path / "q.png")
    assert points == [(r["model"], r["latency_ms"], r["accuracy"], r["parameters"]) for r in rows]
    assert torch.tensor([p[2] for p in points]).eq(points[0][2]).all()  # the same model twice
