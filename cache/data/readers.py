"""Read task data into `Examples`: GLUE files, generic CSV/TSV/JSONL, and plain text.

Every problem is reported as a `DataError` naming the file and the 1-based line, so a bad row in a
67k-line file is found at once. Readers stop at `limit` examples.
"""

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import numpy as np

from cache.data.tables import EXTENSIONS, TABLE_TASKS, datasets_folder, table_dict_rows
from cache.data.tasks import CORPUS_TASK, GENERIC_TASKS, GLUE_TASKS, TASK_ALIASES, TaskSpec
from cache.runtime.errors import DataError, UserError
from cache.runtime.options import parse_names, setting

SPLIT_NAMES = ("train", "dev", "validation", "test", "holdout")
"""A file named as one of these (or dev_*, test_*: MNLI's dev_matched) is that split."""
FLOAT32_MAX = float(np.finfo(np.float32).max)
"""Regression labels are stored as float32: a larger label would be stored as infinity."""
Row = tuple[int, dict | list]
DICT_ROWS = ("jsonl", *TABLE_TASKS)
"""Tasks whose rows are dicts by column name (no header row)."""  # (line number, fields by name or by position)


@dataclass(frozen=True)
class Examples:
    """A split of a task, ready to tokenise."""

    task: str
    split: str
    path: Path
    """The file the examples were read from."""
    texts: list[str]
    pairs: list[str] | None
    """Second texts for sentence-pair tasks, else None."""
    labels: np.ndarray | None
    """int64 class ids, float32 regression targets, or None for unlabelled data."""
    label_names: tuple[str, ...] | None
    """Class names in id order (None for regression and unlabelled data)."""

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(frozen=True)
class ColumnSpec:
    """Options for generic files: which columns hold the texts and the label."""

    text: str = setting("text", flag="--text-column")
    """Your own data: column of the first text."""
    pair: str | None = setting(None, flag="--pair-column")
    """Your own data: column of the second text, if any."""
    label: str | None = setting(None, flag="--label-column")
    """Your own data: label column (default: 'label' if present, else unlabelled)."""
    labels: tuple[str, ...] | None = setting(None, callback=parse_names, metavar="NAMES")
    """Your own data: class names in id order, comma-separated (default: the sorted distinct labels)."""
    regression: bool = setting(False, is_flag=True)
    """Your own data: the label is a number."""


def canonical_task(task: str) -> str:
    """Lower-case a task name and resolve aliases; raise on unknown names."""
    name = TASK_ALIASES.get(task.lower(), task.lower())
    if name not in GLUE_TASKS and name not in GENERIC_TASKS and name != CORPUS_TASK:
        known = ", ".join([*GLUE_TASKS, *GENERIC_TASKS, CORPUS_TASK])
        raise UserError(f"--task: unknown task {task!r} (known: {known})")
    return name


def resolve_data_file(task: str, data: Path, split: str) -> Path:
    """`data` is a file, or a folder holding `<split>.<ext>` in the task's layout (for `datasets`,
    the folder that `save_to_disk` wrote)."""
    if task == CORPUS_TASK:  # cache.data.corpus reads it; only dump-teacher takes one
        raise UserError(f"--task {task}: raw text has no labelled examples; only dump-teacher reads a corpus")
    if task == "datasets":
        if not data.is_dir():
            raise DataError(str(data), None, "no such folder")
        return datasets_folder(data, split)
    if data.is_dir():
        ext = {"csv": "csv", "jsonl": "jsonl", "text": "txt", **EXTENSIONS}.get(task, "tsv")
        data = data / f"{split}.{ext}"
    if not data.is_file():
        raise DataError(str(data), None, _not_a_file(data))
    named = file_split(data)
    if named not in (None, split):
        raise DataError(str(data), None, f"is the {named} split by its name, not {split!r}; give --split {named}, or "
                                         f"the {split} file (or the folder holding it)")
    return data


def _not_a_file(path: Path) -> str:
    """Why `path` cannot be read as a data file, in the words a user needs."""
    if not os.path.lexists(path):
        return "no such file"
    if not path.exists():
        return "a symbolic link that leads nowhere (its target is missing, or the links loop)"
    return "not a regular file (a folder, a FIFO or a device)"


