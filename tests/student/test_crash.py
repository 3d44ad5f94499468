"""train-student SIGKILLed (inside a checkpoint write, and at random moments) and resumed with
--resume ends with exactly the weights of an uninterrupted run."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from transformers import BertForSequenceClassification

from student.trainer import TrainConfig, train_student
from tests.helpers import REPO

pytestmark = pytest.mark.slow

OPTIONS = {"student": "layers=3,hidden=32,ffn=64,heads=4", "stage": "all", "epochs_intermediate": 2,
           "epochs_prediction": 1, "batch_size": 8, "save_every": 2, "workers": 0, "window_blocks": 2}


def command(cache, out, resume):
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in OPTIONS.items()]
    return [sys.executable, str(REPO / "cli.py"), "train-student", "--cache", str(cache), "--out", str(out),
            *flags, *(["--resume"] if resume else [])]


def test_sigkilled_training_resumes_to_the_same_weights(tmp_path, tiny_cache):
    out, rng = tmp_path / "killed", random.Random(3)
    trials = ["checkpoint-written:3", None, None]
    for n, failpoint in enumerate(trials):
        env = os.environ | ({"TINYBERT_FAILPOINT": failpoint} if failpoint else {})
        process = subprocess.Popen(command(tiny_cache, out, resume=n > 0), cwd=REPO, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if failpoint is None:  # after the next checkpoint, at a random moment
            before = (out / "checkpoint.pt").stat().st_mtime_ns
            while (out / "checkpoint.pt").stat().st_mtime_ns == before and process.poll() is None:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.3))
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=600)  # a hang guard only: starting torch on a loaded 2-core machine is slow
        assert process.returncode == -signal.SIGKILL, process.stderr.read()
        assert not (out / "last").exists()
    finished = subprocess.run(command(tiny_cache, out, resume=True), cwd=REPO, capture_output=True, text=True,
                              check=False)
    assert finished.returncode == 0, finished.stderr

    whole = tmp_path / "whole"
    train_student(TrainConfig(cache=tiny_cache, out=whole, **OPTIONS), command="x", progress=False)
    a = BertForSequenceClassification.from_pretrained(whole / "last").state_dict()
    b = BertForSequenceClassification.from_pretrained(out / "last").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (out / "command.txt").read_text().count("--resume") == 3
