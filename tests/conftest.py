"""Shared fixtures: tiny random BERT teachers saved as real checkpoints, and real GLUE paths."""

import re
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizer

GLUE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _vocabulary() -> list[str]:
    """Words of the first real SST-2 and MRPC sentences, so tiny teachers see real token ids."""
    words = set()
    for path in [GLUE / "SST-2" / "train.tsv", GLUE / "MRPC" / "train.tsv"]:
        for line in path.read_text(encoding="utf-8-sig").splitlines()[1:80]:
            words.update(re.findall(r"\w+|[^\w\s]", line.lower()))
    return SPECIALS + sorted(words)


def save_tiny_teacher(path: Path, *, head: bool, seed: int = 0, vocab: list[str] | None = None,
                      layers: int = 3) -> Path:
    """A random BERT (3 layers, 4 heads, d=32) with a WordPiece tokenizer, saved like a real checkpoint."""
    vocab = vocab or _vocabulary()
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2)
    model = BertForSequenceClassification(config) if head else BertModel(config, add_pooling_layer=False)
    model.save_pretrained(path)
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(path)
    return path


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
    from tests.cache.test_dump import dump

    out = tmp_path_factory.mktemp("cache") / "sst2.zarr"
    dump(tiny_teacher, glue, out, limit=96, block_mb=0.1, batch_size=16)
    return out
