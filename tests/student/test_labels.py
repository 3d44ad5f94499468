"""Labels by name, splits by name, the task kind from the teacher's head: an evaluation file that
lacks a class, a null or a `1.0` label, a file of another split, a regression teacher over
unlabelled data: each is either scored right or refused in one line."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification

from cache.data.checkpoints import TaskHead, record_head
from cache.data.evaluate import predict
from cache.data.readers import load_examples
from tests.helpers import assert_refused, dump, logged, run, save_tiny_teacher

SENTENCES = ["a fine film", "the worst movie", "it is good", "so bad it hurts", "the best of the year",
             "dull and long", "a warm story", "an empty show"]


def own_data(folder, dev_labels=("pos", "pos", "pos")):
    """Training rows with both classes; a dev file with only the classes given (all `pos`: the
    class whose id is 1 in the training data, 0 if guessed from this file alone)."""
    folder.mkdir(exist_ok=True)
    train = [f"{text}\t{'pos' if i % 2 == 0 else 'neg'}" for i, text in enumerate(SENTENCES * 4)]
    (folder / "train.tsv").write_text("\n".join(["text\tlabel", *train]) + "\n")
    dev = [f"{text}\t{label}" for text, label in zip(SENTENCES, dev_labels, strict=False)]
    (folder / "dev.tsv").write_text("\n".join(["text\tlabel", *dev]) + "\n")
    return folder


def accuracy_by_name(model_folder, data_folder) -> float:
    """Independent scoring: the model's predicted ids, named by its id2label, against the gold names."""
    model = AutoModelForSequenceClassification.from_pretrained(model_folder).eval()
    rows = [line.split("\t") for line in (data_folder / "dev.tsv").read_text().splitlines()[1:]]
    inputs = AutoTokenizer.from_pretrained(model_folder)([text for text, _ in rows], padding=True, return_tensors="pt")
    with torch.inference_mode():
        predicted = model(**inputs).logits.argmax(-1).tolist()
    return float(np.mean([model.config.id2label[p] == gold for p, (_, gold) in zip(predicted, rows, strict=True)]))


def leaning_teacher(path, names=("neg", "pos")):
    """A tiny classifier whose head always answers class 1, recorded as trained on `names`."""
    save_tiny_teacher(path, head=True)
    model = BertForSequenceClassification.from_pretrained(path)
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([0.0, 100.0]))
    record_head(model.config, TaskHead("tsv", names, trained=True))
    model.save_pretrained(path)
    return path


