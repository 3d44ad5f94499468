"""The corpus reader: documents, packing, the held-out part, and corpus dumps against a fresh teacher."""

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from cache import open_cache
from cache.data.checkpoints import default_teacher_path
from cache.data.corpus import Corpus, held_out, paragraphs
from cache.runtime.errors import CacheError, UserError
from tests.helpers import GLUE, assert_matches_reference, assert_refused, dump, run

MAX_LEN = 16


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Two text files of real SST-2 sentences, 1 to 7 lines per document, and a file that is not text."""
    sentences = [line.split("\t")[0] for line in (GLUE / "SST-2" / "train.tsv").read_text().splitlines()[1:121]]
    folder = tmp_path / "corpus"
    folder.mkdir()
    docs, start = [], 0
    while start < len(sentences):
        size = 1 + len(docs) % 7
        docs.append(sentences[start:start + size])
        start += size
    half = len(docs) // 2
    # b.txt sorts after a.txt: written first to show that the order is the names', not the disk's
    (folder / "b.txt").write_text("\n\n\n".join("\n".join(d) for d in docs[half:]) + "\n")
    (folder / "a.txt").write_text("\n\n".join("\n".join(d) for d in docs[:half]))
    (folder / "notes.md").write_text("not part of the corpus\n")
    return folder


def expected_sequences(corpus: Path, tokenizer, split: str = "train", holdout: float = 0.0) -> list[list[int]]:
    """Packing written out plainly: each document's tokens cut into pieces of MAX_LEN - 2; the
    held-out part without the training part's sequences."""
    parts: dict[bool, list[list[int]]] = {True: [], False: []}
    for name in sorted(p.name for p in corpus.glob("*.txt")):
        for doc in (corpus / name).read_text().split("\n\n"):
            doc = doc.strip("\n")
            if not doc:
                continue
            ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
            for start in range(0, len(ids), MAX_LEN - 2):
                parts[held_out(ids, holdout)].append(
                    [tokenizer.cls_token_id, *ids[start:start + MAX_LEN - 2], tokenizer.sep_token_id])
    if split == "train":
        return parts[False]
    return [piece for piece in parts[True] if piece not in parts[False]]


def packed(corpus: Corpus, tokenizer) -> list[list[int]]:
    ids, lengths = corpus.pack(tokenizer, MAX_LEN)
    return [s.tolist() for s in np.split(ids, np.cumsum(lengths)[:-1])]


def test_paragraphs_are_runs_of_lines_in_sorted_files(corpus):
    docs = [text for _, text in paragraphs(Corpus(corpus).files)]
    assert Corpus(corpus).files == (corpus / "a.txt", corpus / "b.txt")
    assert len(docs) == 32 and sum(len(d.splitlines()) for d in docs) == 120  # 120 sentences in 32 documents
    assert not any("not part" in d for d in docs)
    assert [len(d.splitlines()) for d in docs[:8]] == [1, 2, 3, 4, 5, 6, 7, 1]


def test_packing_matches_a_plain_loop(corpus, tiny_teacher):
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    got = packed(Corpus(corpus), tokenizer)
    assert got == expected_sequences(corpus, tokenizer)
    lengths = [len(s) for s in got]
    assert max(lengths) == MAX_LEN and lengths.count(MAX_LEN) > len(got) // 3  # packed full, tails kept
    assert packed(Corpus(corpus, limit=7), tokenizer) == got[:7]
    assert all(tokenizer.mask_token_id not in s for s in got)


def test_holdout_is_disjoint_stable_and_complete(corpus, tiny_teacher):
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    train, holdout = (packed(Corpus(corpus, split, 0.25), tokenizer) for split in ("train", "holdout"))
    assert train == expected_sequences(corpus, tokenizer, "train", 0.25)
    assert holdout == expected_sequences(corpus, tokenizer, "holdout", 0.25)
    assert sorted(map(tuple, train + holdout)) == sorted(map(tuple, packed(Corpus(corpus), tokenizer)))
    assert 0 < len(holdout) < len(train)
    docs = [text for _, text in paragraphs(Corpus(corpus).files)]
    share = np.mean([held_out(tokenizer(d, add_special_tokens=False)["input_ids"], 0.25) for d in docs])
    assert 0.1 < share < 0.4  # about a quarter of the documents


