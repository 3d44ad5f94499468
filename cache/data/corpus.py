"""Raw text corpora for general distillation, packed into sequences for the teacher.

A corpus is one text file or every `.txt` file of a folder, read in sorted order. A document is a
run of non-blank lines (`blank-lines`), or a whole file (`file`: its paragraphs' tokens one after
another). Plain-text books and WikiText separate *paragraphs* with blank lines, so under the first
rule most sequences end at a paragraph's end, far short of `max_seq_len`; under the second they pack
across paragraph breaks, never across files. Each document is tokenised as a stream and cut into
consecutive pieces of `max_seq_len - 2` tokens, each wrapped as `[CLS] piece [SEP]`: every sequence
holds consecutive text of one document (no `[MASK]`, no sentence pairs), all but a document's tail
exactly `max_seq_len` long, and the tail kept. Files are read line by line and tokenised a chunk of
paragraphs at a time, so the text is never held whole; what stays in memory is the packed token ids
(5 bytes per token) and, under `file`, one file's tokens and text.

The held-out part is chosen per document by a hash of its tokens, not of its raw text: the same
documents every time, whatever the files' order or `--limit`, and documents the tokenizer makes
alike (a repeated chapter heading, `CHAPTER XXIV` and `Chapter XXIV` under an uncased one) fall on
one side only. Different documents can still share a piece (the same opening lines): the held-out
part drops every sequence the training part also has, so the two parts never share a sequence.
"""

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.data.sequences import sequence_hash
from cache.data.tasks import CORPUS_TASK
from cache.runtime.errors import DataError, UserError

CORPUS_SPLITS = ("train", "holdout")
DOCUMENT_RULES = ("blank-lines", "file")
"""What one document is: a run of non-blank lines, or a whole file."""
PARAGRAPHS_PER_CALL = 1024  # paragraphs per tokenizer call: bounds memory whatever the corpus size


def corpus_files(path: Path) -> tuple[Path, ...]:
    """The text files of a corpus: `path` itself, or the `.txt` files of a folder in sorted order."""
    if path.is_file():
        return (path,)
    if not path.is_dir():
        raise DataError(str(path), None, "no such file or folder")
    files = tuple(sorted(p for p in path.glob("*.txt") if p.is_file()))
    if not files:
        raise DataError(str(path), None, "folder has no .txt files")
    return files


