"""Task readers on real GLUE files and official-format samples, and their errors on bad input."""

import json

import numpy as np
import pytest

from cache.data.readers import ColumnSpec, load_examples
from cache.runtime.errors import DataError, UserError


def count_rows(path, header=True):
    return len([line for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]) - header


@pytest.mark.parametrize("task, folder, header",
                         [("sst2", "SST-2", True), ("cola", "CoLA", False), ("mrpc", "MRPC", True)])
@pytest.mark.parametrize("split", ["train", "dev"])
def test_real_glue_files(glue, task, folder, header, split):
    examples = load_examples(task, glue / folder, split)
    path = glue / folder / f"{split}.tsv"
    assert len(examples) == count_rows(path, header)
    first = path.read_text(encoding="utf-8-sig").splitlines()[int(header)].split("\t")
    columns = {"sst2": (0, None, 1), "cola": (3, None, 1), "mrpc": (3, 4, 0)}[task]  # text, pair, label
    expected = [first[c] if c is not None else None for c in columns]
    assert examples.texts[0] == expected[0]
    assert (examples.pairs[0] if examples.pairs else None) == expected[1]
    assert examples.label_names[examples.labels[0]] == expected[2]
    assert set(np.unique(examples.labels)) <= {0, 1}


OFFICIAL = {  # header + one row in each task's official train.tsv layout
    "stsb": ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
             "0\tmain-captions\tMSRvid\t2012test\t0001\tnone\tnone\tA plane is taking off."
             "\tAn air plane is taking off.\t5.000"),
    "qqp": ("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
            "133273\t213221\t213222\tHow is the life of a math student?\tWhich level of prepration is enough?\t0"),
    "mnli": (("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse"
              "\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label"),
             ("0\t31193\t31193n\tgovernment\t( ( x ) )\t( ( y ) )\t(ROOT x)\t(ROOT y)"
              "\tConceptually cream skimming has two basic dimensions.\tProduct and geography are what make it work."
              "\tneutral\tneutral")),
    "qnli": ("index\tquestion\tsentence\tlabel",
             "0\tWhen did the third Digimon series begin?\tUnlike the two seasons before it, it was darker."
             "\tnot_entailment"),
    "rte": ("index\tsentence1\tsentence2\tlabel",
            "0\tNo Weapons of Mass Destruction Found in Iraq Yet.\tWeapons of Mass Destruction Found in Iraq."
            "\tnot_entailment"),
    "wnli": ("index\tsentence1\tsentence2\tlabel",
             "0\tI stuck a pin through a carrot.\tThe carrot had a hole.\t1"),
}
EXPECTED = {"stsb": 5.0, "qqp": 0, "mnli": 2, "qnli": 1, "rte": 1, "wnli": 1}


@pytest.mark.parametrize("task", sorted(OFFICIAL))
def test_official_format_samples(tmp_path, task):
    header, row = OFFICIAL[task]
    (tmp_path / "train.tsv").write_text(f"{header}\n{row}\n")
    examples = load_examples(task, tmp_path, "train")
    fields = dict(zip(header.split("\t"), row.split("\t"), strict=True))
    text_col, pair_col = {"qqp": ("question1", "question2"), "qnli": ("question", "sentence")}.get(
        task, ("sentence1", "sentence2"))
    assert examples.texts == [fields[text_col]] and examples.pairs == [fields[pair_col]]
    assert examples.labels[0] == EXPECTED[task]
    assert examples.labels.dtype == (np.float32 if task == "stsb" else np.int64)
    assert (examples.label_names is None) == (task == "stsb")


def test_test_split_is_unlabelled(tmp_path):
    (tmp_path / "test.tsv").write_text("index\tsentence\n0\tBill whistled past the house.\n")
    examples = load_examples("cola", tmp_path, "test")
    assert examples.texts == ["Bill whistled past the house."] and examples.labels is None