def test_evaluate_maps_gold_labels_by_the_models_names(tmp_path):
    data, teacher = own_data(tmp_path / "data"), leaning_teacher(tmp_path / "teacher")
    result = run("evaluate", "--model", teacher, "--task", "tsv", "--data", data, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["accuracy"] == accuracy_by_name(teacher, data) == 1.0
    own_data(data, dev_labels=("pos", "neutral"))
    assert_refused(run("evaluate", "--model", teacher, "--task", "tsv", "--data", data),
                   f"{data / 'dev.tsv'}:3: label 'neutral' is not one of neg, pos")


def test_finetune_scores_dev_by_the_training_names(tmp_path, tiny_teacher):
    data = own_data(tmp_path / "data")
    result = run("finetune-teacher", "--task", "tsv", "--data", data, "--base", tiny_teacher, "--epochs", 1,
                 "--out", tmp_path / "teacher", "--max-seq-len", 16)
    assert result.exit_code == 0, result.output
    log = (tmp_path / "teacher" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["eval"]["accuracy"] == accuracy_by_name(tmp_path / "teacher", data)


def test_train_student_scores_eval_data_by_the_caches_names(tmp_path, glue):
    data, teacher = own_data(tmp_path / "data"), leaning_teacher(tmp_path / "teacher")
    dump(teacher, glue, tmp_path / "c", task="tsv", data=data / "train.tsv", limit=None)
    result = run("train-student", "--cache", tmp_path / "c", "--student", "layers=1,hidden=16,ffn=32,heads=4",
                 "--stage", "prediction", "--epochs-prediction", 3, "--lr-prediction", 1e-2, "--eval-data", data,
                 "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert logged(tmp_path / "run", "eval")[-1]["accuracy"] == accuracy_by_name(tmp_path / "run" / "last", data)


@pytest.mark.parametrize("content, expected", [
    ('{"text": "fine", "label": 1}\n{"text": "bad", "label": null}\n', "data.jsonl:2: no label (null or empty)"),
    ('{"text": "fine", "label": 1}\n{"text": "bad"}\n', "data.jsonl:2: no label (null or empty)"),
])
def test_missing_labels_are_refused_with_their_row(tmp_path, tiny_teacher, content, expected):
    (tmp_path / "data.jsonl").write_text(content)
    result = run("dump-teacher", "--task", "jsonl", "--data", tmp_path / "data.jsonl", "--teacher", tiny_teacher,
                 "--out", tmp_path / "c")
    assert_refused(result, str(tmp_path / expected))


def test_numeric_labels_are_one_class_however_written(tmp_path, glue, tiny_teacher):
    rows = [{"text": t, "label": label} for t, label in zip(SENTENCES, [1, 1.0, 0, "1", 0.0, " 0 ", 1, 0],
                                                            strict=True)]
    (tmp_path / "data.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    examples = load_examples("jsonl", tmp_path / "data.jsonl", "train")
    assert examples.label_names == ("0", "1") and examples.labels.tolist() == [1, 1, 0, 1, 0, 0, 1, 0]
    dump(tiny_teacher, glue, tmp_path / "c", task="jsonl", data=tmp_path / "data.jsonl", limit=None)  # 2 outputs


def test_a_file_of_another_split_is_refused(tmp_path, glue, tiny_teacher):
    data = own_data(tmp_path / "data")
    assert_refused(run("evaluate", "--model", tiny_teacher, "--task", "tsv", "--data", data / "train.tsv"),
                   f"{data / 'train.tsv'}: is the train split by its name, not 'dev'")
    result = run("finetune-teacher", "--task", "tsv", "--data", data / "train.tsv", "--base", tiny_teacher,
                 "--epochs", 1, "--out", tmp_path / "teacher", "--max-seq-len", 16)
    assert result.exit_code == 0 and "dev" not in result.output, result.output  # a single file is not evaluated
    assert not (tmp_path / "teacher" / "metrics.jsonl").exists() or \
        "eval" not in (tmp_path / "teacher" / "metrics.jsonl").read_text()


def test_a_plain_dataset_is_the_split_it_was_saved_as(tmp_path, tiny_teacher):
    import datasets

    datasets.Dataset.from_dict({"text": SENTENCES, "label": [0, 1] * 4}, split="train").save_to_disk(tmp_path / "ds")
    result = run("dump-teacher", "--task", "datasets", "--data", tmp_path / "ds", "--split", "dev",
                 "--teacher", tiny_teacher, "--out", tmp_path / "c")
    assert_refused(result, f"{tmp_path / 'ds'}: is the 'train' split, not 'dev'; give --split train")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "state.json").write_text("{not json")
    result = run("dump-teacher", "--task", "datasets", "--data", tmp_path / "broken", "--teacher", tiny_teacher,
                 "--out", tmp_path / "c")
    assert_refused(result, f"{tmp_path / 'broken' / 'state.json'}: not valid JSON")


def test_a_regression_teacher_over_unlabelled_data_trains_its_head(tmp_path, glue):
    """The task kind is the head's: one output is regression, whatever the data's labels."""
    save_tiny_teacher(tmp_path / "teacher", head=True)
    model = BertForSequenceClassification.from_pretrained(tmp_path / "teacher", num_labels=1,
                                                          ignore_mismatched_sizes=True)
    record_head(model.config, TaskHead("text", None, trained=True))
    model.save_pretrained(tmp_path / "teacher")
    (tmp_path / "text.txt").write_text("\n".join(SENTENCES * 3) + "\n")
    dump(tmp_path / "teacher", glue, tmp_path / "c", task="text", data=tmp_path / "text.txt", limit=None)
    result = run("train-student", "--cache", tmp_path / "c", "--student", "layers=1,hidden=16,ffn=32,heads=4",
                 "--stage", "prediction", "--epochs-prediction", 4, "--lr-prediction", 1e-3, "--log-every", 1,
                 "--batch-size", 8, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    losses = logged(tmp_path / "run", "pred")
    assert min(losses) > 0 and losses[-1] < losses[0]
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "last")
    teacher = AutoModelForSequenceClassification.from_pretrained(tmp_path / "teacher")
    examples = load_examples("text", tmp_path / "text.txt", "train")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "teacher")
    gap = np.mean((predict(student, tokenizer, examples, 16) - predict(teacher, tokenizer, examples, 16)) ** 2)
    assert gap < losses[0]  # the student's one output has moved towards the teacher's


def test_a_stage_whose_weights_are_all_zero_is_refused(tmp_path, tiny_cache):
    result = run("train-student", "--cache", tiny_cache, "--student", "layers=1,hidden=16,ffn=32,heads=4",
                 "--stage", "prediction", "--layer-weights", "1,1,0", "--out", tmp_path / "run")
    assert_refused(result, "--layer-weights: every weight of the prediction stage is 0, so its loss cannot move")
