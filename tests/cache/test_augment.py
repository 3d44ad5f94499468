"""Data augmentation: originals first, then new sentences whose replaced words are true candidates
(masked-LM top-K from a plain one-forward-per-word loop, embedding and GloVe neighbours from numpy)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertTokenizer,
    DebertaV2Config,
    RobertaConfig,
)

from cache.data.checkpoints import default_teacher_path
from cache.data.readers import ColumnSpec
from cache.runtime.errors import DataError, UserError
from cache.teacher.augment import AugmentConfig, augment_file
from cache.teacher.candidates import STOP_WORDS
from tests.helpers import FAIRSEQ_SPECIALS, GLUE, SPECIALS, assert_refused, fairseq_tokenizer, run, vocabulary

K = 4


def nearest_words(teacher, k: int, mark: str = "", chunk: int = 2048) -> dict[str, set[str]]:
    """Top-k cosine neighbours among whole alphabetic words (entries with the word-beginning `mark`),
    computed here with numpy alone (ties at the k-th similarity, within float32 rounding, count as
    neighbours)."""
    tokens = AutoTokenizer.from_pretrained(str(teacher)).get_vocab()
    vocab = [w[len(mark):] if w.startswith(mark) else "" for w in sorted(tokens, key=tokens.get)]
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


def id_labelled(tmp_path: Path, rows: int = 24, pairs: bool = False, start: int = 1) -> Path:
    """A tsv of real sentences (MRPC pairs) whose label is the row's id: each new row names its origin."""
    lines = (GLUE / "MRPC" / "train.tsv").read_text(encoding="utf-8-sig").splitlines()[start:start + rows]
    fields = [line.split("\t") for line in lines]
    body = [f"{f[3]}\t{f[4]}\t{i}" if pairs else f"{f[3]}\t{i}" for i, f in enumerate(fields)]
    path = tmp_path / "in" / "train.tsv"
    path.parent.mkdir()
    path.write_text("\n".join(["sentence\tsecond\tlabel" if pairs else "sentence\tlabel", *body]) + "\n")
    return path


def augment(tmp_path, source, pairs=False, out="out", **options):
    options = {"seed": 1, "neighbours": K} | options
    config = AugmentConfig(task="tsv", data=source, out=tmp_path / out,
                           columns=ColumnSpec(text="sentence", pair="second" if pairs else None), **options)
    out = augment_file(config, command="test", progress=False)
    rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
    originals = rows[:options.get("limit") or len(source.read_text().splitlines()) - 1]
    return originals, rows[len(originals):]


def changes(original: str, new: str) -> list[tuple[str, str, str]]:
    """(word, replacement, the text before the word) for each changed word; the text between words is
    unchanged."""
    a, b = re.split(r"([^\W\d_]+)", original), re.split(r"([^\W\d_]+)", new)
    assert len(a) == len(b) and a[0::2] == b[0::2], (original, new)
    return [(x, y, "".join(a[:i])) for i, (x, y) in enumerate(zip(a, b, strict=True)) if i % 2 and x != y]


def check_rows(originals, new_rows, allowed) -> int:
    """Every new row differs from its origin and from its siblings, and each changed word is one the
    test allows; returns the number of changed words."""
    by_id = {row[-1]: row for row in originals}
    assert len({tuple(r) for r in new_rows}) == len(new_rows)
    changed = 0
    for row in new_rows:
        origin = by_id[row[-1]]
        assert row != origin
        for old, new in zip(origin[:-1], row[:-1], strict=True):
            for word, replacement, before in changes(old, new):
                assert word.lower() not in STOP_WORDS
                if word[0].isupper():
                    assert replacement[0].isupper()
                assert allowed(word, replacement.lower(), before, old), (word, replacement)
                changed += 1
    return changed


def test_embedding_neighbours_for_one_piece_words(tmp_path, tiny_teacher):
    originals, new = augment(tmp_path, id_labelled(tmp_path, pairs=True), pairs=True, teacher=str(tiny_teacher),
                             copies=3)
    neighbours = nearest_words(tiny_teacher, K)
    assert check_rows(originals, new, lambda word, rep, *_: rep in neighbours.get(word.lower(), ())) > 40
    assert 24 < len(new) <= 72
    record = json.loads((tmp_path / "out" / "augment.json").read_text())
    assert record["output"]["new_rows"] == len(new) and record["copies_resolved"] == 3
    assert record["candidates"] == {"one piece": "teacher input embeddings", "several pieces": "kept"}


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory) -> Path:
    return save_bert_mlm(tmp_path_factory.mktemp("mlm"))


