"""MiniLMv2's relation objective (`--objective minilmv2`): from a qkv cache as from the live teacher,
refused where the cache cannot give it, and zero for a student that is the teacher (the real MiniLM)."""

import json
from dataclasses import replace

import pytest
import torch

from cache.data.checkpoints import default_teacher_path
from cache.teacher.dump import DumpConfig, dump_teacher
from student.trainer import train_student
from tests.helpers import assert_refused, dump, logged, run, train_config

SMALL = "layers=2,hidden=24,ffn=48,heads=3"  # another width and head count than the tiny teacher's 32 x 4


def test_relations_from_the_cache_are_those_of_the_live_teacher(tmp_path, glue, tiny_teacher):
    from bench.online import OnlineTargets

    dump_config = DumpConfig(task="sst2", data=glue / "SST-2", out=tmp_path / "c", teacher=str(tiny_teacher),
                             limit=48, block_mb=0.05, batch_size=16, max_unknown=1.0, attention_encoding="qkv")
    dump_teacher(dump_config, command="x", progress=False)
    config = train_config(tmp_path / "c", tmp_path / "cached", student=SMALL, objective="minilmv2", stage="all",
                          max_steps=4)
    train_student(config, command="x", progress=False)
    train_student(replace(config, out=tmp_path / "online"), command="x", progress=False,
                  source=OnlineTargets(dump_config))
    cached, online = logged(tmp_path / "cached", "rel"), logged(tmp_path / "online", "rel")
    assert len(cached) == 4 and cached == pytest.approx(online, rel=5e-3)
    assert logged(tmp_path / "cached", "pred") == pytest.approx(logged(tmp_path / "online", "pred"), rel=5e-3)
    record = json.loads((tmp_path / "cached" / "train_config.json").read_text())
    assert record["relations_resolved"] == {"teacher_layer": 3, "student_layer": 2, "heads": 8}  # gcd(32, 24)
    assert not (tmp_path / "cached" / "last" / "projections.pt").exists()  # nothing but the student


@pytest.fixture(scope="module")
def qkv_cache(tmp_path_factory, glue, tiny_teacher):
    out = tmp_path_factory.mktemp("qkv") / "c"
    dump(tiny_teacher, glue, out, attention_encoding="qkv", limit=16)
    return out


@pytest.mark.parametrize(("options", "expected"), [
    (["--relation-heads", "5"], "--relation-heads: 5 does not divide the teacher's width 32 and the student's 24"),
    (["--teacher-layer", "4"], "--teacher-layer: layer 4 is not in --cache (it stores the queries, keys and values "
                               "of layers [1, 2, 3])"),
    (["--student-layer", "3"], "--student-layer: the student has layers 1..2, not 3"),
])
def test_bad_relation_options_are_refused(tmp_path, qkv_cache, options, expected):
    assert_refused(run("train-student", "--cache", qkv_cache, "--student", SMALL, "--objective", "minilmv2",
                       "--out", tmp_path / "r", *options), expected)


def test_a_cache_without_values_is_refused(tmp_path, tiny_cache):
    assert_refused(run("train-student", "--cache", tiny_cache, "--objective", "minilmv2", "--out", tmp_path / "r"),
                   "--objective minilmv2 reads a teacher layer's queries, keys and values, and --cache stores "
                   "maps:float16 attention; dump it with --attention-encoding qkv")


def test_the_real_minilm_copied_whole_has_no_relation_loss(tmp_path, glue):
    """A student that is the packaged MiniLM (all six layers copied) matches its relations on held-out
    sentences but for the cache's float16 rounding; a random student of the same shape is far from
    them (evaluated without dropout, after one step too small to move either)."""
    for split, out in (("train", "c"), ("dev", "held-out")):
        dump(default_teacher_path(), glue, tmp_path / out, split=split, attention_encoding="qkv", limit=32, layers=[6])
    made = run("init-student", "--teacher", default_teacher_path(), "--layers", 6, "--out", tmp_path / "copy")
    assert made.exit_code == 0, made.output
    for student, out in ((tmp_path / "copy", "same"), ("layers=6,hidden=384,ffn=1536,heads=12", "random")):
        trained = run("train-student", "--cache", tmp_path / "c", "--eval-cache", tmp_path / "held-out", "--student",
                      student, "--objective", "minilmv2", "--stage", "intermediate", "--max-steps", 1,
                      "--lr-intermediate", 1e-12, "--out", tmp_path / out)
        assert trained.exit_code == 0, trained.output
    same, random = (logged(tmp_path / out, "eval")[-1]["rel"] for out in ("same", "random"))
    assert same < 1e-3 < 0.1 < random


def test_minilmv2_with_the_embedding_term_trains_and_saves_w_h(tmp_path, qkv_cache):
    out = tmp_path / "embedding"
    train_student(train_config(qkv_cache, out, student=SMALL, stage="intermediate", objective="minilmv2",
                               embedding_loss="cosine", max_steps=2), command="x", progress=False)
    assert len(logged(out, "rel")) == len(logged(out, "emb")) == 2
    saved = torch.load(out / "last" / "projections.pt")["state"]
    assert saved["maps.1.weight"].shape == (32, 24)  # W_h: the student's 24 onto the teacher's 32
