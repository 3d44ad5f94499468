"""train-student under torchrun: two CPU ranks (gloo, DDP) with the same global batch and seed log
the losses of one process and end with its weights; killed and resumed, they end where an
uninterrupted two-rank run ends. The student has no dropout: ranks draw their own masks."""

import json
import subprocess

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from cache.runtime.errors import UserError
from student.trainer import train_student
from tests.helpers import logged, torchrun, train_config, vocabulary

pytestmark = pytest.mark.slow
OPTIONS = {"stage": "all", "epochs_intermediate": 2, "epochs_prediction": 1, "save_every": 4, "log_every": 1,
           "window_blocks": 2, "workers": 0, "device": "cpu"}
GLOBAL_BATCH = 8


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A tiny student checkpoint without dropout, on the tiny teachers' vocabulary."""
    torch.manual_seed(11)
    config = BertConfig(vocab_size=len(vocabulary()), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=128, num_labels=2, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    folder = tmp_path_factory.mktemp("student")
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def torchrun_train(cache, out, student, *extra, options=OPTIONS, env=None) -> subprocess.CompletedProcess:
    """Two ranks of GLOBAL_BATCH / 2 examples each."""
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in options.items()]
    return torchrun("train-student", "--cache", cache, "--out", out, "--student", student,
                    f"--batch-size={GLOBAL_BATCH // 2}", *flags, *extra, env=env)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, tiny_cache, student):
    out = tmp_path_factory.mktemp("ddp") / "run"
    result = torchrun_train(tiny_cache, out, student)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("student saved") == 1, result.stdout  # rank 0 reports
    return out


def weights(run):
    return BertForSequenceClassification.from_pretrained(run / "last").state_dict()


def test_two_ranks_log_the_losses_of_one_process(tmp_path, tiny_cache, student, two_ranks):
    one = tmp_path / "one"
    train_student(train_config(tiny_cache, one, student=str(student), batch_size=GLOBAL_BATCH, **OPTIONS),
                  command="one", progress=False)
    for part in ("loss", "embd", "hidn", "attn", "pred"):
        expected, got = logged(one, part), logged(two_ranks, part)
        assert len(got) == len(expected) > 0, part  # one entry per step: rank 0 alone writes the log
        torch.testing.assert_close(torch.tensor(got), torch.tensor(expected), rtol=1e-4, atol=1e-6)
    a, b = weights(one), weights(two_ranks)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)
    recorded = json.loads((two_ranks / "train_config.json").read_text())
    assert recorded["ranks"] == 2 and recorded["global_batch_size"] == GLOBAL_BATCH


def test_killed_ranks_resume_to_the_uninterrupted_run(tmp_path, tiny_cache, student, two_ranks):
    out = tmp_path / "killed"
    killed = torchrun_train(tiny_cache, out, student, env={"TINYBERT_FAILPOINT": "checkpoint-written:3@0"})
    assert killed.returncode != 0 and not (out / "last").exists()
    resumed = torchrun_train(tiny_cache, out, student, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(two_ranks), weights(out)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert logged(out)[-5:] == logged(two_ranks)[-5:]


def test_resuming_with_another_number_of_ranks_is_refused(tmp_path, tiny_cache, student, two_ranks):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(two_ranks, out)
    config = train_config(tiny_cache, out, student=str(student), batch_size=GLOBAL_BATCH // 2, resume=True, **OPTIONS)
    with pytest.raises(UserError, match=r"torchrun ranks \(WORLD_SIZE\): the run has 2, this command 1"):
        train_student(config, command="resume", progress=False)


def test_real_minilm_cache_two_ranks_log_the_losses_of_one_process(tmp_path, glue):
    """MiniLM's targets on real SST-2 sentences; a dropout-free student of its vocabulary."""
    from cache.teacher.dump import DumpConfig, dump_teacher

    cache = tmp_path / "minilm"
    dump_teacher(DumpConfig(task="sst2", data=glue / "SST-2", split="train", out=cache, limit=48, block_mb=0.3),
                 command="test", progress=False)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "student")
    options = OPTIONS | {"stage": "intermediate", "epochs_intermediate": 1}
    one = tmp_path / "one"
    train_student(train_config(cache, one, student=str(tmp_path / "student"), batch_size=GLOBAL_BATCH, **options),
                  command="one", progress=False)
    result = torchrun_train(cache, tmp_path / "two", tmp_path / "student", options=options)
    assert result.returncode == 0, result.stderr
    torch.testing.assert_close(torch.tensor(logged(tmp_path / "two")), torch.tensor(logged(one)), rtol=1e-4, atol=1e-6)
