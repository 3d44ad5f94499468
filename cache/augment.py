"""Data augmentation for task distillation: more sentences for the teacher to label.

A fine-tuned teacher is nearly certain on its own training set (docs/results.md), so its soft
targets there say little beyond the gold labels.
TinyBERT (Jiao et al., 2020, section 3.3) therefore distils on an augmented set: each word is
replaced with probability p_t = 0.4 by one of K = 15 candidates, N_a = 20 copies per sentence; the
teacher labels the new sentences, which sit near the decision boundary often enough to teach.

The paper takes candidates from BERT's masked-LM head (single-piece words) and GloVe neighbours
(others). Neither is available offline here (the packaged MiniLM has no MLM head), so candidates
are the K nearest whole-word neighbours, by cosine, in the teacher's own input-embedding matrix;
words the vocabulary splits into pieces are kept. The output is the input file with extra rows:
every original row first, then the copies, labels carried over (distillation ignores them).
"""

import os
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .checkpoints import default_teacher_path, load_config, load_tokenizer
from .config import AUGMENT_RECORD, AugmentConfig
from .data import canonical_task, load_examples, table_rows, task_spec
from .errors import UserError
from .records import file_sha256, write_record


class Neighbours:
    """The K nearest whole-word tokens of each whole-word token, by cosine of input embeddings."""

    def __init__(self, words: list[str], embeddings: torch.Tensor, k: int, chunk: int = 2048):
        unit = torch.nn.functional.normalize(embeddings.float(), dim=1)
        self.words = words
        self.row = {word: i for i, word in enumerate(words)}
        tops = []
        for start in range(0, len(words), chunk):
            similarity = unit[start:start + chunk] @ unit.T
            similarity[torch.arange(len(similarity)), torch.arange(start, start + len(similarity))] = -2  # not itself
            tops.append(similarity.topk(k, dim=1).indices)
        self.table = torch.cat(tops).numpy()  # (words, K)

    @classmethod
    def of_teacher(cls, teacher: str, k: int) -> "Neighbours":
        from transformers import AutoModel

        tokenizer = load_tokenizer(teacher, "--teacher", load_config(teacher, "--teacher").vocab_size)
        weight = AutoModel.from_pretrained(teacher).get_input_embeddings().weight.detach()
        vocab = tokenizer.get_vocab()
        words = sorted((w for w in vocab if w.isalpha() and w not in tokenizer.all_special_tokens), key=vocab.get)
        if k >= len(words):
            raise UserError(f"--neighbours: {k} is not below the teacher's {len(words)} whole words")
        return cls(words, weight[[vocab[w] for w in words]], k)

    def candidates(self, word: str) -> np.ndarray | None:
        row = self.row.get(word.lower())
        return None if row is None else self.table[row]


def augment_text(text: str, neighbours: Neighbours, p_replace: float, rng: np.random.Generator) -> str:
    """One copy of `text` with each whole word replaced by a random neighbour with probability p."""
    words = text.split(" ")
    for i, word in enumerate(words):
        options = neighbours.candidates(word)
        if options is not None and rng.random() < p_replace:
            words[i] = neighbours.words[options[rng.integers(len(options))]]
    return " ".join(words)


def augment_file(config: AugmentConfig, command: str | None = None, progress: bool = True) -> Path:
    """Write `config.out`/<split>.<ext>: the original rows, then `copies` augmented copies of each,
    with `augment.json` (config, command, source checksum) beside it. Returns the file written."""
    config.check()
    task, source = canonical_task(config.task), config.source()
    load_examples(task, source, config.split, columns=config.columns)  # every row checked first, as the dump checks it
    spec = task_spec(task, config.split, config.columns)
    rows = [fields for _, fields in table_rows(source, task)]
    header = list(rows.pop(0)) if spec.header else []
    columns = [header.index(c) if isinstance(c, str) else c for c in (spec.text, spec.pair) if c is not None]
    neighbours = Neighbours.of_teacher(config.teacher or default_teacher_path(), config.neighbours)
    rng = np.random.default_rng(config.seed)
    copies = []
    for fields in tqdm(rows, desc="augment", unit="row", disable=not progress):
        for _ in range(config.copies):
            copy = list(fields)
            for c in columns:
                copy[c] = augment_text(fields[c], neighbours, config.p_replace, rng)
            copies.append(copy)
    out = config.output()
    out.parent.mkdir(parents=True, exist_ok=True)
    body = ["\t".join(fields) for fields in [*([header] if header else []), *rows, *copies]]
    staging = out.with_name(f".{out.name}.partial")  # renamed when whole: a killed run leaves no short file
    staging.write_text("\n".join(body) + "\n", encoding="utf-8")
    os.replace(staging, out)
    write_record(out.parent / AUGMENT_RECORD, config, command or shlex.join(sys.argv),
                 source={"file": str(source), "sha256": file_sha256(source), "rows": len(rows)},
                 output={"file": str(out), "rows": len(rows) + len(copies)})
    return out
