"""The command line: commands run, user mistakes give one line and no traceback."""

import json

import pytest

from cache.format.manifest import manifest_path, read_manifest
from tests.helpers import run


def dump_args(glue, teacher, out, data=None, *extra):
    return ["dump-teacher", "--task", "sst2", "--data", data or glue / "SST-2", "--teacher", teacher,
            "--out", out, "--limit", 20, "--block-mb", 0.02, *extra]


def test_dump_info_verify_ls(tmp_path, glue, tiny_teacher):
    out = tmp_path / "caches" / "sst2.zarr"
    first = run(*dump_args(glue, tiny_teacher, out))
    assert first.exit_code == 0, first.output
    assert "wrote 20 of 20 examples" in first.output
    assert "already complete" in run(*dump_args(glue, tiny_teacher, out)).output
    assert read_manifest(out).command.startswith("python cli.py dump-teacher --task sst2")

    info = run("cache", "info", out, "--json")
    assert json.loads(info.output)["data"]["examples"] == 20
    human = run("cache", "info", out).output
    assert "complete" in human and "of their ragged encoded size" in human
    assert run("cache", "verify", out).exit_code == 0
    listing = run("cache", "ls", tmp_path / "caches").output
    assert "sst2.zarr" in listing and "sst2/train" in listing


def test_verify_fails_with_status_1(tmp_path, glue, tiny_teacher):
    out = tmp_path / "c"
    assert run(*dump_args(glue, tiny_teacher, out), "--writer", "process").exit_code == 0
    next((out / "blocks").glob("0*/hidden/c/0/0/0")).write_bytes(b"junk")
    result = run("cache", "verify", out)
    assert result.exit_code == 1 and "hidden" in result.output


@pytest.mark.parametrize("content, message", [
    (b"sentence\tlabel\nfine\t1\n\t0\n", "train.tsv:3: empty text"),
    (b"sentence\tlabel\nfine\t7\n", "train.tsv:2: label '7' is not one of 0, 1"),
    (b"sentence\tlabel\nfi\xffne\t1\n", "train.tsv:2: not valid UTF-8 (byte 0xff)"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, tiny_teacher, glue, content, message):
    (tmp_path / "train.tsv").write_bytes(content)
    result = run(*dump_args(glue, tiny_teacher, tmp_path / "c", tmp_path))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {tmp_path / 'train.tsv'}{message[9:]}"]
    assert "Traceback" not in result.output and not manifest_path(tmp_path / "c").exists()


def test_bad_options(tmp_path, glue, tiny_teacher):
    result = run(*dump_args(glue, tiny_teacher, tmp_path / "c"), "--layers", "0,x")
    assert result.exit_code == 2 and "--layers" in result.output
    result = run(*dump_args(glue, tmp_path, tmp_path / "c"))
    assert result.exit_code == 1 and result.output.startswith("Error: --teacher:") and "Traceback" not in result.output
    assert run("cache", "info", tmp_path).output.startswith("Error:")


def test_help_lists_every_command():
    assert all(name in run("--help").output for name in ["dump-teacher", "cache"])
    assert all(name in run("cache", "--help").output for name in ["info", "verify", "ls"])
    assert "--attention [scores|probs]" in run("dump-teacher", "--help").output
    assert "--writer [auto|thread|process]" in run("dump-teacher", "--help").output
    assert "--embedding-output [stored|tables|auto]" in run("dump-teacher", "--help").output


def test_augment_then_dump(tmp_path, glue, tiny_teacher, small_sst2):
    result = run("augment", "--task", "sst2", "--data", small_sst2, "--out", tmp_path / "aug", "--copies", 2,
                 "--teacher", tiny_teacher)
    assert result.exit_code == 0, result.output
    assert 1 + 96 < len((tmp_path / "aug" / "train.tsv").read_text().splitlines()) <= 1 + 3 * 96  # duplicates dropped
    assert json.loads((tmp_path / "aug" / "augment.json").read_text())["command"].startswith("python cli.py augment")
    result = run(*dump_args(glue, tiny_teacher, tmp_path / "c", tmp_path / "aug"))
    assert result.exit_code == 0 and read_manifest(tmp_path / "c").data.file.endswith("aug/train.tsv")
    (tmp_path / "bad.tsv").write_text("sentence\tlabel\nfine\t1\nno label here\n")
    result = run("augment", "--task", "sst2", "--data", tmp_path / "bad.tsv", "--out", tmp_path / "o",
                 "--teacher", tiny_teacher)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [f"Error: {tmp_path / 'bad.tsv'}:3: row has 1 fields, header has 2"]


def test_console_script_is_the_same_cli():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("tinybert-distill")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert all(command in done.stdout for command in ("dump-teacher", "init-student", "train-student", "compare"))
