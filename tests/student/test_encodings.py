"""Students train from every encoding with the same command; an exact encoding trains exactly as
the float maps do."""

import math

import pytest

from student.trainer import train_student
from tests.helpers import dump, logged, train_config


def test_queries_and_keys_train_as_the_maps_do(tmp_path, glue, tiny_teacher):
    losses = {}
    for encoding in ("maps:float32", "qk:float32"):
        cache = tmp_path / encoding.replace(":", "-")
        dump(tiny_teacher, glue, cache, hidden_encoding="float32", attention_encoding=encoding, limit=24,
             block_mb=1)  # one block each: the same batches whatever the bytes per example
        train_student(train_config(cache, tmp_path / f"out-{cache.name}", max_steps=6), command="test", progress=False)
        losses[encoding] = {key: logged(tmp_path / f"out-{cache.name}", key) for key in ("loss", "attn", "hidn")}
    for key, values in losses["maps:float32"].items():
        assert values == pytest.approx(losses["qk:float32"][key], rel=1e-4), key


@pytest.mark.parametrize("hidden, attention", [("int8", "maps:uint8"), ("fp8", "topk:4"), ("float16", "qkv:int8")])
def test_students_train_from_every_encoding(tmp_path, glue, tiny_teacher, hidden, attention):
    dump(tiny_teacher, glue, tmp_path / "c", attention="probs", hidden_encoding=hidden, attention_encoding=attention,
         limit=24)
    train_student(train_config(tmp_path / "c", tmp_path / "out", max_steps=4), command="test", progress=False)
    losses = logged(tmp_path / "out", "attn")
    assert len(losses) >= 2 and all(math.isfinite(x) and x > 0 for x in losses)
