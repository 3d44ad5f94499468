"""Tokenise examples with the teacher's tokenizer into flat (ragged) token arrays."""

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from cache.data.readers import Examples
from cache.runtime.arrays import pad_ragged
from cache.runtime.errors import UserError

ENCODE_CHUNK = 8192  # examples per tokenizer call: bounds memory on large corpora


@dataclass(frozen=True)
class Tokenized:
    """All examples' tokens concatenated; example i is `[offsets[i], offsets[i+1])`."""

    input_ids: np.ndarray  # (T,) int32
    token_type_ids: np.ndarray  # (T,) int8
    lengths: np.ndarray  # (n,) int32, special tokens included
    truncated: int
    """How many examples were cut at max_seq_len."""

    def unknown_rate(self, tokenizer) -> float:
        """The fraction of tokens, special tokens aside, that are the tokenizer's unknown token."""
        markers = [i for i in tokenizer.all_special_ids if i != tokenizer.unk_token_id]  # [CLS], [SEP], [PAD]
        text = ~np.isin(self.input_ids, markers)
        return float((self.input_ids[text] == tokenizer.unk_token_id).mean()) if text.any() else 0.0

    @cached_property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)])

    def padded(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Examples `rows` padded to their longest: input ids, token types (B, L) int64 and the mask
        (B, L) bool, True on real tokens; on the CPU."""
        lengths = self.lengths[rows]
        ids = torch.from_numpy(pad_ragged(self.input_ids, self.offsets[rows], lengths)).long()
        types = torch.from_numpy(pad_ragged(self.token_type_ids, self.offsets[rows], lengths)).long()
        return ids, types, torch.arange(ids.shape[1])[None] < torch.from_numpy(lengths)[:, None]


def tokenize(examples: Examples, tokenizer, max_seq_len: int) -> Tokenized:
    """Tokenise with [CLS]/[SEP] and token types; pairs truncate longest-first."""
    ids, types, lengths, truncated = [], [], [], 0
    for start in range(0, len(examples), ENCODE_CHUNK):
        stop = start + ENCODE_CHUNK
        pairs = examples.pairs[start:stop] if examples.pairs is not None else None
        full = tokenizer(examples.texts[start:stop], pairs, truncation=False, verbose=False,
                         return_attention_mask=False)
        cut = tokenizer(examples.texts[start:stop], pairs, truncation=True, max_length=max_seq_len,
                        return_attention_mask=False, return_token_type_ids=True)
        truncated += sum(len(a) != len(b) for a, b in zip(full["input_ids"], cut["input_ids"], strict=True))
        for seq, seq_types in zip(cut["input_ids"], cut["token_type_ids"], strict=True):
            ids.append(np.asarray(seq, dtype=np.int32))
            types.append(np.asarray(seq_types, dtype=np.int8))
            lengths.append(len(seq))
    return Tokenized(np.concatenate(ids), np.concatenate(types),
                     np.asarray(lengths, dtype=np.int32), truncated)


def check_unknown_tokens(tokens: Tokenized, tokenizer, max_unknown: float, where: str) -> None:
    """Refuse data that the tokenizer mostly cannot read: its vocabulary does not fit (another
    casing than it was trained with, another language), and targets of [UNK] teach nothing."""
    rate = tokens.unknown_rate(tokenizer)
    if rate > max_unknown:
        raise UserError(f"{where}: {rate:.1%} of its tokens are {tokenizer.unk_token} under the teacher's tokenizer "
                        f"(more than --max-unknown {max_unknown:g}); check that the tokenizer is the teacher's own "
                        f"(its casing: do_lower_case), or add --max-unknown {math.ceil(rate * 100) / 100:g} to "
                        "accept it")


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of the tokenizer's serialisation (vocab, normaliser, special tokens, templates).

    Truncation and padding are left out: they are per-call state that a tokenizer call leaves
    behind, not part of what the tokenizer is.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        blob = json.dumps(spec, sort_keys=True)
    else:  # a slow tokenizer: its vocabulary and casing decide the ids
        blob = repr((sorted(tokenizer.get_vocab().items()), getattr(tokenizer, "do_lower_case", None)))
    return hashlib.sha256(blob.encode()).hexdigest()
