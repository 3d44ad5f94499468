"""Replacement candidates for TinyBERT's data augmentation: a masked LM, GloVe, or the teacher's
input embeddings.

The paper's recipe: a word that is one word piece is masked and the masked LM's K likeliest words
are its candidates (they depend on the sentence); a word split into pieces takes its K nearest
GloVe words (cosine). Without a masked LM, a one-piece word takes its K nearest whole words in
the teacher's input embeddings, and without GloVe a word of several pieces is kept.

The masked LM runs batched: every masked copy of every sentence of a chunk goes through the
encoder together (length-sorted, padded per batch), and only the masked positions go through the
LM head. The reference code runs one forward per word.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cache.data.checkpoints import load_config, load_tokenizer
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


def single_piece(tokenizer, word: str) -> bool:
    """Whether the vocabulary holds the word whole (the masked LM can predict it in one slot)."""
    pieces = tokenizer.tokenize(word)
    return len(pieces) == 1 and pieces[0] != tokenizer.unk_token


def whole_word(token: str) -> bool:
    """A vocabulary entry that can stand for a word: alphabetic, not a special token nor a suffix piece."""
    return token.isalpha()


class EmbeddingNeighbours:
    """The K nearest whole-word tokens of each whole-word token, by cosine of input embeddings."""

    def __init__(self, tokenizer, words: list[str], embeddings: torch.Tensor, k: int, chunk: int = 2048):
        unit = torch.nn.functional.normalize(embeddings.float(), dim=1)
        self.tokenizer, self.words = tokenizer, words
        self.row = {word: i for i, word in enumerate(words)}
        tops = []
        for start in range(0, len(words), chunk):
            similarity = unit[start:start + chunk] @ unit.T
            similarity[torch.arange(len(similarity)), torch.arange(start, start + len(similarity))] = -2  # not itself
            tops.append(similarity.topk(k, dim=1).indices)
        self.table = torch.cat(tops).numpy()  # (words, K)

    @classmethod
    def of_teacher(cls, teacher: str, k: int) -> "EmbeddingNeighbours":
        from transformers import AutoModel

        tokenizer = load_tokenizer(teacher, "--teacher", load_config(teacher, "--teacher", bert_only=True))
        weight = AutoModel.from_pretrained(teacher).get_input_embeddings().weight.detach()
        vocab = tokenizer.get_vocab()
        words = sorted((w for w in vocab if whole_word(w) and w not in tokenizer.all_special_tokens), key=vocab.get)
        if k >= len(words):
            raise UserError(f"--neighbours: {k} is not below the teacher's {len(words)} whole words")
        return cls(tokenizer, words, weight[[vocab[w] for w in words]], k)

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
    """A BERT masked LM's K likeliest whole words at masked positions, many at a time."""

    def __init__(self, path: str, k: int, batch_size: int, device: torch.device):
        from transformers import BertForMaskedLM

        self.tokenizer = load_tokenizer(path, "--mlm", load_config(path, "--mlm", bert_only=True))
        model, info = BertForMaskedLM.from_pretrained(path, output_loading_info=True)
        missing = [key for key in info["missing_keys"] if key.startswith("cls.")]
        if missing:
            raise UserError(f"--mlm: {path} has no masked-LM head ({missing[0]} missing); give a BertForMaskedLM "
                            "checkpoint (the packaged MiniLM has none)")
        self.model = model.eval().to(device)
        self.k, self.batch_size, self.device = k, batch_size, device
        vocab = self.tokenizer.get_vocab()
        self.words = sorted(vocab, key=vocab.get)
        allowed = torch.tensor([whole_word(w) and w not in self.tokenizer.all_special_tokens for w in self.words])
        self.blocked = ~allowed.to(device)

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
            hidden = self.model.bert(input_ids=ids, attention_mask=mask.long()).last_hidden_state
            at_mask = ids == self.tokenizer.mask_token_id  # (B, L); a mask cut off by truncation gives no row
            rows = at_mask.any(1)
            logits = self.model.cls(hidden[at_mask]).float()  # (masked rows, V): the LM head at masks only
            logits[:, self.blocked] = -torch.inf
            kept = [i for i, has in zip(batch, rows.tolist(), strict=True) if has]
            for row, i in enumerate(kept):  # never the word itself
                piece = self.tokenizer.tokenize(masked[i].word)[0]
                logits[row, self.tokenizer.convert_tokens_to_ids(piece)] = -torch.inf
            values, indices = logits.topk(min(self.k, logits.shape[1]), dim=1)
            for i, scores, top in zip(kept, values.tolist(), indices.tolist(), strict=True):
                out[i] = [self.words[t] for t, score in zip(top, scores, strict=True) if score > -torch.inf]
        return out

