"""Trainer options: checkpoints as students, projections, weights, attention kinds,
regression, and the train-student / evaluate commands."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification

from cache.data.readers import load_examples
from cli import cli
from student.model import Projections
from student.trainer import train_student
from tests.helpers import dump, logged, save_tiny_teacher
from tests.helpers import train_config as config


def test_projections_separate_shared_or_per_layer():
    separate, shared, per_layer = (Projections(8, 16, 3, sharing) for sharing in ("separate", "shared", "per-layer"))
    assert len(separate.maps) == 2 and separate.layer(0) is not separate.layer(1)
    assert separate.layer(1) is separate.layer(2) is separate.layer(3)
    assert len(shared.maps) == 1 and shared.layer(0) is shared.layer(3)
    assert len(per_layer.maps) == 4 and len({id(per_layer.layer(m)) for m in range(4)}) == 4


def test_checkpoint_student_weights_and_probs_loss(tmp_path, tiny_cache):
    first = tmp_path / "general"
    train_student(config(tiny_cache, first, stage="intermediate", max_steps=3), command="x", progress=False)
    second = tmp_path / "task"
    train_student(config(tiny_cache, second, student=str(first / "last"), stage="intermediate", max_steps=3,
                         attention_loss="probs", layer_weights=(0, 1, 1, 1, 1)), command="x", progress=False)
    assert logged(second, "embd") == [0.0, 0.0, 0.0]  # lambda_0 = 0 switches the embedding loss off
    attn = logged(second, "attn")
    assert all(0 < a < 1 for a in attn)  # probabilities, not scores: squared errors of values in [0, 1]
    resolved = json.loads((second / "train_config.json").read_text())
    assert resolved["attention_kind"] == "probs" and resolved["layer_weights_resolved"] == [0, 1, 1, 1, 1]


def test_regression_task_trains_against_teacher_predictions(tmp_path, glue):
    mrpc = (glue / "MRPC" / "train.tsv").read_text(encoding="utf-8-sig")
    rows = [line.split("\t") for line in mrpc.splitlines()[1:41]]
    rng = np.random.default_rng(0)
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    lines = [f"{i}\tnews\tf\t2012\t{i}\tnone\tnone\t{r[3]}\t{r[4]}\t{rng.uniform(0, 5):.3f}"
             for i, r in enumerate(rows)]
    (tmp_path / "train.tsv").write_text("\n".join([header, *lines]) + "\n")
    (tmp_path / "dev.tsv").write_text("\n".join([header, *lines[:20]]) + "\n")
    teacher = tmp_path / "teacher"
    save_tiny_teacher(teacher, head=True)
    model = BertForSequenceClassification.from_pretrained(teacher, num_labels=1, problem_type="regression",
                                                          ignore_mismatched_sizes=True)
    model.save_pretrained(teacher)
    dump(teacher, glue, tmp_path / "c", task="stsb", data=tmp_path, limit=None, block_mb=0.5)
    metrics = train_student(config(tmp_path / "c", tmp_path / "r", max_steps=4, eval_data=tmp_path),
                            command="x", progress=False)
    assert set(metrics) == {"pearson", "spearman"}
    assert BertForSequenceClassification.from_pretrained(tmp_path / "r" / "last").config.num_labels == 1
    assert all(p > 0 for p in logged(tmp_path / "r", "pred"))


def test_train_and_evaluate_commands(tmp_path, tiny_cache, glue):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train-student", "--cache", str(tiny_cache), "--student",
                                      "layers=2,hidden=32,ffn=64,heads=4", "--out", str(out), "--max-steps", "2",
                                      "--workers", "0", "--eval-data", str(glue / "SST-2")])
    assert result.exit_code == 0, result.output
    assert (out / "command.txt").read_text().startswith("python cli.py train-student --cache")
    result = CliRunner().invoke(cli, ["evaluate", "--model", str(out / "last"), "--task", "sst2", "--data",
                                      str(glue / "SST-2"), "--json"])
    assert result.exit_code == 0, result.output
    reported = json.loads(result.output)
    model = AutoModelForSequenceClassification.from_pretrained(out / "last").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "last")
    examples = load_examples("sst2", glue / "SST-2", "dev")
    with torch.no_grad():  # one example at a time, no padding: an independent computation
        predictions = [model(**tokenizer(text, return_tensors="pt")).logits.argmax().item() for text in examples.texts]
    assert reported["accuracy"] == pytest.approx(np.mean(np.array(predictions) == examples.labels))
    again = CliRunner().invoke(cli, ["train-student", "--cache", str(tiny_cache), "--out", str(out), "--student",
                                     "layers=2,hidden=32,ffn=64,heads=4"])
    assert again.exit_code == 1 and "already holds a run" in again.output


def test_training_never_opens_the_teacher(tmp_path, glue, tiny_teacher):
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, teacher)
    dump(teacher, glue, tmp_path / "c", limit=40, block_mb=0.1)
    shutil.rmtree(teacher)  # gone: the run must need nothing but the cache
    out = tmp_path / "r"
    train_student(config(tmp_path / "c", out, stage="all", max_steps=4, eval_every=2, eval_data=glue / "SST-2"),
                  command="x", progress=False)
    evaluations = [(e["stage"], e["step"]) for e in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
                   if "eval" in e]
    assert evaluations == [("prediction", 2), ("prediction", 4)]  # the untrained head is not scored