def printable(text: str) -> str:
    """`text` with control characters (a NUL byte, an escape) written as escapes, for one clean line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def file_split(path: Path) -> str | None:
    """The split a file's name says it holds (train.tsv: train), or None for any other name."""
    stem = path.name.split(".")[0].lower()
    return stem if stem in SPLIT_NAMES or stem.startswith(("dev_", "test_")) else None


def load_examples(task: str, data: Path | str, split: str, *, columns: ColumnSpec = ColumnSpec(),
                  limit: int | None = None) -> Examples:
    """Read `split` of `task` from `data` (a file or a GLUE-style folder). An evaluation split is
    read with the class names of the training data in `columns.labels` (`evaluation_columns`), so
    that its labels map by name, never by their order in this one file."""
    task = canonical_task(task)
    path = resolve_data_file(task, Path(data), split)
    if task == "text":
        return _plain_text(path, split, limit)
    rows = _jsonl_rows(path) if task == "jsonl" else table_dict_rows(path, task) if task in TABLE_TASKS else \
        table_rows(path, task)
    spec = task_spec(task, split, columns)
    return _examples_from_rows(spec, task, split, path, rows, limit)


def task_spec(task: str, split: str, columns: ColumnSpec) -> TaskSpec:
    if task in GLUE_TASKS:
        spec = GLUE_TASKS[task]
        if split.startswith("test"):  # official test files: header row, no label column
            text = spec.test_text if spec.test_text is not None else spec.text
            return TaskSpec(spec.name, text, spec.pair, None, spec.labels, spec.metric)
        return spec
    labels = None if columns.regression else (columns.labels or ())
    return TaskSpec(task, columns.text, columns.pair, columns.label or "label", labels, "accuracy",
                    label_required=columns.label is not None)


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(str(path), line, f"not valid UTF-8 (byte 0x{raw[e.start]:02x})") from None


def table_rows(path: Path, task: str) -> Iterator[Row]:
    text = _decode(path)
    if not text.strip():
        raise DataError(str(path), None, "file is empty")
    if task == "csv":
        reader = csv.reader(text.splitlines(keepends=True))
    else:  # GLUE TSVs contain bare quotes: no quoting at all
        reader = csv.reader(text.splitlines(keepends=True), delimiter="\t", quoting=csv.QUOTE_NONE)
    for fields in reader:
        if fields:
            yield reader.line_num, fields


