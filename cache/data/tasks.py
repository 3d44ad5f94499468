"""The GLUE tasks in their official file layouts: which columns hold the texts and the label.

Columns are found by header name, so files with extra or reordered columns still read; CoLA's
official files have no header and are read by position.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    """How one task's files are laid out."""

    name: str
    text: str | int
    """Column (header name, or position for header-less files) of the first text."""
    pair: str | int | None
    """Column of the second text for sentence-pair tasks, else None."""
    label: str | int | None
    """Column of the label, or None for unlabelled data."""
    labels: tuple[str, ...] | None
    """Class names in label-id order; None for a regression task."""
    metric: str
    """The GLUE metric the task is scored with."""
    header: bool = True
    """Whether the first row of a file is a header."""
    test_text: str | int | None = None
    """Column of the first text in the unlabelled test file when it differs from `text`."""
    label_required: bool = True
    """False when a file without the label column is read as unlabelled data."""

    @property
    def is_regression(self) -> bool:
        return self.labels is None


GLUE_TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec("cola", 3, None, 1, ("0", "1"), "mcc", header=False, test_text="sentence"),
        TaskSpec("sst2", "sentence", None, "label", ("0", "1"), "accuracy"),
        TaskSpec("mrpc", "#1 String", "#2 String", "Quality", ("0", "1"), "f1_accuracy"),
        TaskSpec("stsb", "sentence1", "sentence2", "score", None, "pearson_spearman"),
        TaskSpec("qqp", "question1", "question2", "is_duplicate", ("0", "1"), "f1_accuracy"),
        TaskSpec("mnli", "sentence1", "sentence2", "gold_label",
                 ("contradiction", "entailment", "neutral"), "accuracy"),
        TaskSpec("qnli", "question", "sentence", "label", ("entailment", "not_entailment"), "accuracy"),
        TaskSpec("rte", "sentence1", "sentence2", "label", ("entailment", "not_entailment"), "accuracy"),
        TaskSpec("wnli", "sentence1", "sentence2", "label", ("0", "1"), "accuracy"),
    ]
}

TASK_ALIASES = {"sst-2": "sst2", "sts-b": "stsb"}
GENERIC_TASKS = ("csv", "tsv", "jsonl", "text", "parquet", "arrow", "datasets")
CORPUS_TASK = "corpus"
"""Raw text for general distillation (cache.data.corpus): packed sequences, no labels."""
