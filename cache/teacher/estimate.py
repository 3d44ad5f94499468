"""`dump-teacher --estimate`: what a dump would store, from the data's tokens alone.

The teacher does not run and nothing is written. The data is read and tokenised as the dump reads
it, the teacher's config (not its weights: the model is built on the meta device) gives the shapes,
and every stored array's size follows from the lengths (`Geometry.example_bytes`, the block plan),
so the figures are those of the cache the same command writes, but for its manifest (a few kB)
and chunk padding. Beside what the command asks for, the other attention encodings and embedding
outputs are sized, and marked where `auto` would take them: a user planning a large corpus sees
what each costs before paying for a single forward pass.
"""

import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from cache.data.checkpoints import default_teacher_path, has_classifier, load_config, load_tokenizer
from cache.data.families import attention_windows, family_of
from cache.data.readers import Examples
from cache.data.tokenize import check_unknown_tokens
from cache.format.embeddings import EmbeddingTables
from cache.format.encoding import AUTO, STORED, TABLES
from cache.format.entries import ATTENTION, HIDDEN
from cache.format.layout import Geometry, plan_blocks
from cache.format.manifest import TeacherRecord
from cache.runtime.kinds import AttentionKind
from cache.teacher.config import DumpConfig
from cache.teacher.dump import load_source, stored_geometry, tokenize_source


@dataclass(frozen=True)
class Choice:
    """One way the dump could store the targets, and what it would take."""

    hidden_encoding: str
    attention_encoding: str
    embedding_output: str
    asked: bool
    """What this command stores (its `auto` options resolved as the dump resolves them)."""
    auto: bool
    """What `--attention-encoding auto --embedding-output auto` would store."""
    hidden_bytes_per_token: float
    attention_bytes_per_token: float
    total_bytes: int
    """The whole cache: targets, tokens, labels and logits, index, embedding tables, tokenizer."""


@dataclass(frozen=True)
class Estimate:
    examples: int
    tokens: int
    truncated: int
    max_seq_len: int
    lengths: dict[str, float]
    """min, median, mean, 90th percentile, max, and the share of sequences exactly --max-seq-len long."""
    choices: tuple[Choice, ...]

    def to_json(self) -> dict:
        return asdict(self)


def estimate_dump(config: DumpConfig) -> Estimate:
    """Size the dump `config` describes, for each choice its `auto` options leave open."""
    path = config.teacher or default_teacher_path()
    model_config = load_config(path, "--teacher")
    tokenizer = load_tokenizer(path, "--teacher", model_config)
    family = family_of(model_config, f"--teacher: {path}")
    source = load_source(config)
    tokens = tokenize_source(source, tokenizer, config.max_seq_len, family.segments(model_config))
    check_unknown_tokens(tokens, tokenizer, config.max_unknown, str(source.path))
    labels = source.labels if isinstance(source, Examples) else None
    head = isinstance(source, Examples) and has_classifier(model_config)
    teacher = TeacherRecord(path=str(path), architecture="", config={}, weights_sha256="", family=family.name,
                            num_layers=model_config.num_hidden_layers, num_heads=model_config.num_attention_heads,
                            hidden_size=model_config.hidden_size,
                            num_labels=(model_config.num_labels or 0) if head else 0,
                            windows=attention_windows(model_config))
    tables = _tables_bytes(model_config, family.position_offset(model_config))
    lengths = tokens.lengths
    per_example = (teacher.num_labels * 4 + (labels.itemsize if labels is not None else 0)
                   + lengths.itemsize + 8)  # logits, labels, the index's length and sequence hash
    fixed = _tokenizer_bytes(tokenizer) + len(lengths) * per_example \
        + len(tokens.input_ids) * (tokens.input_ids.itemsize + tokens.token_type_ids.itemsize)
    asked = _key(stored_geometry(config, teacher, lengths, tables))
    auto = _key(stored_geometry(replace(config, attention_encoding=AUTO, embedding_output=AUTO), teacher, lengths,
                                tables))
    choices: dict[tuple[str, str, str], Choice] = {}
    for option in _alternatives(config, family.own_attention, tables is not None):
        geometry = stored_geometry(option, teacher, lengths, tables)
        if _key(geometry) in choices:
            continue
        blocks = len(plan_blocks(lengths, geometry, int(config.block_mb * 2**20)))
        total = int(geometry.example_bytes(lengths).sum()) + fixed + 8 * blocks \
            + (tables or 0) * geometry.embedding_tables
        hidden, attention = (float(geometry.example_bytes(lengths, kind).sum()) / lengths.sum()
                             for kind in (HIDDEN, ATTENTION))
        choices[_key(geometry)] = Choice(*_key(geometry), _key(geometry) == asked, _key(geometry) == auto,
                                         hidden, attention, total)
    return Estimate(len(lengths), int(lengths.sum()), tokens.truncated, config.max_seq_len, _summary(lengths, config),
                    tuple(choices.values()))