def save_bert_mlm(path: Path) -> Path:
    """A random BertForMaskedLM with a WordPiece tokenizer, saved like a real checkpoint."""
    vocab = vocabulary()
    torch.manual_seed(5)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128)
    BertForMaskedLM(config).save_pretrained(path)
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(path)
    return path


MARKS = {"bert": "", "roberta": "Ġ", "deberta": "▁"}
"""Each masked LM's vocabulary: WordPiece, byte-level BPE's and SentencePiece's word marks."""


@pytest.fixture(scope="module", params=list(MARKS))
def family_mlm(request, tmp_path_factory) -> tuple[str, Path]:
    """A random masked LM of each family with a tokenizer of its kind (RoBERTa's head runs on the
    masked rows alone, DeBERTa's on the whole model's output)."""
    family = request.param
    path = tmp_path_factory.mktemp(f"mlm-{family}")
    if family == "bert":
        return "", save_bert_mlm(path)
    words = vocabulary()[len(SPECIALS):]
    shape = {"vocab_size": len(words) + len(FAIRSEQ_SPECIALS), "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 130, "pad_token_id": 1}
    config = RobertaConfig(type_vocab_size=1, bos_token_id=0, eos_token_id=2, **shape) if family == "roberta" \
        else DebertaV2Config(relative_attention=True, position_buckets=16, position_biased_input=False,
                             pos_att_type=["p2c", "c2p"], type_vocab_size=0, **shape)
    torch.manual_seed(5)
    AutoModelForMaskedLM.from_config(config).save_pretrained(path)
    fairseq_tokenizer(words, MARKS[family]).save_pretrained(path)
    return MARKS[family], path


def masked_lm_top_k(path: Path, mark: str = ""):
    """One forward per masked word, all logits, filtered by hand: the reference code's way."""
    model, tokenizer = AutoModelForMaskedLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    vocab = tokenizer.get_vocab()
    words = [w[len(mark):] if w.startswith(mark) else "" for w in sorted(vocab, key=vocab.get)]

    def top_k(word: str, before: str, text: str) -> set[str]:
        masked = before + tokenizer.mask_token + text[len(before) + len(word):]
        ids = tokenizer(masked, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, (ids[0] == tokenizer.mask_token_id).nonzero()[0, 0]]
        scored = [(logits[i].item(), w) for i, w in enumerate(words)
                  if w.isalpha() and w not in tokenizer.all_special_tokens and w != word.lower()]
        scored.sort(reverse=True)
        kth = scored[K - 1][0]
        return {w for score, w in scored if score >= kth - 1e-4}

    return top_k


def test_embedding_neighbours_of_a_vocabulary_that_marks_word_starts(tmp_path, family_mlm):
    """A RoBERTa's ("Ġ") or DeBERTa-v3's ("▁") input embeddings: neighbours are words, marks off."""
    mark, path = family_mlm
    originals, new = augment(tmp_path, id_labelled(tmp_path), teacher=str(path), copies=3)
    neighbours = nearest_words(path, K, mark)
    assert check_rows(originals, new, lambda word, rep, *_: rep in neighbours.get(word.lower(), ())) > 20


def test_masked_lm_candidates_equal_one_forward_per_word(tmp_path, family_mlm):
    mark, path = family_mlm
    rows = 8 if mark else 24  # the word marks need fewer sentences than the batching does
    originals, new = augment(tmp_path, id_labelled(tmp_path, rows, pairs=True), pairs=True, mlm=str(path),
                             copies=3, batch_size=7)
    top_k = masked_lm_top_k(path, mark)
    vocab = AutoTokenizer.from_pretrained(path).get_vocab()

    def allowed(word, replacement, before, text):
        return mark + word.lower() in vocab and replacement in top_k(word, before, text)  # one-piece words only

    assert check_rows(originals, new, allowed) > 40 * rows // 24
    record = json.loads((tmp_path / "out" / "augment.json").read_text())
    assert record["candidates"]["one piece"] == f"masked LM {path}"


def test_glove_neighbours_for_words_of_several_pieces(tmp_path, tiny_mlm):
    source = id_labelled(tmp_path, start=2000)  # sentences the tiny vocabulary has not seen
    words = sorted({w for line in source.read_text().splitlines()[1:] for w in re.findall(r"[^\W\d_]+", line)})
    vocab = AutoTokenizer.from_pretrained(tiny_mlm).get_vocab()
    unknown = [w for w in words if w.lower() not in vocab]
    assert len(unknown) > 10  # words the tiny vocabulary splits (into [UNK])
    rng = np.random.default_rng(0)
    glove_words = sorted({w.lower() for w in unknown} | {"alpha", "beta", "gamma", "delta", "epsilon"}) + ["x1"]
    vectors = rng.standard_normal((len(glove_words), 6)).astype(np.float32)
    (tmp_path / "glove.txt").write_text("".join(f"{w} {' '.join(f'{v:.5f}' for v in vec)}\n"
                                                for w, vec in zip(glove_words, vectors, strict=True)))
    stored = np.array([[float(f"{v:.5f}") for v in vec] for vec in vectors])
    unit = stored / np.linalg.norm(stored, axis=1, keepdims=True)
    nearest = {}
    for i, w in enumerate(glove_words):
        similarity = unit @ unit[i]
        similarity[i] = -np.inf
        similarity[[j for j, x in enumerate(glove_words) if not x.isalpha()]] = -np.inf
        nearest[w] = {glove_words[j] for j in np.argsort(-similarity)[:K]}
    originals, new = augment(tmp_path, source, mlm=str(tiny_mlm), glove=tmp_path / "glove.txt", copies=3)
    glove_changes = 0

    def allowed(word, replacement, *_):
        nonlocal glove_changes
        if word.lower() in vocab:
            return True  # the masked LM's: checked in the test above
        glove_changes += 1
        return replacement in nearest[word.lower()] and replacement != "x1"

    check_rows(originals, new, allowed)
    assert glove_changes > 10
    _, without = augment(tmp_path, source, out="kept", mlm=str(tiny_mlm), copies=3)
    kept = check_rows(originals, without, lambda word, *_: word.lower() in vocab)
    assert kept > 0  # words of several pieces are kept without GloVe


def test_duplicates_are_dropped_and_copies_default_per_task(tmp_path, tiny_teacher):
    source = id_labelled(tmp_path)
    originals, new = augment(tmp_path, source, teacher=str(tiny_teacher), copies=5, neighbours=1, p_replace=1.0)
    assert len(new) == len(originals)  # p = 1 and one candidate per word: the 5 copies are one sentence
    _, none = augment(tmp_path, source, out="p0", teacher=str(tiny_teacher), copies=5, p_replace=0.0)
    assert none == []  # every copy equals its original
    first, new = augment(tmp_path, source, out="limit", teacher=str(tiny_teacher), copies=2, limit=5)
    ids = ["0", "1", "2", "3", "4"]
    assert [row[-1] for row in first] == ids and {row[-1] for row in new} <= set(ids)
    copies = {task: AugmentConfig(task=task, data=GLUE, out=tmp_path).resolved_copies()
              for task in ("sst2", "qnli", "mnli", "qqp", "mrpc", "cola", "tsv")}
    assert copies == {"sst2": 20, "qnli": 20, "mnli": 10, "qqp": 10, "mrpc": 30, "cola": 30, "tsv": 30}


def test_seed_decides_the_output(tmp_path, tiny_teacher):
    source = id_labelled(tmp_path)
    results = []
    for name, seed in [("a", 3), ("b", 3), ("c", 4)]:
        (tmp_path / name).mkdir()
        config = AugmentConfig(task="tsv", data=source, out=tmp_path / name / "out", teacher=str(tiny_teacher),
                               copies=2, seed=seed, columns=ColumnSpec(text="sentence"))
        results.append(augment_file(config, command="test", progress=False).read_text())
    assert results[0] == results[1] != results[2]


def test_bad_input_is_named(tmp_path, tiny_teacher, tiny_bare_teacher):
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
    sst2 = ["augment", "--task", "sst2", "--data", GLUE / "SST-2", "--out", tmp_path / "o3"]
    assert_refused(run(*sst2, "--mlm", tiny_bare_teacher), "has no masked-LM head")
    assert_refused(run(*sst2, "--glove", tmp_path / "none.txt"), "--glove: ")
    (tmp_path / "glove.txt").write_text("word 0.1 0.2\nother 0.3\n")
    assert_refused(run(*sst2, "--teacher", tiny_teacher, "--glove", tmp_path / "glove.txt"),
                   "glove.txt:2: 1 numbers, the first line has 2")
    assert not (tmp_path / "o3" / "train.tsv").exists()


@pytest.mark.slow
def test_minilm_neighbours_on_real_sentences(tmp_path):
    """The packaged MiniLM: new rows of real MRPC sentences change words into true neighbours."""
    originals, new = augment(tmp_path, id_labelled(tmp_path, rows=48), copies=2, neighbours=15)
    neighbours = nearest_words(Path(default_teacher_path()), 15)
    assert check_rows(originals, new, lambda word, rep, *_: rep in neighbours.get(word.lower(), ())) > 100