@pytest.mark.parametrize("documents", ["blank-lines", "file"])
def test_the_held_out_texts_are_the_held_out_documents_paragraphs(corpus, tiny_teacher, documents):
    """What an embedder is scored on: the paragraphs of the documents the dump holds out, by the same rule."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    expected: dict[bool, list[str]] = {True: [], False: []}
    for file in sorted(corpus.glob("*.txt")):
        texts = [d.strip("\n") for d in file.read_text().split("\n\n") if d.strip("\n")]
        groups = [texts] if documents == "file" else [[t] for t in texts]
        for group in groups:
            ids = [i for t in group for i in tokenizer(t, add_special_tokens=False)["input_ids"]]
            expected[held_out(ids, 0.5)] += group
    for split, part in (("holdout", True), ("train", False)):
        assert Corpus(corpus, split, 0.5, documents=documents).texts(tokenizer) == expected[part]
    assert Corpus(corpus, "holdout", 0.5, limit=2, documents=documents).texts(tokenizer) == expected[True][:2]


def whole_file_sequences(corpus: Path, tokenizer, holdout: float = 0.0) -> dict[bool, list[list[int]]]:
    """`--documents file` written out plainly: each file's text tokenised at once, cut into pieces;
    by whether the file is held out."""
    parts: dict[bool, list[list[int]]] = {True: [], False: []}
    for file in sorted(corpus.glob("*.txt")):
        ids = tokenizer(file.read_text(), add_special_tokens=False)["input_ids"]
        parts[held_out(ids, holdout)] += [[tokenizer.cls_token_id, *ids[start:start + MAX_LEN - 2],
                                           tokenizer.sep_token_id] for start in range(0, len(ids), MAX_LEN - 2)]
    return parts


def test_whole_files_pack_across_paragraphs(corpus, tiny_teacher):
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    got = packed(Corpus(corpus, documents="file"), tokenizer)
    assert got == whole_file_sequences(corpus, tokenizer)[False]
    lengths = [len(s) for s in got]
    assert lengths.count(MAX_LEN) >= len(got) - 2  # at most one shorter tail per file
    paragraphs_only = [len(s) for s in packed(Corpus(corpus), tokenizer)]
    assert paragraphs_only.count(MAX_LEN) / len(paragraphs_only) < lengths.count(MAX_LEN) / len(lengths)


def test_the_document_rule_is_part_of_a_caches_identity(tmp_path, corpus, tiny_teacher):
    common = ("dump-teacher", "--task", "corpus", "--data", corpus, "--teacher", tiny_teacher, "--max-seq-len", MAX_LEN,
              "--max-unknown", 1, "--out", tmp_path / "c")
    assert run(*common, "--documents", "file").exit_code == 0
    cache = open_cache(tmp_path / "c")
    assert cache.manifest.data.columns["documents"] == "file"
    assert [cache[i]["input_ids"].tolist() for i in range(len(cache))] == \
        whole_file_sequences(corpus, AutoTokenizer.from_pretrained(tiny_teacher))[False]
    refused = run(*common)  # blank-lines, into the same folder
    assert refused.exit_code == 1 and "data options (columns, --holdout, --documents)" in refused.output
    assert_refused(run("dump-teacher", "--task", "sst2", "--data", GLUE / "SST-2", "--documents", "file", "--out",
                       tmp_path / "d"), "--documents: only a corpus is cut into documents; --task sst2 reads rows")


def test_whole_files_are_held_out_whole(tmp_path, tiny_teacher):
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    sentences = [line.split("\t")[0] for line in (GLUE / "SST-2" / "train.tsv").read_text().splitlines()[1:97]]
    folder = tmp_path / "books"
    folder.mkdir()
    for book in range(12):
        chapter = sentences[book * 8:(book + 1) * 8]
        (folder / f"{book:02}.txt").write_text("\n\n".join(chapter[:4]) + "\n\n" + "\n".join(chapter[4:]) + "\n")
    expected = whole_file_sequences(folder, tokenizer, 0.5)
    train, holdout = (packed(Corpus(folder, split, 0.5, documents="file"), tokenizer) for split in ("train", "holdout"))
    assert train == expected[False] and holdout == expected[True] and train and holdout


def test_holdout_never_shares_a_sequence_with_training(tmp_path, tiny_teacher):
    """Documents the uncased tokenizer makes alike (a heading in two cases) fall on one side, and
    different documents with the same opening keep it on the training side only."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    sentences = [line.split("\t")[0] for line in (GLUE / "SST-2" / "train.tsv").read_text().splitlines()[1:41]]
    docs = [f"{s.upper()}" for s in sentences] + [f"{s.title()}" for s in sentences]  # alike once lower-cased
    docs += [f"{sentences[0]} {sentences[0]} {s}" for s in sentences]  # a shared opening piece of 14 tokens
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("\n\n".join(docs) + "\n")
    train, holdout = (packed(Corpus(tmp_path / "corpus", split, 0.5), tokenizer) for split in ("train", "holdout"))
    assert len(train) > 40 and len(holdout) > 10
    assert not set(map(tuple, train)) & set(map(tuple, holdout))
    assert holdout == expected_sequences(tmp_path / "corpus", tokenizer, "holdout", 0.5)


