"""Students train from every encoding with the same command; an exact encoding trains exactly as
the float maps do."""

import math

import pytest

from student.trainer import train_student
from tests.helpers import dump, logged, train_config


@pytest.mark.parametrize("exact, options", [
    ("queries and keys", {"attention_encoding": "qk:float32"}),
    ("layer 0 from the embedding tables", {"embedding_output": "tables"}),
])
def test_exact_encodings_train_as_stored_float32_maps_do(tmp_path, glue, tiny_teacher, exact, options):
    losses = []
    for name, encoding in (("maps", {}), ("exact", options)):
        cache = tmp_path / name
        dump(tiny_teacher, glue, cache, hidden_encoding="float32", **{"attention_encoding": "maps:float32"} | encoding,
             limit=24, block_mb=1)  # one block each: the same batches whatever the bytes per example
        train_student(train_config(cache, tmp_path / f"out-{name}", max_steps=6), command="test", progress=False)
        losses.append({key: logged(tmp_path / f"out-{name}", key) for key in ("loss", "attn", "hidn", "embd")})
    for key, values in losses[0].items():
        assert values and values == pytest.approx(losses[1][key], rel=1e-4), key


@pytest.mark.parametrize("hidden, attention", [("int8", "maps:uint8"), ("fp8", "topk:4"), ("float16", "qkv:int8")])
def test_students_train_from_every_encoding(tmp_path, glue, tiny_teacher, hidden, attention):
    dump(tiny_teacher, glue, tmp_path / "c", attention="probs", hidden_encoding=hidden, attention_encoding=attention,
         limit=24)
    train_student(train_config(tmp_path / "c", tmp_path / "out", max_steps=4), command="test", progress=False)
    losses = logged(tmp_path / "out", "attn")
    assert len(losses) >= 2 and all(math.isfinite(x) and x > 0 for x in losses)
