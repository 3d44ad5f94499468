"""The trainer never continues or saves a silently wrong run: `--resume` refuses any option or
cache that changes what the run computes, a damaged checkpoint is a one-line error, and a loss
that turns NaN or infinite stops the run before anything is saved."""

import re
import shutil

import pytest
import torch
from click.testing import CliRunner

from cache.format.manifest import read_manifest
from cache.runtime.errors import UserError
from cli import cli
from student.trainer import train_student
from tests.helpers import STUDENT, dump, rewrite_manifest_json
from tests.helpers import train_config as config


@pytest.fixture(scope="module")
def run_with_checkpoint(tmp_path_factory, tiny_cache):
    """A run of 3 intermediate steps with its checkpoint."""
    out = tmp_path_factory.mktemp("run") / "run"
    train_student(config(tiny_cache, out, stage="intermediate", max_steps=3), command="test", progress=False)
    return out


CHANGES = {  # option -> (new value, what the refusal names)
    "batch_size": (16, "--batch-size: the run has 8, this command 16"),
    "seed": (7, "--seed: the run has 42, this command 7"),
    "lr_intermediate": (1e-3, "--lr-intermediate: the run has 5e-05, this command 0.001"),
    "layer_weights": ((1.0, 2.0, 1.0, 1.0, 1.0), "--layer-weights: the run has None, this command [1.0, 2.0"),
    "precision": ("bfloat16", "--precision: the run has 'float32', this command 'bfloat16'"),
}
"""Checked from the run's record before anything loads, and (precision, as it resolves) from the
checkpoint once it is read."""


@pytest.mark.parametrize("option", CHANGES, ids=list(CHANGES))
def test_resume_refuses_a_changed_option(tmp_path, tiny_cache, run_with_checkpoint, option):
    out = shutil.copytree(run_with_checkpoint, tmp_path / "run")
    before = (out / "train_config.json").read_text()
    value, named = CHANGES[option]
    with pytest.raises(UserError, match="differs from the (run|checkpoint) in") as refused:
        train_student(config(tiny_cache, out, stage="intermediate", max_steps=3, resume=True, **{option: value}),
                      command="test", progress=False)
    assert named in str(refused.value)
    assert (out / "train_config.json").read_text() == before  # the run's record is untouched


def test_resume_refuses_another_teachers_cache(tmp_path, glue, tiny_cache, run_with_checkpoint):
    from tests.helpers import save_tiny_teacher

    other = dump(save_tiny_teacher(tmp_path / "t2", head=True, seed=5), glue, tmp_path / "other", limit=96,
                 block_mb=0.1, batch_size=16).path
    out = shutil.copytree(run_with_checkpoint, tmp_path / "run")
    with pytest.raises(UserError, match=r"--cache: teacher weights: the checkpoint's cache has \"[0-9a-f]+"):
        train_student(config(other, out, stage="intermediate", max_steps=3, resume=True), command="test",
                      progress=False)


def test_resume_from_a_moved_copy_of_the_cache_continues(tmp_path, tiny_cache, run_with_checkpoint):
    out = shutil.copytree(run_with_checkpoint, tmp_path / "run")
    moved = shutil.copytree(tiny_cache, tmp_path / "moved.zarr")
    train_student(config(moved, out, stage="intermediate", max_steps=3, resume=True, workers=0), command="test",
                  progress=False)
    assert (out / "last" / "config.json").is_file()


