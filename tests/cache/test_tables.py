"""Parquet, Arrow and Hugging Face `datasets` folders read as the same examples as the TSV they
were made from, dump to the same targets, and fail in one line naming the file and row."""

import re

import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from datasets import Dataset, DatasetDict

from cache import open_cache
from cache.data.checkpoints import default_teacher_path
from cache.data.readers import ColumnSpec, load_examples
from cache.runtime.errors import DataError
from tests.helpers import assert_refused, dump, run, stored_arrays

COLUMNS = ColumnSpec(text="sentence")


@pytest.fixture(scope="module")
def sst2_rows(glue):
    """The first 40 SST-2 training rows, as the TSV reader gives them."""
    examples = load_examples("sst2", glue / "SST-2", "train", limit=40)
    return {"sentence": examples.texts, "label": [int(label) for label in examples.labels]}


@pytest.fixture(scope="module")
def formats(tmp_path_factory, sst2_rows):
    """The same rows written as every format: {name: (task, data, split)}."""
    root = tmp_path_factory.mktemp("tables")
    table = pa.table(sst2_rows)
    pq.write_table(table, root / "train.parquet")
    feather.write_feather(table, root / "train.arrow")  # an Arrow IPC file
    dataset = Dataset.from_dict(sst2_rows)
    dataset.save_to_disk(root / "dataset")  # an Arrow IPC stream, with state.json
    DatasetDict({"train": dataset, "validation": dataset.select(range(5))}).save_to_disk(root / "dict")
    return {"parquet": ("parquet", root / "train.parquet", "train"),
            "parquet folder": ("parquet", root, "train"),
            "arrow": ("arrow", root / "train.arrow", "train"),
            "datasets": ("datasets", root / "dataset", "train"),
            "datasets dict": ("datasets", root / "dict", "train")}


@pytest.mark.parametrize("name", ["parquet", "parquet folder", "arrow", "datasets", "datasets dict"])
def test_same_examples_as_the_tsv(formats, sst2_rows, name):
    task, data, split = formats[name]
    examples = load_examples(task, data, split, columns=COLUMNS)
    assert examples.texts == sst2_rows["sentence"]
    assert examples.labels.tolist() == sst2_rows["label"] and examples.label_names == ("0", "1")


@pytest.mark.slow
def test_real_minilm_dumps_the_same_targets_from_parquet(tmp_path, glue, formats):
    task, data, _ = formats["parquet"]
    teacher = default_teacher_path()
    dump(teacher, glue, tmp_path / "tsv", limit=40, block_mb=1)
    dump(teacher, glue, tmp_path / "parquet", task=task, data=data, columns=COLUMNS, limit=None, block_mb=1)
    tsv, parquet = stored_arrays(tmp_path / "tsv"), stored_arrays(tmp_path / "parquet")
    assert tsv.keys() == parquet.keys()
    for key in tsv:
        assert (tsv[key] == parquet[key]).all(), key
    assert open_cache(tmp_path / "parquet").manifest.data.file == str(data)


def test_a_datasets_folder_through_the_command(tmp_path, tiny_teacher, formats):
    _, data, _ = formats["datasets dict"]
    result = run("dump-teacher", "--task", "datasets", "--data", data, "--split", "validation",
                 "--text-column", "sentence", "--teacher", tiny_teacher, "--out", tmp_path / "c")
    assert result.exit_code == 0 and "wrote 5 of 5 examples" in result.output, result.output
    assert open_cache(tmp_path / "c").manifest.data.sha256  # a folder's files are hashed too


def test_bad_tables_are_one_line(tmp_path, tiny_teacher, formats):
    pq.write_table(pa.table({"text": ["fine", " "], "label": [0, 1]}), tmp_path / "blank.parquet")
    pq.write_table(pa.table({"words": ["fine"]}), tmp_path / "other.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "plain").mkdir()
    cases = {
        ("parquet", tmp_path / "blank.parquet", "train"): "blank.parquet:2: empty text",
        ("parquet", tmp_path / "other.parquet", "train"): "other.parquet:1: missing key 'text'",
        ("parquet", tmp_path / "junk.parquet", "train"): "junk.parquet: cannot be read as parquet",
        ("datasets", tmp_path / "plain", "train"): "plain: not a datasets folder saved with save_to_disk",
        ("datasets", formats["datasets dict"][1], "test"): "dict: no split 'test' (splits: train, validation)",
    }
    for (task, data, split), expected in cases.items():
        with pytest.raises(DataError, match=re.escape(expected)):
            load_examples(task, data, split)
        result = run("dump-teacher", "--task", task, "--data", data, "--split", split, "--teacher", tiny_teacher,
                     "--out", tmp_path / "c")
        assert_refused(result, expected)
        assert not (tmp_path / "c").exists()
