"""Raw text corpora for general distillation, packed into sequences for the teacher.

A corpus is one text file or every `.txt` file of a folder, read in sorted order; blank lines
separate documents. Each document is tokenised as a stream and cut into consecutive pieces of
`max_seq_len - 2` tokens, each wrapped as `[CLS] piece [SEP]`: every sequence holds consecutive text
of one document (no `[MASK]`, no sentence pairs), all but a document's tail exactly `max_seq_len`
long, and the tail kept. Files are read line by line and tokenised a chunk of documents at a time,
so the text is never held whole; what stays in memory is the packed token ids (5 bytes per token).

The held-out part is chosen per document by a hash of its text: the same documents every time,
whatever the files' order or `--limit`, and a document repeated in the corpus (a chapter heading, a
boilerplate line) falls on one side only, so the two parts never share a sequence.
"""

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError, UserError
from .tasks import CORPUS_TASK

CORPUS_SPLITS = ("train", "holdout")
DOCUMENTS_PER_CALL = 1024  # documents per tokenizer call: bounds memory whatever the corpus size


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


def held_out(document: str, fraction: float) -> bool:
    """Whether a document belongs to the held-out part: its text's hash, read as a number in [0, 1)."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(document.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def documents(files: tuple[Path, ...]) -> Iterator[str]:
    """Each file's documents in order: runs of non-blank lines; a file's end also ends a document."""
    for file in files:
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
                    yield "\n".join(lines)
                    lines = []
        if lines:
            yield "\n".join(lines)


@dataclass(frozen=True)
class Corpus:
    """The part of a corpus one dump reads: which files, which split, how many sequences."""

    path: Path
    split: str = "train"
    holdout: float = 0.0
    """Fraction of documents (by hash) set aside for evaluation; `split` says which part to read."""
    limit: int | None = None
    """Stop after this many sequences (a slice of a corpus too large to cache whole)."""
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
        if self.split == "holdout" and self.holdout == 0:
            raise UserError("--split holdout: the held-out part is empty; give --holdout FRACTION (e.g. 0.01)")

    def documents(self) -> Iterator[str]:
        """The documents of this split, in corpus order."""
        want_held_out = self.split == "holdout"
        return (doc for doc in documents(self.files) if held_out(doc, self.holdout) == want_held_out)

    def pack(self, tokenizer, max_seq_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids (T,) int32 of every packed sequence, concatenated, and the lengths (n,) int32."""
        body = max_seq_len - 2
        ids: list[np.ndarray] = []
        lengths: list[int] = []
        for chunk in _chunks(self.documents(), DOCUMENTS_PER_CALL):
            encoded = tokenizer(chunk, add_special_tokens=False, truncation=False, verbose=False,
                                return_attention_mask=False, return_token_type_ids=False)["input_ids"]
            for document in encoded:
                for start in range(0, len(document), body):
                    piece = [tokenizer.cls_token_id, *document[start:start + body], tokenizer.sep_token_id]
                    ids.append(np.asarray(piece, dtype=np.int32))
                    lengths.append(len(piece))
                    if self.limit is not None and len(lengths) >= self.limit:
                        return np.concatenate(ids), np.asarray(lengths, dtype=np.int32)
        if not lengths:
            raise DataError(str(self.path), None, f"the {self.split} part of the corpus has no text")
        return np.concatenate(ids), np.asarray(lengths, dtype=np.int32)


def _chunks(items: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