def held_out(document: Sequence[int], fraction: float) -> bool:
    """Whether a document belongs to the held-out part: the hash of its token ids, read as a number
    in [0, 1)."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(np.asarray(document, dtype=np.int32).tobytes()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def paragraphs(files: tuple[Path, ...]) -> Iterator[tuple[int, str]]:
    """Each file's runs of non-blank lines in order, with the number of their file."""
    for index, file in enumerate(files):
        lines: list[str] = []
        with open(file, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(str(file), number, f"not valid UTF-8 (byte 0x{raw[e.start]:02x})") from None
                if line.strip():
                    lines.append(line.rstrip("\r\n"))
                elif lines:
                    yield index, "\n".join(lines)
                    lines = []
        if lines:
            yield index, "\n".join(lines)


@dataclass(frozen=True)
class Corpus:
    """The part of a corpus one dump reads: which files, which split, how many sequences."""

    path: Path
    split: str = "train"
    holdout: float = 0.0
    """Fraction of documents (by hash) set aside for evaluation; `split` says which part to read."""
    limit: int | None = None
    """Stop after this many sequences (a slice of a corpus too large to cache whole)."""
    documents: str = DOCUMENT_RULES[0]
    """What one document is (`DOCUMENT_RULES`): sequences never cross a document's end."""
    task: str = CORPUS_TASK
    labels: None = None
    label_names: None = None

    @property
    def files(self) -> tuple[Path, ...]:
        return corpus_files(self.path)

    def check(self) -> None:
        self.files  # noqa: B018 - raises a DataError for a missing path or a folder without text
        if self.split not in CORPUS_SPLITS:
            raise UserError(f"--split: a corpus has the splits {', '.join(CORPUS_SPLITS)}, not {self.split!r}")
        if not 0 <= self.holdout < 1:
            raise UserError(f"--holdout: {self.holdout} is not a fraction in [0, 1)")
        if self.documents not in DOCUMENT_RULES:
            raise UserError(f"--documents: {self.documents!r} is not one of {', '.join(DOCUMENT_RULES)}")
        if self.split == "holdout" and self.holdout == 0:
            raise UserError("--split holdout: the held-out part is empty; give --holdout FRACTION (e.g. 0.01)")

    def pack(self, tokenizer, max_seq_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids (T,) int32 of every packed sequence of this split, concatenated, and the
        lengths (n,) int32. The held-out split reads the whole corpus: it drops the sequences that
        the training split also has."""
        want_held_out = self.split == "holdout"
        kept: list[np.ndarray] = []
        other: set[int] = set()  # hashes of the training split's sequences (held-out split only)
        for document in self._tokenized_documents(tokenizer):
            pieces = _pieces(document, max_seq_len - 2, tokenizer)
            if held_out(document, self.holdout) != want_held_out:
                if want_held_out:
                    other.update(map(_piece_hash, pieces))
                continue
            kept += pieces
            if not want_held_out and self.limit is not None and len(kept) >= self.limit:
                break
        if want_held_out:
            kept = [piece for piece in kept if _piece_hash(piece) not in other]
        kept = kept[:self.limit]
        if not kept:
            raise DataError(str(self.path), None, f"the {self.split} part of the corpus has no text")
        return np.concatenate(kept), np.asarray([len(piece) for piece in kept], dtype=np.int32)

    def texts(self, tokenizer) -> list[str]:
        """The paragraphs of this split's documents as text, in corpus order, up to `limit` (what
        an embedder is scored on); documents are split as `pack` splits them."""
        kept: list[str] = []
        for document in self._documents(tokenizer):
            if held_out([t for _, ids in document for t in ids], self.holdout) == (self.split == "holdout"):
                kept += [text for text, _ in document]
            if self.limit is not None and len(kept) >= self.limit:
                break
        if not kept:
            raise DataError(str(self.path), None, f"the {self.split} part of the corpus has no text")
        return kept[:self.limit]

    def _documents(self, tokenizer) -> Iterator[list[tuple[str, list[int]]]]:
        """Every document as its paragraphs' (text, token ids), in corpus order."""
        whole_files = self.documents == "file"
        file, document = 0, list[tuple[str, list[int]]]()
        for chunk in _chunks(paragraphs(self.files), PARAGRAPHS_PER_CALL):
            encoded = tokenizer([text for _, text in chunk], add_special_tokens=False, truncation=False,
                                verbose=False, return_attention_mask=False, return_token_type_ids=False)["input_ids"]
            for (number, text), ids in zip(chunk, encoded, strict=True):
                if document and (not whole_files or number != file):
                    yield document
                    document = []
                file = number
                document.append((text, ids))
        if document:
            yield document

    def _tokenized_documents(self, tokenizer) -> Iterator[list[int]]:
        """Every document's token ids (no special tokens), in corpus order; under `file`, a file
        the tokenizer finds nothing in is no document."""
        for document in self._documents(tokenizer):
            ids = [token for _, tokens in document for token in tokens]
            if ids or self.documents != "file":
                yield ids


def _pieces(document: list[int], body: int, tokenizer) -> list[np.ndarray]:
    """A document's tokens cut into consecutive pieces of `body` tokens, each as [CLS] piece [SEP]."""
    return [np.asarray([tokenizer.cls_token_id, *document[start:start + body], tokenizer.sep_token_id],
                       dtype=np.int32) for start in range(0, len(document), body)]


def _piece_hash(piece: np.ndarray) -> int:
    """A packed sequence's hash as a cache's index records it (a corpus has one token type)."""
    return sequence_hash(piece, np.zeros(len(piece), np.int8))


def _chunks(items: Iterator[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
