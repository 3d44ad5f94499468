"""The online baseline runs the trainer's own code on the same batches; only the targets'
source differs, so a cached and an online run agree up to the cache's float16 rounding."""

import json
from dataclasses import replace

import pytest
import torch
from transformers import BertForSequenceClassification

from bench.online import OnlineTargets
from cache.teacher.dump import DumpConfig, dump_teacher
from student.trainer import train_student
from tests.helpers import train_config as config


def test_online_and_cached_runs_differ_only_in_the_targets_source(tmp_path, glue, tiny_teacher):
    dump_config = DumpConfig(task="sst2", data=glue / "SST-2", split="train", out=tmp_path / "c",
                             teacher=str(tiny_teacher), limit=64, block_mb=0.1, batch_size=16)
    dump_teacher(dump_config, command="x", progress=False)
    cached, online = tmp_path / "cached", tmp_path / "online"
    run = config(tmp_path / "c", cached, stage="all", max_steps=6)
    train_student(run, command="x", progress=False)
    train_student(replace(run, out=online), command="x", progress=False, source=OnlineTargets(dump_config))

    def losses(out):  # every term apart: attention's is too small to show in the sum
        entries = map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
        return [(e["stage"], e["step"], [e[k] for k in ("loss", "embd", "hidn", "attn", "pred") if k in e])
                for e in entries]

    for (stage_a, step_a, a), (stage_b, step_b, b) in zip(losses(cached), losses(online), strict=True):
        assert (stage_a, step_a) == (stage_b, step_b) and a == pytest.approx(b, rel=5e-3)
    a = BertForSequenceClassification.from_pretrained(cached / "last").state_dict()
    b = BertForSequenceClassification.from_pretrained(online / "last").state_dict()
    assert all(torch.allclose(a[k], b[k], atol=2e-3) for k in a)