ATTENTION_CHOICES = ("maps", "uint8", "qk", "qkv", "topk:4")
"""The attention encodings sized beside the one asked for (`topk` as probabilities, as it stores them)."""


def _alternatives(config: DumpConfig, own_attention: bool, tables: bool) -> list[DumpConfig]:
    """The command's own options first, then each other attention encoding, then the other
    embedding output (where the tables give layer 0)."""
    attention = [replace(config, attention_encoding=name, attention=AttentionKind.PROBS if name.startswith("topk")
                         else config.attention)
                 for name in ATTENTION_CHOICES if not (own_attention and name.startswith("qk"))]
    embedding = [replace(config, embedding_output=other) for other in (STORED, TABLES)
                 if tables and other != config.embedding_output]
    return [config, replace(config, attention_encoding=AUTO, embedding_output=AUTO), *attention, *embedding]


def _key(geometry: Geometry) -> tuple[str, str, str]:
    return str(geometry.hidden), str(geometry.attention), TABLES if geometry.embedding_tables else STORED


def _tables_bytes(model_config, first_position: int) -> int | None:
    """The embedding tables' bytes, from a model built on the meta device (no weights read)."""
    from transformers import AutoModel

    with torch.device("meta"):
        model = AutoModel.from_config(model_config)
    tables = EmbeddingTables.of(model, first_position)
    return tables.nbytes if tables is not None else None


def _tokenizer_bytes(tokenizer) -> int:
    """What the cache's copy of the tokenizer takes: it is saved, and its files measured."""
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())


def _summary(lengths: np.ndarray, config: DumpConfig) -> dict[str, float]:
    return {"min": int(lengths.min()), "median": float(np.median(lengths)), "mean": float(lengths.mean()),
            "p90": float(np.percentile(lengths, 90)), "max": int(lengths.max()),
            "at_max_seq_len": float((lengths == config.max_seq_len).mean())}


def format_estimate(estimate: Estimate) -> str:
    """The estimate for people: the data's tokens, then one row per choice."""
    n = estimate.lengths
    rows = [f"examples  {estimate.examples:,} ({estimate.truncated:,} truncated at {estimate.max_seq_len} tokens), "
            f"{estimate.tokens:,} tokens",
            f"lengths   min {n['min']:.0f}, median {n['median']:.0f}, mean {n['mean']:.1f}, 90% at most "
            f"{n['p90']:.0f}, max {n['max']:.0f}; {n['at_max_seq_len']:.1%} at --max-seq-len",
            "",
            f"   {'hidden':<9} {'attention':<14} {'layer 0':<8} {'hidden B/token':>15} {'attention B/token':>18} "
            f"{'total':>12}"]
    for c in estimate.choices:
        mark = ("*" if c.asked else " ") + ("a" if c.auto else " ")
        rows.append(f"{mark} {c.hidden_encoding:<9} {c.attention_encoding:<14} {c.embedding_output:<8} "
                    f"{c.hidden_bytes_per_token:>15,.0f} {c.attention_bytes_per_token:>18,.0f} "
                    f"{_size(c.total_bytes):>12}")
    rows.append("* what this command stores; a: what auto would; totals hold the tokens, index, embedding tables "
                "and tokenizer")
    return "\n".join(rows)


def _size(nbytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes} B"
