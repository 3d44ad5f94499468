"""Data augmentation: originals first, copies whose replaced words are true embedding neighbours."""

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from transformers import AutoTokenizer

from cache.augment import AugmentConfig, augment_file
from cache.checkpoints import default_teacher_path
from cache.data import ColumnSpec, load_examples
from cache.errors import DataError, UserError


def nearest_words(teacher, k: int, chunk: int = 2048) -> dict[str, set[str]]:
    """Top-k cosine neighbours among whole alphabetic words, computed here with numpy alone (ties
    at the k-th similarity, within float32 rounding, count as neighbours)."""
    tokens = AutoTokenizer.from_pretrained(str(teacher)).get_vocab()
    vocab = sorted(tokens, key=tokens.get)
    weights = load_file(str(teacher / "model.safetensors"))
    matrix = next(v for name, v in weights.items() if name.endswith("word_embeddings.weight")).astype(np.float32)
    ids = np.array([i for i, w in enumerate(vocab) if w.isalpha() and not w.startswith("[")])
    unit = matrix[ids] / np.linalg.norm(matrix[ids], axis=1, keepdims=True)
    out = {}
    for start in range(0, len(ids), chunk):
        similarity = unit[start:start + chunk] @ unit.T
        similarity[np.arange(len(similarity)), np.arange(start, start + len(similarity))] = -2
        kth = -np.partition(-similarity, k - 1, axis=1)[:, k - 1:k]
        for row, close in enumerate(similarity >= kth - 1e-5):
            out[vocab[ids[start + row]]] = {vocab[i] for i in ids[close]}
    return out


def check_copies(original: list[str], copies: list[str], neighbours: dict[str, set[str]]) -> int:
    """Every changed word of every copy is a neighbour of the word it replaced; returns the changes."""
    changed = 0
    for copy in copies:
        before, after = original.split(" "), copy.split(" ")
        assert len(before) == len(after)
        for old, new in zip(before, after, strict=True):
            if old != new:
                assert new in neighbours[old.lower()], (old, new)
                changed += 1
    return changed


@pytest.mark.parametrize("task,folder", [("sst2", "SST-2"), ("mrpc", "MRPC")])
def test_copies_replace_words_by_embedding_neighbours(tmp_path, glue, tiny_teacher, task, folder):
    source = tmp_path / "in"
    source.mkdir()
    lines = (glue / folder / "train.tsv").read_text(encoding="utf-8-sig").splitlines()
    (source / "train.tsv").write_text("\n".join(lines[:13]) + "\n")
    out = augment_file(AugmentConfig(task=task, data=source, out=tmp_path / "out", teacher=str(tiny_teacher),
                                     copies=3, neighbours=4, seed=1), command="test", progress=False)
    before, after = load_examples(task, source, "train"), load_examples(task, out.parent, "train")
    assert len(after) == 4 * len(before) == 48 and sorted(p.name for p in out.parent.iterdir()) == [
        "augment.json", "train.tsv"]  # no staging file left
    assert after.texts[:12] == before.texts and np.array_equal(after.labels[:12], before.labels)
    assert np.array_equal(after.labels[12:], np.repeat(before.labels, 3))  # labels carried over
    neighbours = nearest_words(tiny_teacher, 4)
    texts = [after.texts] + ([after.pairs] if task == "mrpc" else [])
    originals = [before.texts] + ([before.pairs] if task == "mrpc" else [])
    changed = sum(check_copies(o, column[12 + 3 * i:15 + 3 * i], neighbours)
                  for column, orig in zip(texts, originals, strict=True) for i, o in enumerate(orig))
    assert changed > 20
    record = json.loads((out.parent / "augment.json").read_text())
    assert record["copies"] == 3 and record["source"]["rows"] == 12 and record["output"]["rows"] == 48


def test_probability_bounds_and_seed(tmp_path, glue, tiny_teacher, small_sst2):
    def run(name, **options):
        config = AugmentConfig(task="sst2", data=small_sst2, out=tmp_path / name, teacher=str(tiny_teacher),
                               copies=2, **options)
        return load_examples("sst2", augment_file(config, command="test", progress=False).parent, "train").texts

    never, always = run("never", p_replace=0.0), run("always", p_replace=1.0)
    assert never[96:] == [t for t in never[:96] for _ in range(2)]
    words = set(nearest_words(tiny_teacher, 15))
    for original, copy in zip([t for t in always[:96] for _ in range(2)], always[96:], strict=True):
        kept = [o for o, c in zip(original.split(" "), copy.split(" "), strict=True) if o == c]
        assert not any(w in words for w in kept)  # every word with neighbours was replaced
    assert run("a", seed=3) == run("b", seed=3) != run("c", seed=4)


def test_bad_input_is_named(tmp_path, glue, tiny_teacher):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\nfine words\t1\nonly-one-field\n")
    config = AugmentConfig(task="tsv", data=tmp_path, out=tmp_path / "out", teacher=str(tiny_teacher),
                           columns=ColumnSpec(text="sentence"))
    with pytest.raises(DataError, match=r"train.tsv.*3.*row has 1 fields, header has 2"):
        augment_file(config, command="test", progress=False)
    assert not (tmp_path / "out").exists()  # nothing half-written
    (tmp_path / "train.tsv").write_text("")
    with pytest.raises(DataError, match="train.tsv: file is empty"):
        augment_file(config, command="test", progress=False)
    with pytest.raises(UserError, match="augment reads"):
        augment_file(AugmentConfig(task="jsonl", data=tmp_path / "train.tsv", out=tmp_path / "o2"), progress=False)


@pytest.mark.slow
def test_minilm_neighbours_on_real_sentences(tmp_path, small_sst2):
    """The packaged MiniLM: copies of real SST-2 sentences change words into true neighbours."""
    teacher = default_teacher_path()
    out = augment_file(AugmentConfig(task="sst2", data=small_sst2, out=tmp_path / "out", copies=2, seed=0),
                       command="test", progress=False)
    after = load_examples("sst2", out.parent, "train").texts
    neighbours = nearest_words(Path(teacher), 15)
    changed = sum(check_copies(o, after[96 + 2 * i:98 + 2 * i], neighbours) for i, o in enumerate(after[:96]))
    assert changed > 100
