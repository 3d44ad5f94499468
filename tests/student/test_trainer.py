"""The trainer: losses from the cache equal losses from a fresh teacher, training works, resumes
exactly, refuses bad setups before any work, and saves a student transformers can load."""

import json

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, pipeline

from cache import open_cache
from cache.data.checkpoints import default_teacher_path
from cache.runtime.attention import capture_implementation
from cache.runtime.errors import UserError
from student.losses import attention_mse, hidden_mse
from student.stream import BatchOrder, pad_batch, stream_batches
from student.trainer import train_student
from tests.helpers import dump
from tests.helpers import train_config as config
from tests.reference import load_reference, reference_targets


def fresh_targets(teacher, batch, layers):
    """Padded teacher targets from a fresh, unpadded forward of each example."""
    model = load_reference(teacher)
    b, longest = batch.input_ids.shape
    hidden = {n: torch.zeros(b, longest, model.config.hidden_size) for n in layers}
    attention = {n: torch.zeros(b, model.config.num_attention_heads, longest, longest) for n in layers if n}
    for row in range(b):
        n_tokens = int(batch.mask[row].sum())
        ref = reference_targets(model, batch.input_ids[row, :n_tokens], batch.token_type_ids[row, :n_tokens])
        for n in layers:
            hidden[n][row, :n_tokens] = ref["hidden"][n]
            if n:
                attention[n][row, :, :n_tokens, :n_tokens] = ref["scores"][n - 1]
    return hidden, attention


@pytest.mark.parametrize("encoding", ["maps", "qk"])
@pytest.mark.parametrize("teacher_kind", ["tiny", "minilm"])
def test_loss_from_cache_equals_loss_from_fresh_teacher(tmp_path, glue, tiny_teacher, teacher_kind, encoding):
    """From stored maps, or from queries and keys multiplied out on the training device."""
    teacher = tiny_teacher if teacher_kind == "tiny" else default_teacher_path()
    dump(teacher, glue, tmp_path / "c", limit=16, block_mb=1, attention_encoding=encoding)
    cache = open_cache(tmp_path / "c")
    ragged = next(stream_batches(cache, BatchOrder(cache.block_starts, 16, 1, 0), 0, 0, 0)).examples
    batch = pad_batch(ragged, torch.device("cpu"), None)
    t = cache.manifest.teacher
    student = BertForSequenceClassification(BertConfig(vocab_size=t.config["vocab_size"], hidden_size=48,
                                                       num_hidden_layers=2, num_attention_heads=t.num_heads,
                                                       intermediate_size=64))
    student.set_attn_implementation(capture_implementation("scores"))
    out = student(input_ids=batch.input_ids, token_type_ids=batch.token_type_ids, attention_mask=batch.mask.long(),
                  output_hidden_states=True, output_attentions=True)
    projection = torch.nn.Linear(48, t.hidden_size)
    layer = t.num_layers
    hidden, attention = fresh_targets(teacher, batch, [0, layer])
    for ours, theirs in [(batch.hidden, hidden)]:
        for m, n in [(0, 0), (2, layer)]:
            got = hidden_mse(out.hidden_states[m], ours[n], batch.mask, projection)
            expected = hidden_mse(out.hidden_states[m], theirs[n], batch.mask, projection).item()
            assert got.item() == pytest.approx(expected, rel=2e-3)
    got = attention_mse(out.attentions[1], batch.attention[layer], batch.mask)
    assert got.item() == pytest.approx(attention_mse(out.attentions[1], attention[layer], batch.mask).item(), rel=2e-3)


def test_tiny_run_loss_falls_and_student_loads_with_pipeline(tmp_path, tiny_cache, glue):
    out = tmp_path / "run"
    metrics = train_student(config(tiny_cache, out, epochs_intermediate=4, lr_intermediate=2e-3, stage="all",
                                   eval_data=glue / "SST-2", warmup=0.0), command="test", progress=False)
    losses = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    intermediate = [e["loss"] for e in losses if e.get("stage") == "intermediate" and "loss" in e]
    order = BatchOrder(open_cache(tiny_cache).block_starts, 8, 2, seed=42)  # stage 0 uses the run's seed
    assert len(intermediate) == sum(order.steps_per_epoch(e) for e in range(4))
    assert sum(intermediate[-5:]) / 5 < 0.8 * sum(intermediate[:5]) / 5
    assert "accuracy" in metrics and [e["stage"] for e in losses if "eval" in e] == ["prediction"]
    assert (out / "best" / "config.json").exists() and (out / "last" / "projections.pt").exists()
    assert json.loads((out / "train_config.json").read_text())["layer_map_resolved"] == [1, 2, 3]
    assert (out / "command.txt").read_text() == "test\n"
    classify = pipeline("text-classification", model=str(out / "last"))
    assert classify("a gorgeous , witty , seductive movie")[0]["label"] in {"0", "1"}  # SST-2's label names


