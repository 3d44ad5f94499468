"""Model folders are checked before their weights load: a tokenizer that really tokenises, a head
that fits the task, and the task and labels that models saved here record."""

import shutil

import pytest
from transformers import AutoConfig, BertConfig, BertForSequenceClassification, BertModel, BertTokenizer

from cache.data.checkpoints import TaskHead, default_teacher_path, record_head, recorded_head
from student.trainer import train_student
from tests.helpers import SPECIALS, assert_refused, run, save_tiny_teacher
from tests.helpers import train_config as config


def without_tokenizer(model_dir, out):
    """A copy of a model folder with only its config and weights, as a careless copy leaves it."""
    out.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(model_dir / name, out / name)
    return out


@pytest.mark.parametrize("teacher", ["tiny", "minilm"])
def test_teacher_without_tokenizer_files_is_refused(tmp_path, glue, tiny_teacher, teacher):
    from pathlib import Path

    source = tiny_teacher if teacher == "tiny" else Path(default_teacher_path())
    bare = without_tokenizer(source, tmp_path / "bare")
    result = run("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--limit", 8, "--teacher", bare,
                 "--out", tmp_path / "c")
    assert_refused(result, f"--teacher: {bare}: the tokenizer has no vocabulary beyond its special tokens")
    assert not (tmp_path / "c").exists()


def test_tokenizer_that_knows_no_ordinary_word_is_refused(tmp_path, glue):
    vocab = SPECIALS + ["zyzzyva", "quixotry"]
    teacher = tmp_path / "t"
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                         intermediate_size=64)).save_pretrained(teacher)
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(teacher)
    result = run("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--limit", 8, "--teacher", teacher,
                 "--out", tmp_path / "c")
    assert_refused(result, "the tokenizer maps ordinary words ('the', 'of', ...) to [UNK]")


def three_label_teacher(tmp_path):
    teacher = save_tiny_teacher(tmp_path / "three", head=True)
    config = AutoConfig.from_pretrained(teacher)
    config.num_labels = 3
    BertForSequenceClassification(config).save_pretrained(teacher)
    return teacher


def test_teacher_head_must_fit_the_labels(tmp_path, glue):
    teacher = three_label_teacher(tmp_path)
    result = run("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--limit", 8, "--teacher", teacher,
                 "--out", tmp_path / "c")
    assert_refused(result, "its head has 3 outputs; ")
    assert "is 2 labels (0, 1)" in result.output and not (tmp_path / "c").exists()


def test_recorded_head_round_trips(tmp_path):
    config = BertConfig()
    record_head(config, TaskHead("sst2", ("0", "1"), trained=True))
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert recorded_head(loaded) == TaskHead("sst2", ("0", "1"), True)
    assert loaded.id2label == {0: "0", 1: "1"} and loaded.finetuning_task == "sst2"


def with_head_record(tmp_path, head: TaskHead):
    model = save_tiny_teacher(tmp_path / "recorded", head=True)
    config = AutoConfig.from_pretrained(model)
    record_head(config, head)
    config.save_pretrained(model)
    return model


@pytest.fixture
def three_class_tsv(tmp_path):
    (tmp_path / "dev.tsv").write_text("text\tlabel\nthe film is good\tpos\nit was bad\tneg\nit is a film\tneutral\n")
    return tmp_path / "dev.tsv"


def test_evaluate_refuses_models_that_do_not_fit(tmp_path, glue, tiny_bare_teacher, tiny_teacher, three_class_tsv):
    sst2 = glue / "SST-2"
    assert_refused(run("evaluate", "--model", tiny_bare_teacher, "--task", "sst2", "--data", sst2),
                    f"--model: {tiny_bare_teacher}: has no classification head (BertModel)")
    assert_refused(run("evaluate", "--model", tiny_teacher, "--task", "tsv", "--data", three_class_tsv),
                    "its head has 2 outputs; ")
    other_task = with_head_record(tmp_path, TaskHead("mrpc", ("0", "1"), trained=True))
    assert_refused(run("evaluate", "--model", other_task, "--task", "sst2", "--data", sst2),
                    "it was trained for mrpc, not sst2")


def test_a_folder_without_a_model_is_named(tmp_path, glue):
    (tmp_path / "empty").mkdir()
    assert_refused(run("evaluate", "--model", tmp_path / "empty", "--task", "sst2", "--data", glue / "SST-2"),
                    f"--model: {tmp_path / 'empty'} holds no model (no config.json, nor a run's best/ or last/)")


def test_student_without_prediction_stage_is_not_scored(tmp_path, tiny_cache, glue):
    out = tmp_path / "run"
    train_student(config(tiny_cache, out, stage="intermediate", max_steps=2), command="test", progress=False)
    assert recorded_head(AutoConfig.from_pretrained(out / "last")) == TaskHead("sst2", ("0", "1"), trained=False)
    assert_refused(run("evaluate", "--model", out / "last", "--task", "sst2", "--data", glue / "SST-2"),
                    "its classification head was never trained")


def test_compare_checks_every_model_first(tmp_path, glue, tiny_teacher, tiny_bare_teacher):
    sst2 = glue / "SST-2"
    assert_refused(run("compare", "--model", f"a={tiny_teacher}", "--model", f"a={tiny_bare_teacher}",
                        "--task", "sst2", "--data", sst2), "the name 'a' is given twice", code=2)
    assert_refused(run("compare", "--model", f"a={tiny_teacher}", "--model", f"b={tiny_bare_teacher}",
                        "--task", "sst2", "--data", sst2),
                    f"--model b: {tiny_bare_teacher}: has no classification head")
    assert_refused(run("compare", "--model", f"a={tiny_teacher}", "--model", f"b={tmp_path / 'nothing'}",
                        "--task", "sst2", "--data", sst2), "is not a folder", code=2)
