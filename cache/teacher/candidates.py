"""Replacement candidates for TinyBERT's data augmentation: a masked LM, GloVe, or the teacher's
input embeddings.

The paper's recipe: a word that is one word piece is masked and the masked LM's K likeliest words
are its candidates (they depend on the sentence); a word split into pieces takes its K nearest
GloVe words (cosine). Without a masked LM, a one-piece word takes its K nearest whole words in
the teacher's input embeddings, and without GloVe a word of several pieces is kept.

The masked LM runs batched: every masked copy of every sentence of a chunk goes through the
encoder together (length-sorted, padded per batch), and only the masked positions go through the
LM head. The reference code runs one forward per word.

Masked LMs and teachers of every family in `cache.data.families` serve, whatever their vocabulary
marks: WordPiece marks the pieces that continue a word ("##"), byte-level BPE (RoBERTa, ModernBERT)
and SentencePiece (XLM-R, DeBERTa-v3) the pieces that begin one ("Ġ", "▁"). `Words` reads a
vocabulary as the words it holds whole.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

import numpy as np
import torch

from cache.data.checkpoints import load_config, load_tokenizer
from cache.data.families import family_of
from cache.data.tokenize import Tokenized
from cache.runtime.errors import DataError, UserError

STOP_WORDS = frozenset({
    "i", "me", "my", "myself", "we", "our", "ours", "ourselves", "you", "your", "yours", "yourself", "yourselves",
    "he", "him", "his", "himself", "she", "her", "hers", "herself", "it", "its", "itself", "they", "them", "their",
    "theirs", "themselves", "what", "which", "who", "whom", "this", "that", "these", "those", "am", "is", "are",
    "was", "were", "be", "been", "being", "have", "has", "had", "having", "do", "does", "did", "doing", "a", "an",
    "the", "and", "but", "if", "or", "because", "as", "until", "while", "of", "at", "by", "for", "with", "about",
    "against", "between", "into", "through", "during", "before", "after", "above", "below", "to", "from", "up",
    "down", "in", "out", "on", "off", "over", "under", "again", "further", "then", "once", "here", "there", "when",
    "where", "why", "how", "all", "any", "both", "each", "few", "more", "most", "other", "some", "such", "no", "nor",
    "not", "only", "own", "same", "so", "than", "too", "very", "s", "t", "can", "will", "just", "don", "should",
    "now", "d", "ll", "m", "o", "re", "ve", "y", "ain", "aren", "couldn", "didn", "doesn", "hadn", "hasn", "haven",
    "isn", "ma", "mightn", "mustn", "needn", "shan", "shouldn", "wasn", "weren", "won", "wouldn",
})
"""English stop words (NLTK's list, which the reference augmentation script uses): never replaced."""


WORD_STARTS = ("Ġ", "▁")
"""The marks byte-level BPE and SentencePiece vocabularies put on a piece that begins a word."""


def word_start_mark(vocabulary: Iterable[str]) -> str:
    """The mark this vocabulary's word-beginning pieces carry ("" for WordPiece: none)."""
    entries = list(vocabulary)
    counts = {mark: sum(entry.startswith(mark) for entry in entries) for mark in WORD_STARTS}
    mark = max(counts, key=lambda m: counts[m])
    return mark if counts[mark] * 10 > len(entries) else ""


class Words:
    """A tokenizer's vocabulary read as words: which entries stand for a whole word, and which one
    piece a word takes where it follows a space (as a word inside a sentence does)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        vocabulary = tokenizer.get_vocab()
        self.mark = word_start_mark(vocabulary)
        self.specials = set(tokenizer.all_special_tokens)

    def word_of(self, entry: str) -> str | None:
        """The word a vocabulary entry stands for: alphabetic, beginning a word, not a special token."""
        if entry in self.specials or not entry.startswith(self.mark):
            return None
        word = entry[len(self.mark):]
        return word if word.isalpha() else None

    def piece_of(self, word: str) -> str | None:
        """The one piece the word is, None where the vocabulary splits it (or does not know it)."""
        pieces = self.tokenizer.tokenize(" " + word)
        return pieces[0] if len(pieces) == 1 and pieces[0] != self.tokenizer.unk_token else None


class EmbeddingNeighbours:
    """The K nearest whole-word tokens of each whole-word token, by cosine of input embeddings."""

    def __init__(self, vocabulary: Words, entries: list[str], embeddings: torch.Tensor, k: int, chunk: int = 2048):
        unit = torch.nn.functional.normalize(embeddings.float(), dim=1)
        self.vocabulary = vocabulary
        self.words = [vocabulary.word_of(entry) or entry for entry in entries]
        self.row = {word: i for i, word in enumerate(self.words)}
        tops = []
        for start in range(0, len(entries), chunk):
            similarity = unit[start:start + chunk] @ unit.T
            similarity[torch.arange(len(similarity)), torch.arange(start, start + len(similarity))] = -2  # not itself
            tops.append(similarity.topk(k, dim=1).indices)
        self.table = torch.cat(tops).numpy()  # (words, K)

    @classmethod
    def of_teacher(cls, teacher: str, k: int) -> "EmbeddingNeighbours":
        from transformers import AutoModel

        vocabulary = Words(load_tokenizer(teacher, "--teacher", load_config(teacher, "--teacher")))
        weight = AutoModel.from_pretrained(teacher).get_input_embeddings().weight.detach()
        vocab = vocabulary.tokenizer.get_vocab()
        entries = sorted((entry for entry in vocab if vocabulary.word_of(entry)), key=vocab.get)
        if k >= len(entries):
            raise UserError(f"--neighbours: {k} is not below the teacher's {len(entries)} whole words")
        return cls(vocabulary, entries, weight[[vocab[entry] for entry in entries]], k)

    def __call__(self, word: str) -> list[str]:
        row = self.row.get(word.lower())
        return [] if row is None else [self.words[i] for i in self.table[row]]


class GloveNeighbours:
    """The K nearest alphabetic words by cosine in a GloVe text file (`word v1 ... vd` per line),
    computed for the words asked for only."""

    def __init__(self, path: Path, k: int):
        words: list[str] = []
        vectors: list[np.ndarray] = []
        with open(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(str(path), number, f"not valid UTF-8 (byte 0x{raw[e.start]:02x})") from None
                word, *values = line.rstrip("\n").split(" ")
                if vectors and len(values) != len(vectors[0]):
                    raise DataError(str(path), number, f"{len(values)} numbers, the first line has {len(vectors[0])}")
                try:
                    vectors.append(np.asarray(values, dtype=np.float32))
                except ValueError:
                    raise DataError(str(path), number, "not a GloVe line (a word, then numbers)") from None
                words.append(word)
        if not words:
            raise DataError(str(path), None, "file is empty")
        matrix = np.stack(vectors)
        self.words, self.k = words, k
        self.row = {word: i for i, word in enumerate(words)}
        self.unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        self.allowed = np.array([w.isalpha() for w in words])
        self.cache: dict[str, list[str]] = {}

    def __call__(self, word: str) -> list[str]:
        key = word.lower()
        if key not in self.cache:
            row = self.row.get(key)
            if row is None:
                self.cache[key] = []
            else:
                similarity = np.where(self.allowed, self.unit @ self.unit[row], -np.inf)
                similarity[row] = -np.inf
                top = np.argsort(-similarity, kind="stable")[:self.k]
                self.cache[key] = [self.words[i] for i in top if np.isfinite(similarity[i])]
        return self.cache[key]


@dataclass(frozen=True)
class MaskedWord:
    """One word of one text to be masked: the text's segments with the word at `index`."""

    segments: tuple[str, ...]
    index: int

    @property
    def word(self) -> str:
        return self.segments[self.index]


class MaskedLM:
    """A masked LM's K likeliest whole words at masked positions, many at a time."""

    def __init__(self, path: str, k: int, batch_size: int, device: torch.device):
        from transformers import AutoModelForMaskedLM

        config = load_config(path, "--mlm")
        self.tokenizer = load_tokenizer(path, "--mlm", config)
        model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
        missing = [key for key in info["missing_keys"] if not key.startswith(f"{model.base_model_prefix}.")]
        if missing:
            raise UserError(f"--mlm: {path} has no masked-LM head ({missing[0]} missing); give a masked-LM "
                            "checkpoint (the packaged MiniLM has none)")
        self.model = model.eval().to(device)
        self.head = [attrgetter(name)(model) for name in family_of(config, f"--mlm: {path}").mlm_head]
        self.k, self.batch_size, self.device = k, batch_size, device
        self.vocabulary = Words(self.tokenizer)
        vocab = self.tokenizer.get_vocab()
        entries = sorted(vocab, key=vocab.get)
        self.words = [self.vocabulary.word_of(entry) or entry for entry in entries]
        blocked = torch.ones(config.vocab_size, dtype=torch.bool)  # rows past the tokenizer's: never a word
        blocked[[vocab[entry] for entry in entries if self.vocabulary.word_of(entry)]] = False
        self.blocked = blocked.to(device)

    def logits_at(self, ids: torch.Tensor, mask: torch.Tensor, at_mask: torch.Tensor) -> torch.Tensor:
        """(masked rows, V) float logits: the LM head at the masked positions only, where the family's
        head is a chain of modules on the hidden states; else the whole model's (DeBERTa's head
        takes the word embeddings too)."""
        if not self.head:
            return self.model(input_ids=ids, attention_mask=mask.long()).logits[at_mask].float()
        rows = self.model.base_model(input_ids=ids, attention_mask=mask.long()).last_hidden_state[at_mask]
        for module in self.head:
            rows = module(rows)
        return rows.float()

    @torch.inference_mode()
    def candidates(self, masked: list[MaskedWord]) -> list[list[str]]:
        """The K likeliest whole words (the masked word itself excluded) for each masked word."""
        texts = ["".join(self.tokenizer.mask_token if i == m.index else s for i, s in enumerate(m.segments))
                 for m in masked]
        encoded = self.tokenizer(texts, truncation=True, max_length=self.model.config.max_position_embeddings,
                                 return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        tokens = Tokenized(np.concatenate([np.asarray(e, dtype=np.int32) for e in encoded]),
                           np.zeros(sum(map(len, encoded)), dtype=np.int8),
                           np.asarray([len(e) for e in encoded], dtype=np.int32), truncated=0)
        out: list[list[str]] = [[] for _ in masked]
        order = np.argsort(tokens.lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size].tolist()
            ids, _, mask = (t.to(self.device) for t in tokens.padded(np.asarray(batch)))
            at_mask = ids == self.tokenizer.mask_token_id  # (B, L); a mask cut off by truncation gives no row
            rows = at_mask.any(1)
            logits = self.logits_at(ids, mask, at_mask)
            logits[:, self.blocked] = -torch.inf
            kept = [i for i, has in zip(batch, rows.tolist(), strict=True) if has]
            for row, i in enumerate(kept):  # never the word itself
                piece = self.vocabulary.piece_of(masked[i].word)
                logits[row, self.tokenizer.convert_tokens_to_ids(piece)] = -torch.inf
            values, indices = logits.topk(min(self.k, logits.shape[1]), dim=1)
            for i, scores, top in zip(kept, values.tolist(), indices.tolist(), strict=True):
                out[i] = [self.words[t] for t, score in zip(top, scores, strict=True) if score > -torch.inf]
        return out

