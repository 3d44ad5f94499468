"""Tokenisation into flat arrays, and a fingerprint that identifies the tokenizer alone."""

import numpy as np
from transformers import AutoTokenizer

from cache.data.readers import load_examples
from cache.data.tokenize import tokenize, tokenizer_fingerprint


def test_pairs_truncation_and_offsets(glue, tiny_teacher):
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    examples = load_examples("mrpc", glue / "MRPC", "train", limit=20)
    full = tokenize(examples, tokenizer, 512)
    cut = tokenize(examples, tokenizer, 32)
    assert full.truncated == 0 and cut.truncated == int((full.lengths > 32).sum()) > 0
    assert np.array_equal(cut.lengths, np.minimum(full.lengths, 32))
    one = tokenizer(examples.texts[3], examples.pairs[3])
    start, stop = full.offsets[3], full.offsets[4]
    assert full.input_ids[start:stop].tolist() == one["input_ids"]
    assert full.token_type_ids[start:stop].tolist() == one["token_type_ids"]


def test_fingerprint_ignores_call_state_but_not_vocab(glue, tiny_teacher, tiny_bare_teacher, tmp_path):
    from tests.helpers import save_tiny_teacher, vocabulary

    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    before = tokenizer_fingerprint(tokenizer)
    tokenize(load_examples("sst2", glue / "SST-2", "train", limit=5), tokenizer, 16)
    assert tokenizer_fingerprint(tokenizer) == before
    assert tokenizer_fingerprint(AutoTokenizer.from_pretrained(tiny_bare_teacher)) == before  # same vocab
    vocab = vocabulary()[:-1]
    other = save_tiny_teacher(tmp_path / "t", head=False, vocab=vocab)
    assert tokenizer_fingerprint(AutoTokenizer.from_pretrained(other)) != before
