"""Columnar inputs: Parquet files, Arrow files, and Hugging Face `datasets` folders written by
`save_to_disk`, read with pyarrow alone (no `datasets` needed to read one). Rows come out as dicts,
as JSON lines do, so the column options and their one-line errors are the same."""

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cache.runtime.errors import DataError, describe

TABLE_TASKS = ("parquet", "arrow", "datasets")
EXTENSIONS = {"parquet": "parquet", "arrow": "arrow"}


def datasets_folder(data: Path, split: str) -> Path:
    """The folder of one split: `data`/<split> of a DatasetDict, or `data` itself, a Dataset, when
    it is that split (one saved without a split name is taken as the one asked for)."""
    if (data / "dataset_dict.json").is_file():
        splits = _json_object(data / "dataset_dict.json").get("splits", [])
        if split not in splits:
            raise DataError(str(data), None, f"no split {split!r} (splits: {', '.join(map(str, splits))})")
        data = data / split
    if not (data / "state.json").is_file():
        raise DataError(str(data), None, "not a datasets folder saved with save_to_disk (no state.json)")
    saved_as = _json_object(data / "state.json").get("_split")
    if saved_as not in (None, split):
        raise DataError(str(data), None, f"is the {saved_as!r} split, not {split!r}; give --split {saved_as}, or "
                                         f"the folder of the {split!r} split")
    return data


def _json_object(path: Path) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(str(path), None, f"not valid JSON ({describe(e)})") from None
    if not isinstance(content, dict):
        raise DataError(str(path), None, "not a JSON object")
    return content


def table_dict_rows(path: Path, task: str) -> Iterator[tuple[int, dict]]:
    """(row number from 1, row as a dict) for each row of the table."""
    yield from enumerate(_read(path, task).to_pylist(), start=1)


def _read(path: Path, task: str) -> pa.Table:
    try:
        if task == "parquet":
            return pq.read_table(path)
        if task == "arrow":
            return _arrow_file(path)
        state = _json_object(path / "state.json")
        return pa.concat_tables([_arrow_file(path / f["filename"]) for f in state["_data_files"]])
    except (pa.ArrowException, OSError, KeyError, TypeError, ValueError) as e:
        raise DataError(str(path), None, f"cannot be read as {task} ({describe(e)})") from None


def _arrow_file(path: Path) -> pa.Table:
    """An Arrow IPC file (Feather v2), or an IPC stream (what `datasets` writes)."""
    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_file(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_stream(source).read_all()