def test_generic_files(tmp_path):
    (tmp_path / "a.csv").write_text('review,stars\n"Great, really",good\nAwful,bad\nFine,good\n')
    examples = load_examples("csv", tmp_path / "a.csv", "train", columns=ColumnSpec(text="review", label="stars"))
    assert examples.texts[0] == "Great, really" and examples.label_names == ("bad", "good")
    assert list(examples.labels) == [1, 0, 1]
    ordered = load_examples("csv", tmp_path / "a.csv", "train",
                            columns=ColumnSpec(text="review", label="stars", labels=("good", "bad")))
    assert list(ordered.labels) == [0, 1, 0]

    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"q": "a?", "p": "b.", "score": 2.5}, {"q": "c?", "p": "d.", "score": 0}]))
    pairs = load_examples("jsonl", tmp_path / "b.jsonl", "x",
                          columns=ColumnSpec(text="q", pair="p", label="score", regression=True))
    assert pairs.pairs == ["b.", "d."] and list(pairs.labels) == [2.5, 0.0]

    (tmp_path / "train.tsv").write_text("text\nno label column here\n")
    assert load_examples("tsv", tmp_path, "train").labels is None


def test_plain_text_skips_blank_lines(tmp_path):
    (tmp_path / "corpus.txt").write_text("first line\n\n  \nsecond line\n")
    examples = load_examples("text", tmp_path / "corpus.txt", "train")
    assert examples.texts == ["first line", "second line"] and examples.labels is None


def test_limit(glue):
    assert len(load_examples("sst2", glue / "SST-2", "train", limit=7)) == 7


BAD = [  # (file name, bytes, task, columns, expected "file:row: problem")
    ("train.tsv", b"sentence\tlabel\ngood film\t1\n\t0\n", "sst2", {}, r"train.tsv:3: empty text"),
    ("train.tsv", b"sentence\tlabel\ngood film\tmaybe\n", "sst2", {}, r"train.tsv:2: label 'maybe' is not one of 0, 1"),
    ("train.tsv", b"text\tlabel\ngood film\t1\n", "sst2", {}, r"train.tsv:1: no column 'sentence'"),
    ("train.tsv", b"sentence\tlabel\ngood\t1\nbad\xff film\t0\n", "sst2", {}, r"train.tsv:3: not valid UTF-8"),
    ("train.tsv", b"sentence\tlabel\ngood\t1\t7\n", "sst2", {}, r"train.tsv:2: row has 3 fields, header has 2"),
    ("train.tsv", b"", "sst2", {}, r"train.tsv: file is empty"),
    ("train.tsv", b"sentence\tlabel\n", "sst2", {}, r"train.tsv: no examples"),
    ("train.tsv", b"a\tb\tc\tok\n", "stsb", {}, r"train.tsv:1: no column 'sentence1'"),
    ("train.tsv", b"gj04\t1\n", "cola", {}, r"train.tsv:1: row has 2 fields, needs column 4"),
    ("d.jsonl", b'{"text": "fine"}\n{"txt": "x"}\n', "jsonl", {}, r"d.jsonl:2: missing key 'text'"),
    ("d.jsonl", b'{"text": "fine"}\nnot json\n', "jsonl", {}, r"d.jsonl:2: not valid JSON"),
    ("d.csv", b"text,label\nok,1\n   ,0\n", "csv", {}, r"d.csv:3: empty text"),
    ("d.csv", b"text,y\nok,1\n", "csv", {"label": "label"}, r"d.csv:1: no column 'label'"),
    ("d.csv", b"text,label\nok,high\n", "csv", {"regression": True}, r"d.csv:2: label 'high' is not a number"),
]


@pytest.mark.parametrize("name, content, task, columns, message", BAD)
def test_bad_input_names_file_and_row(tmp_path, name, content, task, columns, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message) as error:
        load_examples(task, tmp_path / name, "train", columns=ColumnSpec(**columns))
    assert str(tmp_path / name) in str(error.value) and "\n" not in str(error.value)


def test_missing_file_and_unknown_task(tmp_path):
    with pytest.raises(DataError, match=r"dev.tsv: no such file"):
        load_examples("sst2", tmp_path, "dev")
    with pytest.raises(UserError, match="--task: unknown task 'sst3'"):
        load_examples("sst3", tmp_path, "dev")
