"""A dump SIGKILLed anywhere (10 trials: failpoints in every critical window, and random times)
always resumes to a cache equal to an uninterrupted dump, and passes `cache verify`."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from cache.format.manifest import manifest_path, read_manifest
from cache.format.store import open_store
from cache.read.inspect import verify_cache
from tests.helpers import REPO, assert_same_arrays

pytestmark = pytest.mark.slow

FIRST = ["manifest-written:1",  # the first manifest, written but not yet renamed into place
         "unit-mid-write:1",  # the index unit, half written
         "unit-mid-write:3",  # a block, half written
         "unit-staged:2"]  # a block fully staged, not yet renamed into blocks/
LAST = ["unit-mid-write:2", "unit-staged:4",
        "manifest-written:1"]  # in a resumed run the first manifest write is the one marking completion
RANDOM_TRIALS = 3  # killed from outside after a random number of further blocks, at a random moment


def dump_command(glue, teacher, out):
    return [sys.executable, str(REPO / "cli.py"), "dump-teacher", "--task", "sst2", "--data", str(glue / "SST-2"),
            "--teacher", str(teacher), "--limit", "1200", "--block-mb", "0.05", "--batch-size", "16", "--out", str(out),
            "--max-unknown", "1"]  # the tiny teacher knows the words of the first rows only


def assert_consistent(out):
    """What any kill may leave: no manifest, or one whose claims hold for what is on disk."""
    if not manifest_path(out).exists():
        return
    manifest = read_manifest(out)
    committed = open_store(out, manifest.storage).committed_blocks()
    if manifest.complete:
        assert committed == set(range(manifest.num_blocks))
    problems = verify_cache(out)  # every committed block reads back intact
    assert all(p.startswith("cache is incomplete") for p in problems), problems


def committed_blocks(out) -> int:
    return len([n for n in os.listdir(out / "blocks") if n[0].isdigit()]) if (out / "blocks").is_dir() else 0


def test_sigkill_anywhere_resumes_to_an_identical_cache(tmp_path, glue, tiny_teacher):
    out, command = tmp_path / "crashed", dump_command(glue, tiny_teacher, tmp_path / "crashed")
    rng = random.Random(7)
    trials = [*FIRST, *[None] * RANDOM_TRIALS, *LAST]
    killed = 0
    for failpoint in trials:
        env = os.environ | ({"TINYBERT_FAILPOINT": failpoint} if failpoint else {})
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if failpoint is None:
            target = committed_blocks(out) + rng.randint(1, 8)
            while committed_blocks(out) < target and process.poll() is None:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.05))
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=600)  # a hang guard only: starting torch on a loaded 2-core machine is slow
        killed += process.returncode == -signal.SIGKILL
        assert process.returncode in (0, -signal.SIGKILL), process.stderr.read()
        assert_consistent(out)
    assert killed >= 7 and not read_manifest(out).complete
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert finished.returncode == 0, finished.stderr
    assert read_manifest(out).complete and verify_cache(out) == []

    whole = tmp_path / "whole"
    subprocess.run(dump_command(glue, tiny_teacher, whole), cwd=REPO, check=True, capture_output=True)
    assert_same_arrays(whole, out)
