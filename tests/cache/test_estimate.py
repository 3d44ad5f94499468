"""`dump-teacher --estimate`: the sizes it prints against the caches the same commands write."""

import json

import pytest

from cache import open_cache
from cache.read.inspect import cache_summary
from tests.helpers import GLUE, run

ENCODINGS = {
    "maps": [],
    "qk": ["--attention-encoding", "qk"],
    "qkv": ["--attention-encoding", "qkv"],
    "int8 + topk:4 + tables": ["--hidden-encoding", "int8", "--attention-encoding", "topk:4", "--attention", "probs",
                               "--embedding-output", "tables"],
}


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_the_estimate_is_the_size_of_the_cache_written(tmp_path, tiny_teacher, name):
    command = ["dump-teacher", "--task", "mrpc", "--data", GLUE / "MRPC", "--teacher", tiny_teacher, "--limit", 300,
               "--max-unknown", 1, "--block-mb", 1, "--out", tmp_path / "c", *ENCODINGS[name]]
    estimated = run(*command, "--estimate", "--json")
    assert estimated.exit_code == 0, estimated.output
    assert not (tmp_path / "c").exists()  # nothing written
    estimate = json.loads(estimated.output)
    asked = [choice for choice in estimate["choices"] if choice["asked"]]
    assert len(asked) == 1
    assert run(*command).exit_code == 0
    cache = open_cache(tmp_path / "c")
    assert estimate["examples"] == len(cache) and estimate["tokens"] == int(cache.lengths.sum())
    on_disk = cache_summary(tmp_path / "c")["sizes"]
    assert asked[0]["total_bytes"] == pytest.approx(on_disk["bytes"], rel=0.02)
    assert asked[0]["attention_bytes_per_token"] == pytest.approx(on_disk["bytes_per_token"]["attention"])
    assert asked[0]["hidden_bytes_per_token"] == pytest.approx(on_disk["bytes_per_token"]["hidden"])


def test_the_estimate_marks_what_auto_chooses_and_reads_the_data(tmp_path, tiny_teacher):
    common = ["dump-teacher", "--task", "mrpc", "--data", GLUE / "MRPC", "--teacher", tiny_teacher, "--limit", 40,
              "--max-unknown", 1, "--out", tmp_path / "c", "--estimate"]
    estimate = json.loads(run(*common, "--json").output)
    auto = [c for c in estimate["choices"] if c["auto"]]
    exact = [c for c in estimate["choices"] if c["attention_encoding"] in ("maps:float16", "qk:float16")
             and c["embedding_output"] == auto[0]["embedding_output"]]
    assert len(auto) == 1 and auto[0] == min(exact, key=lambda c: c["attention_bytes_per_token"])
    assert estimate["lengths"]["max"] <= 128 and estimate["lengths"]["min"] >= 3
    printed = run(*common)
    assert printed.exit_code == 0 and "* what this command stores; a: what auto would" in printed.output
    bad = run("dump-teacher", "--task", "mrpc", "--data", tmp_path / "missing", "--out", tmp_path / "c", "--estimate")
    assert bad.exit_code != 0 and "Traceback" not in bad.output
