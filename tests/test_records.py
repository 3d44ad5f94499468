"""Every output records what made it: the command as it was typed (the console script, `python
cli.py`, torchrun), one version (the package's), and the git revision of the code."""

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from cache import __version__
from cache.runtime.records import code_revision
from tests.helpers import REPO, torchrun


def git_head() -> str | None:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def test_one_version_from_the_package_and_the_revision_of_the_checkout():
    assert __version__ == version("tinybert-distill")
    revision = code_revision()
    assert (revision is None) == (git_head() is None)
    if revision is not None:
        assert revision.removesuffix("+dirty") == git_head()


@pytest.mark.parametrize("how", ["console script", "python cli.py"])
def test_the_command_is_recorded_as_typed(tmp_path, tiny_teacher, how):
    program = [str(Path(sys.executable).parent / "tinybert-distill")] if how == "console script" else \
        [sys.executable, str(REPO / "cli.py")]
    subprocess.run([*program, "init-student", "--teacher", str(tiny_teacher), "--layers", "1", "--out",
                    str(tmp_path / "init")], check=True, capture_output=True, cwd=REPO)
    record = json.loads((tmp_path / "init" / "init_config.json").read_text())
    expected = "tinybert-distill init-student" if how == "console script" else "python cli.py init-student"
    assert record["command"].startswith(expected) and record["project_version"] == __version__
    assert record["code_revision"] == code_revision()


@pytest.mark.slow
def test_a_torchrun_dump_records_the_launcher(tmp_path, glue, tiny_teacher):
    done = torchrun("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--teacher", tiny_teacher,
                    "--limit", 16, "--block-mb", 0.01, "--out", tmp_path / "c", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["command"].startswith("torchrun --nnodes=1 --nproc-per-node=2 cli.py dump-teacher")
    assert manifest["code_revision"] == code_revision()