@pytest.mark.parametrize("die_at, older", [  # mid stage 1, start of stage 2, mid stage 2 (save_every=3)
    (5, False), (9, False), (12, False),
    (5, True),  # a checkpoint of an older version, its batches done saved as "batch"
])
def test_resume_reaches_the_same_weights(tmp_path, tiny_cache, monkeypatch, die_at, older):
    from student import trainer

    whole = tmp_path / "whole"
    train_student(config(tiny_cache, whole, stage="all", max_steps=7), command="a", progress=False)
    calls, real_step = [], trainer._train_step

    def dies(*args):
        calls.append(1)
        if len(calls) == die_at:
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(trainer, "_train_step", dies)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train_student(config(tiny_cache, cut, stage="all", max_steps=7), command="b", progress=False)
    monkeypatch.undo()
    with pytest.raises(UserError, match="--resume"):
        train_student(config(tiny_cache, cut, stage="all", max_steps=7), command="b", progress=False)
    if older:
        checkpoint = torch.load(cut / "checkpoint.pt", weights_only=False)
        assert checkpoint["state"]["batches_done"] > 0
        checkpoint["state"]["batch"] = checkpoint["state"].pop("batches_done")
        torch.save(checkpoint, cut / "checkpoint.pt")
    train_student(config(tiny_cache, cut, stage="all", max_steps=7, resume=True), command="c", progress=False)
    a = BertForSequenceClassification.from_pretrained(whole / "last").state_dict()
    b = BertForSequenceClassification.from_pretrained(cut / "last").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    pa, pb = (torch.load(run / "last" / "projections.pt")["state"] for run in (whole, cut))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)


@pytest.mark.parametrize("overrides, message", [
    ({"student": "layers=3,hidden=32,ffn=64,heads=3"}, "hidden size 32 must be a positive multiple of heads 3"),
    ({"layer_map": "1,2,9"}, "--layer-map: need 3 teacher layers in 1..3"),
    ({"student": "tinybert8"}, "--student: 'tinybert8' is not a preset"),
])
def test_bad_setups_fail_before_training(tmp_path, tiny_cache, overrides, message):
    with pytest.raises(UserError, match=message):
        train_student(config(tiny_cache, tmp_path / "r", **overrides), command="x", progress=False)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_layers_absent_from_cache_and_missing_logits(tmp_path, glue, tiny_bare_teacher):
    dump(tiny_bare_teacher, glue, tmp_path / "c", layers=(0, 1, 2))
    with pytest.raises(UserError, match=r"teacher layers \[3\] are not in --cache \(it has \[0, 1, 2\]\)"):
        train_student(config(tmp_path / "c", tmp_path / "r", stage="intermediate"), command="x", progress=False)
    with pytest.raises(UserError, match="no teacher logits"):
        train_student(config(tmp_path / "c", tmp_path / "r", layer_map="1,2,2"), command="x", progress=False)
    assert not (tmp_path / "r").exists()


def test_prediction_stage_reads_logits_only(tiny_cache):
    """The prediction stage matches logits alone, so it must not pay for reading the layers."""
    from student.setup import CachedTargets

    targets = CachedTargets(tiny_cache, [0, 1, 2, 3])
    order = BatchOrder(targets.block_starts, 8, window_blocks=2, seed=0)
    cpu = torch.device("cpu")
    layered = list(targets.batches(order, 0, 0, 0, cpu, None, True))
    logits_only = list(targets.batches(order, 0, 0, 0, cpu, None, False))
    assert len(layered) == len(logits_only) and set(layered[0].hidden) == {0, 1, 2, 3}
    for full, light in zip(layered, logits_only, strict=True):
        assert light.hidden == {} and light.attention == {}
        assert torch.equal(full.logits, light.logits) and torch.equal(full.input_ids, light.input_ids)
    assert targets.logits_only.hidden_layers == [] and targets.logits_only.attention_layers == []


def test_cpu_training_reads_in_process_by_default(tmp_path, tiny_cache):
    """On a CPU a reader process only competes with the student for the same cores."""
    out = tmp_path / "run"
    train_student(config(tiny_cache, out, workers=None, device="cpu", stage="intermediate", max_steps=2),
                  command="test", progress=False)
    resolved = json.loads((out / "train_config.json").read_text())
    assert resolved["workers"] is None and resolved["workers_resolved"] == 0
