"""init-student: a student that starts from teacher layers, as a checkpoint folder that
train-student takes without ever loading the teacher."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification, BertModel

from cache.data.checkpoints import TaskHead, default_teacher_path, record_head, recorded_head
from cache.runtime.errors import UserError
from cache.teacher.config import InitConfig
from cache.teacher.init_student import init_student
from cli import cli
from tests.helpers import dump


def assert_copied(student_dir: Path, teacher: BertModel, layer_map: list[int]) -> None:
    student = BertForSequenceClassification.from_pretrained(student_dir)
    assert student.config.num_hidden_layers == len(layer_map)
    assert student.config.hidden_size == teacher.config.hidden_size
    for name, value in teacher.embeddings.state_dict().items():
        assert torch.equal(student.bert.embeddings.state_dict()[name], value), name
    for m, n in enumerate(layer_map):
        theirs = teacher.encoder.layer[n - 1].state_dict()
        for name, value in student.bert.encoder.layer[m].state_dict().items():
            assert torch.equal(value, theirs[name]), (m, name)


def test_copies_the_mapped_layers(tmp_path, tiny_teacher):
    layer_map = init_student(InitConfig(teacher=str(tiny_teacher), out=tmp_path / "s", layer_map="1,3"), "test")
    assert layer_map == [1, 3]
    assert_copied(tmp_path / "s", BertModel.from_pretrained(tiny_teacher), [1, 3])
    assert recorded_head(AutoConfig.from_pretrained(tmp_path / "s")).trained is False  # its head is random
    assert (tmp_path / "s" / "tokenizer_config.json").is_file()


@pytest.mark.slow
def test_real_minilm_layers_and_embedding_output(tmp_path):
    """Uniform map for 2 of MiniLM's 6 layers is 3, 6; the student's embedding output on a real
    sentence is the teacher's."""
    teacher_dir = default_teacher_path()
    init_student(InitConfig(teacher=teacher_dir, out=tmp_path / "s", layers=2), "test")
    teacher = BertModel.from_pretrained(teacher_dir).eval()
    assert_copied(tmp_path / "s", teacher, [3, 6])
    student = BertForSequenceClassification.from_pretrained(tmp_path / "s").eval()
    inputs = AutoTokenizer.from_pretrained(tmp_path / "s")("a gorgeous , witty , seductive movie", return_tensors="pt")
    with torch.no_grad():
        ours = student.bert(**inputs, output_hidden_states=True).hidden_states[0]
        theirs = teacher(**inputs, output_hidden_states=True).hidden_states[0]
    torch.testing.assert_close(ours, theirs)


def test_head_record_follows_the_teacher(tmp_path, tiny_teacher):
    teacher = shutil.copytree(tiny_teacher, tmp_path / "t")
    config = AutoConfig.from_pretrained(teacher)
    record_head(config, TaskHead("sst2", ("0", "1"), trained=True))
    config.save_pretrained(teacher)
    init_student(InitConfig(teacher=str(teacher), out=tmp_path / "s", layers=1), "test")
    assert recorded_head(AutoConfig.from_pretrained(tmp_path / "s")) == TaskHead("sst2", ("0", "1"), trained=False)


@pytest.mark.parametrize("options, expected", [
    ({"layer_map": "1,5"}, "--layer-map: need 2 teacher layers in 1..3"),
    ({}, "--layer-map uniform needs the number of student layers"),
])
def test_bad_maps_are_refused(tmp_path, tiny_teacher, options, expected):
    with pytest.raises(UserError, match=expected):
        init_student(InitConfig(teacher=str(tiny_teacher), out=tmp_path / "s", **options), "test")
    assert not (tmp_path / "s").exists()


def test_training_from_it_never_loads_the_teacher(tmp_path, glue):
    """The teacher's folder is gone before training: dump, init, delete, then distil and evaluate."""
    from tests.helpers import save_tiny_teacher

    teacher = save_tiny_teacher(tmp_path / "teacher", head=True)
    dump(teacher, glue, tmp_path / "c", limit=32)
    run = CliRunner().invoke(cli, ["init-student", "--teacher", str(teacher), "--layers", "2",
                                   "--out", str(tmp_path / "init")])
    assert run.exit_code == 0 and "from teacher layers 1,3" in run.output, run.output
    shutil.rmtree(teacher)
    run = CliRunner().invoke(cli, ["train-student", "--cache", str(tmp_path / "c"), "--student", str(tmp_path / "init"),
                                   "--epochs-intermediate", "1", "--epochs-prediction", "1", "--batch-size", "8",
                                   "--out", str(tmp_path / "run")])
    assert run.exit_code == 0, run.output
    assert recorded_head(AutoConfig.from_pretrained(tmp_path / "run" / "last")).trained
    scored = CliRunner().invoke(cli, ["evaluate", "--model", str(tmp_path / "run"), "--task", "sst2",
                                      "--data", str(glue / "SST-2"), "--json"])
    assert scored.exit_code == 0 and json.loads(scored.output)["model"] == str(tmp_path / "run" / "last"), scored.output