@pytest.fixture
def bare_twin(tiny_teacher):
    """The tiny classification teacher's encoder alone, as the reference forward of a headless dump."""
    from transformers import BertModel

    bare = tiny_teacher.parent / "bare"
    if not bare.exists():
        BertModel.from_pretrained(tiny_teacher, add_pooling_layer=False).save_pretrained(bare)
        AutoTokenizer.from_pretrained(tiny_teacher).save_pretrained(bare)
    return bare


def test_corpus_dump_matches_the_teacher_without_its_head(tmp_path, corpus, tiny_teacher, bare_twin):
    dump(tiny_teacher, GLUE, tmp_path / "c", task="corpus", data=corpus, holdout=0.25, max_seq_len=MAX_LEN,
         limit=None)
    cache = open_cache(tmp_path / "c")
    assert cache.manifest.teacher.num_labels == 0 and cache.manifest.data.label_kind == "none"
    assert cache.manifest.data.columns == {"holdout": 0.25, "limit": None, "documents": "blank-lines"}
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    assert [cache[i]["input_ids"].tolist() for i in range(len(cache))] == \
        expected_sequences(corpus, tokenizer, "train", 0.25)
    assert_matches_reference(tmp_path / "c", bare_twin)  # the same encoder without its head: no logits


def test_corpus_identity_includes_the_holdout(tmp_path, corpus, tiny_teacher):
    dump(tiny_teacher, GLUE, tmp_path / "c", task="corpus", data=corpus, holdout=0.25, max_seq_len=MAX_LEN)
    with pytest.raises(CacheError, match="--holdout"):
        dump(tiny_teacher, GLUE, tmp_path / "c", task="corpus", data=corpus, holdout=0.1, max_seq_len=MAX_LEN)
    (corpus / "a.txt").write_text((corpus / "a.txt").read_text() + "\n\none more document .\n")
    with pytest.raises(CacheError, match="data file contents"):
        dump(tiny_teacher, GLUE, tmp_path / "c", task="corpus", data=corpus, holdout=0.25, max_seq_len=MAX_LEN)


@pytest.mark.parametrize("args, expected", [
    (["--split", "holdout"], "--split holdout: the held-out part is empty; give --holdout FRACTION"),
    (["--split", "dev"], "--split: a corpus has the splits train, holdout, not 'dev'"),
    (["--data", "{empty}"], "folder has no .txt files"),
    (["--data", "{bad}"], "bad.txt:2: not valid UTF-8 (byte 0xff)"),
    (["--task", "sst2", "--data", str(GLUE / "SST-2"), "--holdout", "0.1"], "--holdout: only a corpus is split"),
])
def test_corpus_mistakes_are_one_line(tmp_path, corpus, args, expected):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "bad.txt").write_bytes(b"fine line\n\xff broken\n")
    args = [a.format(empty=tmp_path / "empty", bad=tmp_path / "bad") for a in args]
    options = {"--task": "corpus", "--data": str(corpus)}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        options[flag] = value
    extra = [x for pair in options.items() for x in pair]
    assert_refused(run("dump-teacher", *extra, "--out", tmp_path / "out"), expected)
    assert not (tmp_path / "out").exists()


def test_commands_that_need_labels_refuse_a_corpus(tmp_path, corpus):
    with pytest.raises(UserError, match="only dump-teacher reads a corpus"):
        from cache.data.readers import load_examples

        load_examples("corpus", corpus, "train")
    assert_refused(run("finetune-teacher", "--task", "corpus", "--data", corpus, "--out", tmp_path / "t"),
                   "only dump-teacher reads a corpus")


def test_real_minilm_on_the_real_corpus(tmp_path):
    """The packaged MiniLM over the first sequences of the real corpus: packed as a plain loop says,
    targets equal to a fresh forward, and the held-out dump shares no sequence with the training one."""
    corpus = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "corpus"
    teacher = default_teacher_path()
    common = {"task": "corpus", "data": corpus, "holdout": 0.05, "layers": (0, 3, 6), "limit": 6}
    dump(teacher, GLUE, tmp_path / "train", **common)
    dump(teacher, GLUE, tmp_path / "holdout", split="holdout", **common)
    assert_matches_reference(tmp_path / "train", teacher)
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    first_book = sorted(corpus.glob("*.txt"))[0]
    first_doc = tokenizer(next(paragraphs((first_book,)))[1], add_special_tokens=False)["input_ids"]
    train, holdout = open_cache(tmp_path / "train"), open_cache(tmp_path / "holdout")
    if not held_out(first_doc, 0.05):
        assert train[0]["input_ids"].tolist() == [tokenizer.cls_token_id, *first_doc[:126], tokenizer.sep_token_id]
    sequences = {tuple(c[i]["input_ids"].tolist()) for c in (train, holdout) for i in range(len(c))}
    assert len(sequences) == 12
    info = json.loads(run("cache", "info", tmp_path / "holdout", "--json").output)
    assert info["data"]["split"] == "holdout" and info["data"]["columns"]["holdout"] == 0.05
