"""Shared fixtures: tiny random BERT teachers saved as real checkpoints, real GLUE paths, a small cache."""

from pathlib import Path

import pytest

from tests.helpers import GLUE, dump, save_tiny_teacher


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    """BertForSequenceClassification: every target kind including logits."""
    return save_tiny_teacher(tmp_path_factory.mktemp("tiny_cls"), head=True)


@pytest.fixture(scope="session")
def tiny_bare_teacher(tmp_path_factory) -> Path:
    """BertModel without a head: no logits."""
    return save_tiny_teacher(tmp_path_factory.mktemp("tiny_bare"), head=False, seed=1)


@pytest.fixture(scope="session")
def glue() -> Path:
    return GLUE


@pytest.fixture
def small_sst2(tmp_path, glue) -> Path:
    """An SST-2 folder of 96 training and 40 dev sentences (real ones), for fine-tuning quickly."""
    lines = (glue / "SST-2" / "train.tsv").read_text().splitlines()
    (tmp_path / "train.tsv").write_text("\n".join(lines[:97]) + "\n")
    (tmp_path / "dev.tsv").write_text("\n".join([lines[0], *lines[200:240]]) + "\n")
    return tmp_path


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory, glue, tiny_teacher):
    """A complete cache of the tiny classification teacher over 96 SST-2 sentences, 6+ blocks."""

    out = tmp_path_factory.mktemp("cache") / "sst2.zarr"
    dump(tiny_teacher, glue, out, limit=96, block_mb=0.1, batch_size=16)
    return out
