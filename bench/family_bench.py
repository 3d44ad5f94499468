"""Teachers of every family: the dump's rate against that family's bare forward, and bytes per token.

For each family (`cache.data.families`), a randomly initialised model of BERT-base's shape (12 x
768, 12 heads, 3072; speed depends on shape, not on weights) with a classification head, over packed
corpus sequences of exactly L tokens (each file one document: no padding, so the bare forward's
batches and the dump's length-sorted ones compute the same). Each round runs, in this one process:
the bare forward with the family's default attention (PyTorch's fused kernel, outputs discarded,
after the same loading and tokenising the dump does; DeBERTa has only its own eager attention), then
the dump in `maps` (scores, which need the eager attention path; DeBERTa's taken at its softmax) and
in `qk` (queries and keys beside the fused kernel; not for DeBERTa, whose scores they do not give).
The table gives each dump's rate over the same round's bare forward (median of the rounds), and the
bytes per token of maps, qk and the smallest lossy choice (int8 hidden states, topk:4 probabilities,
embedding tables).

    python -m bench.family_bench                        # L=128, 96 sequences, 2 rounds, 2 threads
    python -m bench.family_bench --threads 2 --limit 96 --rounds 2

torch runs on --threads threads (pinned: its default of one per core collapses when another busy
process shares them). Writes bench/results/families.json.
"""

import platform
import statistics
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertTokenizer,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    ModernBertConfig,
    RobertaConfig,
)

from bench.common import REPO, save_result
from cache.data.checkpoints import default_teacher_path, quiet_transformers
from cache.data.corpus import Corpus
from cache.data.families import forward_inputs
from cache.data.tokenize import Tokenized
from cache.read.inspect import cache_summary
from cache.runtime.kinds import AttentionKind
from cache.teacher.dump import DumpConfig, dump_teacher
from tests.helpers import fairseq_tokenizer

CORPUS = REPO.parent / "shared" / "data" / "corpus"
BASE = {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072}
ENCODINGS = {"maps": {}, "qk": {"attention_encoding": "qk"},
             "int8 + topk:4 + tables": {"hidden_encoding": "int8", "attention_encoding": "topk:4",
                                        "attention": AttentionKind.PROBS, "embedding_output": "tables"}}


def base_shaped(family: str, folder: Path) -> Path:
    """A random classifier of `family` at BERT-base's shape, with a tokenizer of its kind."""
    vocab = (Path(default_teacher_path()) / "vocab.txt").read_text().split("\n")
    words = [w for w in vocab if w and not w.startswith(("[", "##"))]
    if family == "roberta":
        tokenizer = fairseq_tokenizer(words)
        config = RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
                               eos_token_id=2, type_vocab_size=1, **BASE)
    else:
        tokenizer = BertTokenizer(vocab=str(Path(default_teacher_path()) / "vocab.txt"))
        specials = {"pad_token_id": 0, "cls_token_id": 101, "sep_token_id": 102, "bos_token_id": 101,
                    "eos_token_id": 102}  # MiniLM's WordPiece ids
        config = {"bert": lambda: BertConfig(**BASE),
                  "modernbert": lambda: ModernBertConfig(vocab_size=len(tokenizer), **specials, **BASE),
                  "deberta": lambda: DebertaV2Config(  # deberta-v3-base's attention and embeddings
                      vocab_size=len(tokenizer), relative_attention=True, position_buckets=256,
                      max_relative_positions=-1, pos_att_type=["p2c", "c2p"], share_att_key=True,
                      position_biased_input=False, type_vocab_size=0, norm_rel_ebd="layer_norm", **BASE),
                  "electra": lambda: ElectraConfig(embedding_size=768, **BASE),
                  "distilbert": lambda: DistilBertConfig(dim=768, n_layers=12, n_heads=12, hidden_dim=3072)}[family]()
    config.num_labels = 2
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def bare_seconds(teacher: Path, limit: int, length: int, batch_size: int) -> float:
    """Load, pack and run the dump's batches with the family's default attention, outputs discarded."""
    from transformers import AutoTokenizer

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    input_ids, lengths = Corpus(CORPUS, "train", 0.0, limit, documents="file").pack(tokenizer, length)
    tokens = Tokenized(input_ids, np.zeros(len(input_ids), dtype=np.int8), lengths, truncated=0)
    model = AutoModelForSequenceClassification.from_pretrained(teacher).eval()
    with torch.inference_mode():
        for rows in np.array_split(np.arange(len(lengths)), -(-len(lengths) // batch_size)):
            ids, types, mask = tokens.padded(rows)
            model(**forward_inputs(model, ids, types, mask.long()), output_hidden_states=True)
    return time.perf_counter() - started


def _stored_per_token(cache: Path) -> float:
    """Bytes of stored targets per token (embedding tables, a fixed size, left out)."""
    per_token = cache_summary(cache)["sizes"]["bytes_per_token"]
    return per_token["hidden"] + per_token["attention"]


def dump_seconds(config: DumpConfig) -> float:
    started = time.perf_counter()
    dump_teacher(config, command="bench", progress=False)
    return time.perf_counter() - started


@click.command()
@click.option("--families", default="bert,roberta,electra,distilbert,modernbert,deberta", help="Comma-separated.")
@click.option("--limit", default=96, help="Packed corpus sequences per run.")
@click.option("--length", default=128, help="L: tokens per sequence.")
@click.option("--rounds", default=2, help="Rounds of bare forward and dumps; medians reported.")
@click.option("--threads", default=2, help="torch threads (pinned).")
def main(families, limit, length, rounds, threads):
    quiet_transformers()
    torch.set_num_threads(threads)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for family in families.split(","):
            teacher = base_shaped(family, Path(tmp) / family)
            config = DumpConfig(task="corpus", data=CORPUS, documents="file", out=Path(tmp) / "c",
                                teacher=str(teacher), limit=limit, max_seq_len=length, max_unknown=1.0)
            # queries and keys do not give a DeBERTa's scores: maps only
            ratios: dict[str, list[float]] = {"maps": []} if family == "deberta" else {"maps": [], "qk": []}
            bare = []
            for r in range(rounds):
                bare.append(bare_seconds(teacher, limit, length, config.batch_size))
                for name in ratios:
                    out = Path(tmp) / f"{family}-{name}-{r}.zarr"
                    seconds = dump_seconds(DumpConfig(**vars(config) | ENCODINGS[name] | {"out": out}))
                    ratios[name].append(bare[-1] / seconds)
            lossy = Path(tmp) / f"{family}-lossy.zarr"
            dump_seconds(DumpConfig(**vars(config) | ENCODINGS["int8 + topk:4 + tables"] | {"out": lossy}))
            per_token = {name: _stored_per_token(Path(tmp) / f"{family}-{name}-0.zarr") for name in ratios} | \
                {"int8 + topk:4 + tables": _stored_per_token(lossy)}
            rows[family] = {"bare_examples_per_s": limit / statistics.median(bare),
                            **{f"{name}_over_bare": statistics.median(r) for name, r in ratios.items()},
                            "ratios": ratios, "bytes_per_token": per_token}
            print(f"{family}: {rows[family]}")
    save_result("families", {"machine": f"{platform.node()} {platform.machine()}, torch threads {threads}",
                             "limit": limit, "length": length, "rounds": rounds, "families": rows})


if __name__ == "__main__":
    main()
