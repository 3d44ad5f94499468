"""A run folder is never reused: any folder holding run files is someone's run, continued only by
--resume from its checkpoint; nothing in it is overwritten or appended to."""

import pytest

from tests.helpers import assert_refused, run

TRAIN = ["train-student", "--student", "layers=1,hidden=16,ffn=32,heads=4", "--max-steps", 2, "--stage",
         "intermediate"]


def test_a_finished_run_without_its_checkpoint_is_not_overwritten(tmp_path, tiny_cache):
    out = tmp_path / "run"
    assert run(*TRAIN, "--cache", tiny_cache, "--out", out).exit_code == 0
    (out / "checkpoint.pt").unlink(missing_ok=True)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert_refused(run(*TRAIN, "--cache", tiny_cache, "--out", out), f"--out: {out} already holds a run (")
    assert_refused(run(*TRAIN, "--cache", tiny_cache, "--out", out, "--resume"),
                   f"--resume: {out} has no checkpoint to resume from")
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("name", ["best", "tensorboard", "metrics.jsonl"])
def test_a_folder_with_a_run_file_is_refused_before_any_work(tmp_path, tiny_cache, name):
    out = tmp_path / "run"
    out.mkdir()
    (out / name).write_text("mine")
    assert_refused(run(*TRAIN, "--tensorboard", "--cache", tiny_cache, "--out", out),
                   f"--out: {out} already holds a run ({name})")
    assert [p.name for p in out.iterdir()] == [name] and (out / name).read_text() == "mine"
