"""Data augmentation for task distillation: more sentences for the teacher to label.

A fine-tuned teacher is nearly certain on its own training set (docs/results.md), so its soft
targets there say little beyond the gold labels.
TinyBERT (Jiao et al., 2020, section 3.3) therefore distils on an augmented set: each word that is
not a stop word is replaced with probability p_t = 0.4 by one of its K = 15 candidates
(`cache.teacher.candidates`), N_a new sentences per example (20 for SST-2 and QNLI, 10 for MNLI and QQP,
30 otherwise, as the reference script), duplicates dropped. The teacher labels the new sentences,
which sit near the decision boundary often enough to teach. The output is the input file with
extra rows: every original row first, then each row's new sentences, labels carried over
(distillation ignores them). Words are the alphabetic runs of the text; everything between them
(spaces, punctuation) is kept as it was.
"""

import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from tqdm import tqdm

from cache.data.checkpoints import default_teacher_path
from cache.data.readers import canonical_task, load_examples, table_rows, task_spec
from cache.runtime.device import resolve_device
from cache.runtime.records import file_sha256, write_record
from cache.teacher.candidates import (
    STOP_WORDS,
    EmbeddingNeighbours,
    GloveNeighbours,
    MaskedLM,
    MaskedWord,
    Words,
)
from cache.teacher.config import AUGMENT_RECORD, AugmentConfig

WORD = re.compile(r"([^\W\d_]+)")
"""Alphabetic runs: `re.split` with this group puts the words at the odd indices."""
ROWS_PER_CHUNK = 256  # rows whose masked words go to the masked LM together


@dataclass
class Sources:
    """Where candidates come from: one-piece words from the masked LM, else the teacher's
    embeddings; words of several pieces from GloVe, else nowhere (kept)."""

    vocabulary: Words
    """The one that decides what a one-piece word is: the masked LM's, else the teacher's."""
    masked_lm: MaskedLM | None
    embedding: EmbeddingNeighbours | None
    glove: GloveNeighbours | None


Slots = list[tuple[int, list[str]]]
"""The replaceable words of one text: (segment index, candidates)."""


def candidate_slots(texts: list[str], sources: Sources) -> list[tuple[tuple[str, ...], Slots]]:
    """Each text split into segments, with the candidates of each replaceable word."""
    out: list[tuple[tuple[str, ...], Slots]] = []
    queued: list[tuple[int, int, MaskedWord]] = []  # (text, slot, what to mask)
    for text in texts:
        segments = tuple(WORD.split(text))
        slots: Slots = []
        for index in range(1, len(segments), 2):
            word = segments[index]
            if word.lower() in STOP_WORDS:
                continue
            if sources.vocabulary.piece_of(word) is None:
                slots.append((index, sources.glove(word) if sources.glove else []))
            elif sources.masked_lm is not None:
                slots.append((index, []))
                queued.append((len(out), len(slots) - 1, MaskedWord(segments, index)))
            else:
                slots.append((index, sources.embedding(word) if sources.embedding else []))
        out.append((segments, slots))
    if sources.masked_lm is not None and queued:
        found = sources.masked_lm.candidates([masked for _, _, masked in queued])
        for (row, slot, masked), candidates in zip(queued, found, strict=True):
            out[row][1][slot] = (masked.index, candidates)
    return out


def match_case(candidate: str, word: str) -> str:
    """The candidate written as the word it replaces is (uncased vocabularies give lower case)."""
    if len(word) > 1 and word.isupper():
        return candidate.upper()
    return candidate.capitalize() if word[0].isupper() else candidate


def new_text(segments: tuple[str, ...], slots: Slots, p_replace: float, rng: np.random.Generator) -> str:
    """One new sentence: each word with candidates replaced by a random one with probability p."""
    words = list(segments)
    for index, candidates in slots:
        if candidates and rng.random() < p_replace:
            words[index] = match_case(candidates[rng.integers(len(candidates))], segments[index])
    return "".join(words)


def new_rows(fields: list[str], columns: list[int], texts: list[tuple[tuple[str, ...], Slots]], copies: int,
             p_replace: float, rng: np.random.Generator) -> list[list[str]]:
    """Up to `copies` new rows of one row, none equal to it or to each other."""
    seen, rows = {tuple(fields)}, []
    for _ in range(copies):
        row = list(fields)
        for column, (segments, slots) in zip(columns, texts, strict=True):
            row[column] = new_text(segments, slots, p_replace, rng)
        if tuple(row) not in seen:
            seen.add(tuple(row))
            rows.append(row)
    return rows


def load_sources(config: AugmentConfig) -> Sources:
    """The candidates' sources; GloVe first, as it is read whole: a bad file is found before any model loads."""
    device = resolve_device(config.device)
    glove = GloveNeighbours(Path(config.glove), config.neighbours) if config.glove is not None else None
    if config.mlm is not None:
        masked_lm = MaskedLM(config.mlm, config.neighbours, config.batch_size, device)
        vocabulary, embedding = masked_lm.vocabulary, None
    else:
        embedding = EmbeddingNeighbours.of_teacher(config.teacher or default_teacher_path(), config.neighbours)
        masked_lm, vocabulary = None, embedding.vocabulary
    return Sources(vocabulary, masked_lm, embedding, glove)


def augment_file(config: AugmentConfig, command: str | None = None, progress: bool = True) -> Path:
    """Write `config.out`/<split>.<ext>: the original rows, then `copies` augmented copies of each,
    with `augment.json` (config, command, source checksum) beside it. Returns the file written."""
    config.check()
    task, source = canonical_task(config.task), config.source()
    # every row checked first, as the dump checks it
    load_examples(task, source, config.split, columns=config.columns, limit=config.limit)
    spec = task_spec(task, config.split, config.columns)
    rows = [cast(list[str], fields) for _, fields in table_rows(source, task)]
    header = list(rows.pop(0)) if spec.header else []
    rows = rows[:config.limit]
    columns = [header.index(c) if isinstance(c, str) else c for c in (spec.text, spec.pair) if c is not None]
    sources = load_sources(config)
    rng = np.random.default_rng(config.seed)
    copies = []
    with tqdm(total=len(rows), desc="augment", unit="row", disable=not progress) as bar:
        for start in range(0, len(rows), ROWS_PER_CHUNK):
            chunk = rows[start:start + ROWS_PER_CHUNK]
            slots = candidate_slots([fields[c] for fields in chunk for c in columns], sources)
            for i, fields in enumerate(chunk):
                texts = slots[i * len(columns):(i + 1) * len(columns)]
                copies += new_rows(fields, columns, texts, config.resolved_copies(), config.p_replace, rng)
            bar.update(len(chunk))
    out = config.output()
    out.parent.mkdir(parents=True, exist_ok=True)
    body = ["\t".join(fields) for fields in [*([header] if header else []), *rows, *copies]]
    staging = out.with_name(f".{out.name}.partial")  # renamed when whole: a killed run leaves no short file
    staging.write_text("\n".join(body) + "\n", encoding="utf-8")
    os.replace(staging, out)
    write_record(out.parent / AUGMENT_RECORD, config, command or shlex.join(sys.argv),
                 source={"file": str(source), "sha256": file_sha256(source), "rows": len(rows)},
                 output={"file": str(out), "rows": len(rows) + len(copies), "new_rows": len(copies)},
                 copies_resolved=config.resolved_copies(),
                 candidates={"one piece": f"masked LM {config.mlm}" if config.mlm else "teacher input embeddings",
                             "several pieces": f"GloVe {config.glove}" if config.glove else "kept"})
    return out