def test_truncated_checkpoint_is_one_line(tmp_path, tiny_cache, run_with_checkpoint):
    out = shutil.copytree(run_with_checkpoint, tmp_path / "run")
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    result = CliRunner().invoke(cli, ["train-student", "--cache", str(tiny_cache), "--student", STUDENT,
                                      "--out", str(out), "--resume", "--stage", "intermediate", "--epochs-intermediate",
                                      "1", "--epochs-prediction", "1", "--batch-size", "8", "--max-steps", "3",
                                      "--window-blocks", "2"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith(f"Error: --resume: {out / 'checkpoint.pt'} cannot be read"), result.output


def test_diverging_loss_stops_before_saving(tmp_path, tiny_cache):
    """A learning rate that blows the weights up: the run stops with the step, not a NaN student."""
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"intermediate step \d+: the loss is not finite"):
        train_student(config(tiny_cache, out, stage="intermediate", lr_intermediate=1e30, warmup=0.0,
                             save_every=1, log_every=50), command="test", progress=False)
    assert not (out / "last").exists()
    if (out / "checkpoint.pt").exists():  # whatever was saved is finite
        saved = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
        assert all(torch.isfinite(t).all() for t in saved.values() if t.is_floating_point())


@pytest.mark.parametrize("option, value, expected", [
    ("--layer-weights", "nan,1,1,1,1", "each weight is a finite number >= 0"),
    ("--layer-weights", "a,b", "'a,b' is not comma-separated numbers"),
    ("--layer-weights", "1,-1,1,1,1", "each weight is a finite number >= 0"),
    ("--temperature", "inf", "'inf' is not a finite number"),
    ("--lr-intermediate", "-1", "-1.0 is not in the range x>0"),
    ("--lr-prediction", "nan", "'nan' is not a finite number"),
])
def test_numbers_are_checked_where_parsed(tmp_path, tiny_cache, option, value, expected):
    result = CliRunner().invoke(cli, ["train-student", "--cache", str(tiny_cache), "--student", STUDENT,
                                      "--out", str(tmp_path / "run"), option, value])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output, result.output
    assert not (tmp_path / "run").exists()  # nothing half-made


@pytest.mark.parametrize("option, value, expected", [
    ("layer_weights", (1.0, float("nan"), 1.0, 1.0, 1.0), "--layer-weights: nan is not a finite number in [0, inf]"),
    ("temperature", float("inf"), "--temperature: inf is not a finite number in (0, inf]"),
    ("warmup", 1.0, "warmup: 1 is not a finite number in [0, 1)"),
])
def test_library_configs_check_numbers_too(tmp_path, tiny_cache, option, value, expected):
    with pytest.raises(UserError, match=re.escape(expected)):
        train_student(config(tiny_cache, tmp_path / "run", **{option: value}), command="test", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("where", ["the cache itself", "a data folder", "inside a file"])
def test_out_never_lands_on_inputs(tmp_path, glue, tiny_cache, where):
    cache = shutil.copytree(tiny_cache, tmp_path / "c")
    (tmp_path / "file").write_text("x")
    out = {"the cache itself": cache, "a data folder": shutil.copytree(glue / "SST-2", tmp_path / "SST-2"),
           "inside a file": tmp_path / "file" / "run"}[where]
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else None
    result = CliRunner().invoke(cli, ["train-student", "--cache", str(cache), "--student", STUDENT, "--out", str(out)])
    expected = "lies inside" if where == "inside a file" else "already holds other files"
    assert result.exit_code == 1 and expected in result.output, result.output
    assert before is None or sorted(p.name for p in out.iterdir()) == before
    assert read_manifest(cache).complete


def test_old_format_caches_are_refused(tmp_path, tiny_cache):
    cache = shutil.copytree(tiny_cache, tmp_path / "c")
    rewrite_manifest_json(cache, format_version=1)
    with pytest.raises(UserError, match="cache format version 1 is not supported"):
        train_student(config(cache, tmp_path / "run"), command="test", progress=False)


def test_a_changed_resume_is_refused_before_anything_loads(tmp_path, tiny_cache, run_with_checkpoint):
    """Compared with the options the run recorded: neither torch nor transformers is imported."""
    import subprocess
    import sys

    from tests.helpers import REPO
    from tests.test_catalogue import EARLY_CHECK, assert_refused_text

    out = shutil.copytree(run_with_checkpoint, tmp_path / "run")
    args = ["train-student", "--cache", tiny_cache, "--student", STUDENT, "--out", out, "--resume", "--stage",
            "intermediate", "--epochs-intermediate", 1, "--epochs-prediction", 1, "--batch-size", 8, "--max-steps", 3,
            "--window-blocks", 2, "--seed", 7]
    done = subprocess.run([sys.executable, "-c", EARLY_CHECK, *map(str, args)], text=True, capture_output=True,
                          cwd=REPO, timeout=120, check=False)
    status, output = done.stdout.split("\n", 1)
    assert status == "1 []", done.stdout + done.stderr
    assert_refused_text(output, "--seed: the run has 42, this command 7")