def _jsonl_rows(path: Path) -> Iterator[Row]:
    text = _decode(path)
    if not text.strip():
        raise DataError(str(path), None, "file is empty")
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(str(path), line_no, f"not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(str(path), line_no, "expected a JSON object per line")
        yield line_no, obj


def _examples_from_rows(spec: TaskSpec, task: str, split: str, path: Path, rows: Iterator[Row],
                        limit: int | None) -> Examples:
    rows = iter(rows)
    header = None
    if spec.header and task not in DICT_ROWS:
        try:
            _, header = next(rows)
        except StopIteration:
            raise DataError(str(path), None, "file is empty") from None
    pick = _column_picker(spec, path, header if isinstance(header, list) else None, task)
    texts: list[str] = []
    pairs: list[str | None] = []
    raw_labels: list[tuple[int, object]] = []
    for line, fields in rows:
        if limit is not None and len(texts) >= limit:
            break
        text, pair, label = pick(line, fields)
        texts.append(text)
        pairs.append(pair)
        raw_labels.append((line, label))
    if not texts:
        raise DataError(str(path), None, "no examples (header only?)")
    labels, names = _parse_labels(spec, path, raw_labels)
    second = cast(list[str], pairs) if spec.pair is not None else None  # `pick` refuses an empty second text
    return Examples(task, split, path, texts, second, labels, names)


def _column_picker(spec: TaskSpec, path: Path, header: list | None, task: str):
    """Return f(line, fields) -> (text, pair, raw label) for this file's layout."""
    label_col = spec.label
    if not spec.label_required and header is not None and label_col not in header:
        label_col = None

    def index_of(col: str | int | None) -> int | str | None:
        if col is None or isinstance(col, int) or header is None:
            return col
        if col not in header:
            hint = "; is it comma-separated? then use --task csv" if len(header) == 1 and "," in header[0] else ""
            names = ", ".join(printable(str(name)) for name in header)
            raise DataError(str(path), 1, f"no column {col!r} (columns: {names}){hint}")
        return header.index(col)

    positions = [index_of(spec.text), index_of(spec.pair), index_of(label_col)]

    def field(line: int, fields, pos, what: str) -> str | None:
        if pos is None:
            return None
        try:
            value = fields[pos]
        except (IndexError, KeyError):
            if what == "label" and not spec.label_required:
                return None
            if isinstance(pos, str):
                raise DataError(str(path), line, f"missing key {pos!r}") from None
            raise DataError(str(path), line, f"row has {len(fields)} fields, needs column {pos + 1}") from None
        if what != "label" and not isinstance(value, str):
            raise DataError(str(path), line, f"{what} is {type(value).__name__} {printable(repr(value))}, not a string")
        if what != "label" and not value.strip():
            raise DataError(str(path), line, f"empty {what}")
        return value

    def pick(line: int, fields):
        if header is not None and task not in DICT_ROWS and len(fields) != len(header):
            raise DataError(str(path), line, f"row has {len(fields)} fields, header has {len(header)}")
        text = field(line, fields, positions[0], "text")
        pair = field(line, fields, positions[1], "second text")
        return text, pair, field(line, fields, positions[2], "label")

    return pick


def _parse_labels(spec: TaskSpec, path: Path, raw: list[tuple[int, object]]):
    if all(label is None for _, label in raw):
        return None, None
    for line, label in raw:
        if label is None or not str(label).strip():
            raise DataError(str(path), line, "no label (null or empty) where the other rows have one")
    if spec.is_regression:
        values = []
        for line, label in raw:
            try:
                value = float(str(label))  # a CSV field, or a JSON number
            except (TypeError, ValueError):
                raise DataError(str(path), line, f"label {label!r} is not a number") from None
            if not abs(value) <= FLOAT32_MAX:  # NaN, infinity, and 1e39 (infinite as float32)
                raise DataError(str(path), line, f"label {label!r} is not a finite number")
            values.append(value)
        return np.asarray(values, dtype=np.float32), None
    names = spec.labels or _sorted_label_names(label_name(label) for _, label in raw)
    ids = {label_name(name): i for i, name in enumerate(names)}
    out = np.empty(len(raw), dtype=np.int64)
    for k, (line, label) in enumerate(raw):
        name = label_name(label)
        if name not in ids:
            raise DataError(str(path), line, f"label {str(label).strip()!r} is not one of {', '.join(names)}")
        out[k] = ids[name]
    return out, tuple(names)


def label_name(value: object) -> str:
    """A class label as text, numbers written one way: 1, 1.0 and "1" are the class "1"."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


def _sorted_label_names(names) -> tuple[str, ...]:
    distinct = set(names)
    numeric = all(v.lstrip("-").isdigit() for v in distinct)
    return tuple(sorted(distinct, key=int if numeric else str))


def evaluation_columns(columns: ColumnSpec | dict | None, label_names: tuple[str, ...] | None) -> ColumnSpec:
    """The column options to read an evaluation split with: the training data's (a cache records
    them as a dict), and its class names (None: a regression task or unknown names)."""
    spec = ColumnSpec(**columns) if isinstance(columns, dict) else columns or ColumnSpec()
    if label_names:
        return replace(spec, labels=tuple(label_names), regression=False)
    return spec


def _plain_text(path: Path, split: str, limit: int | None) -> Examples:
    """One example per line; blank lines separate documents and are skipped."""
    lines = [line for line in _decode(path).splitlines() if line.strip()]
    if not lines:
        raise DataError(str(path), None, "file is empty")
    return Examples("text", split, path, lines[:limit], None, None, None)
