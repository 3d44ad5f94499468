"""What several test modules share: tiny teachers saved as real checkpoints, a dump, a training
configuration, reading arrays back, and the command line with its one-line errors."""

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizer

from cache import open_cache
from cache.format.encoding import Factored
from cache.format.manifest import CHECKSUM, content_checksum, read_manifest
from cache.format.store import EMBEDDINGS, INDEX, block_unit, open_store
from cache.teacher.dump import DumpConfig, dump_teacher
from cli import cli
from student.trainer import TrainConfig
from tests.reference import load_reference, reference_targets

REPO = Path(__file__).resolve().parents[1]
GLUE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glue"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def vocabulary() -> list[str]:
    """Words of the real SST-2 and MRPC sentences the tests read, so tiny teachers see real token
    ids (and few unknown words: a dump refuses data that is mostly [UNK])."""
    return list(_words())


@functools.cache
def _words() -> tuple[str, ...]:
    words = set()
    for path, rows in [(GLUE / "SST-2" / "train.tsv", 320), (GLUE / "MRPC" / "train.tsv", 100),
                       (GLUE / "SST-2" / "dev.tsv", 50)]:
        for line in path.read_text(encoding="utf-8-sig").splitlines()[1:rows]:
            words.update(re.findall(r"\w+|[^\w\s]", line.lower()))
    return (*SPECIALS, *sorted(words))


def save_tiny_teacher(path: Path, *, head: bool, seed: int = 0, vocab: list[str] | None = None,
                      layers: int = 3) -> Path:
    """A random BERT (3 layers, 4 heads, d=32) with a WordPiece tokenizer, saved like a real checkpoint."""
    vocab = vocab or vocabulary()
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, num_labels=2)
    model = BertForSequenceClassification(config) if head else BertModel(config, add_pooling_layer=False)
    model.save_pretrained(path)
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(path)
    return path


TOLERANCE = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 1e-5, "uint8": 1 / 510 + 1e-4}
"""uint8 probabilities are rounded to the nearest 1/255: at most half a step off."""
FACTORED_TOLERANCE = {"float16": 1e-2, "bfloat16": 8e-2, "float32": 1e-5}
"""Scores multiplied out of rounded queries and keys: each product adds both roundings."""


def dump(teacher, glue, out, **overrides):
    """A dump as the library runs it. Unknown tokens are not refused here: the tiny teachers' words
    are those of some GLUE rows, and the tests' own sentences use others (tests of the refusal go
    through the command line)."""
    options = {"task": "sst2", "data": glue / "SST-2", "split": "train", "out": out, "teacher": str(teacher),
               "limit": 24, "block_mb": 0.01, "batch_size": 5, "max_unknown": 1.0} | overrides
    return dump_teacher(DumpConfig(**options), command="test", progress=False)


def assert_matches_reference(cache_path, teacher):
    """Every exactly stored target (float hidden states; float or uint8 maps, or float queries and
    keys) against a fresh forward, to the rounding of its stored type."""
    cache, model = open_cache(cache_path), load_reference(teacher)
    geometry = cache.manifest.geometry
    kind, tol = geometry.decodes_to, TOLERANCE[str(geometry.hidden)]
    encoding = geometry.attention
    attention_tol = FACTORED_TOLERANCE[str(encoding.vectors)] if isinstance(encoding, Factored) \
        else TOLERANCE.get(getattr(encoding, "form", ""))  # no attention: no tolerance needed
    assert len(cache) == cache.manifest.data.examples > 0
    for i in range(len(cache)):
        item = cache[i]
        ref = reference_targets(model, item["input_ids"], item["token_type_ids"])
        for layer, hidden in item["hidden"].items():
            torch.testing.assert_close(hidden.float(), ref["hidden"][layer], rtol=tol, atol=tol)
        for layer, attention in item["attention"].items():
            torch.testing.assert_close(attention.float(), ref[kind][layer - 1], rtol=attention_tol, atol=attention_tol)
        if ref["logits"] is not None:
            torch.testing.assert_close(item["logits"], ref["logits"], rtol=1e-4, atol=1e-4)
        else:
            assert "logits" not in item


def stored_arrays(path: Path) -> dict:
    """Every array of every unit, read straight from the store."""
    manifest = read_manifest(path)
    store = open_store(path, manifest.storage)
    units = [INDEX] + [block_unit(k) for k in range(manifest.num_blocks)]
    units += [EMBEDDINGS] if manifest.geometry.embedding_tables else []
    return {(unit, name): store.read(unit, name) for unit in units for name in store.array_names(unit)}


def assert_same_arrays(a: Path, b: Path) -> None:
    left, right = stored_arrays(a), stored_arrays(b)
    assert left.keys() == right.keys()
    for key in left:
        assert left[key].dtype == right[key].dtype and np.array_equal(left[key], right[key]), key


STUDENT = "layers=3,hidden=32,ffn=64,heads=4"


def train_config(cache, out, **overrides):
    options = {"cache": cache, "out": out, "student": STUDENT, "epochs_intermediate": 1, "epochs_prediction": 1,
               "batch_size": 8, "workers": 0, "save_every": 3, "log_every": 1, "window_blocks": 2} | overrides
    return TrainConfig(**options)


def logged(out, key="loss"):
    entries = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [entry[key] for entry in entries if key in entry]


def torchrun(*args, ranks: int = 2, env: dict | None = None) -> subprocess.CompletedProcess:
    """`cli.py ARGS` as a torchrun job of `ranks` CPU processes on this machine."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               str(REPO / "cli.py"), *map(str, args)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=os.environ | (env or {}),
                          timeout=600, check=False)


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_refused(result, expected, code=1):
    """One `Error:` line naming `expected`, no traceback; exit status 2 (a malformed option) comes
    after click's usage lines."""
    assert result.exit_code == code and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and expected in errors[0], result.output
    assert code == 2 or len(result.output.strip().splitlines()) == 1, result.output


def assert_refused_after_work(result, expected):
    """As `assert_refused`, for a mistake found once work has started: progress lines may come
    first, but the error is the last line, alone on it."""
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert errors == lines[-1:] and expected in errors[0], result.output


def rewrite_manifest_json(cache: Path, **changes) -> None:
    """A manifest as another version of this tool would write it: `changes` applied to the JSON,
    checksum recomputed."""
    path = cache / "manifest.json"
    content = json.loads(path.read_text()) | changes
    path.write_text(json.dumps(content | {CHECKSUM: content_checksum(content)}))


FAIRSEQ_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
"""RoBERTa's special tokens, at the ids its configs expect (padding 1)."""


def fairseq_tokenizer(words: list[str], mark: str = ""):
    """A RoBERTa-style tokenizer (<s> A </s></s> B </s>, padding id 1) over whole words; with
    `mark`, its entries carry the mark of a word-beginning piece as byte-level BPE ("Ġ") or
    SentencePiece ("▁") vocabularies do."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate([*FAIRSEQ_SPECIALS, *(mark + w for w in words)])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Metaspace(replacement=mark, prepend_scheme="always")]) \
        if mark else pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")
