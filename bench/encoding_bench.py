"""Target encodings: bytes per token, error against exact targets, and what decoding costs training.

    python -m bench.encoding_bench sizes     # bytes/token table (tokenises the data; no teacher runs)
    python -m bench.encoding_bench errors    # the real MiniLM dumped in every encoding, decoded, compared
    python -m bench.encoding_bench decode    # training throughput from each encoding against float16 maps

`sizes`: TinyBERT4's targets (the embeddings and the 4 layers its uniform map reads) for the
MiniLM-L6-H384 teacher and a BERT-base-shaped one (12 x 768, 12 heads), over the packed corpus
(L=128; a blank line ends a document, so paragraphs make many shorter sequences), sequences all
128 long (long documents), SST-2 (L=64) and MRPC (L=128), from the real token lengths: the bytes
every encoding stores per token (a test checks these sizes against the stored arrays), with layer
0 stored or from the embedding tables.

`errors`: MiniLM over packed corpus text (L=128) in every encoding, each decoded and compared with
exact float32 targets (queries and keys in float32 give both scores and probabilities), example by
example; also the on-disk size with and without zstd.

`decode`: the intermediate stage of a TinyBERT4-shaped student for a fixed number of steps from
each cache of `errors`' corpus text (and one with layer 0 from the embedding tables), in one
process, alternating, reporting examples/s against float16 maps.

Writes bench/results/encoding-<part>.json.
"""

import itertools
import json
import platform
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch
from transformers import AutoTokenizer

from bench.common import GLUE, REPO, save_result
from cache import open_cache
from cache.data.checkpoints import default_teacher_path, quiet_transformers
from cache.data.corpus import Corpus
from cache.data.readers import load_examples
from cache.data.tokenize import tokenize
from cache.format.encoding import attention_encoding, vector_encoding
from cache.format.layout import Geometry
from cache.read.inspect import cache_summary
from cache.runtime.kinds import AttentionKind
from cache.runtime.layer_map import uniform_layer_map
from cache.teacher.dump import DumpConfig, dump_teacher
from student.trainer import TrainConfig, train_student

CORPUS = REPO.parent / "shared" / "data" / "corpus"
TEACHERS = {"MiniLM-L6-H384": (6, 384, 12), "BERT-base": (12, 768, 12)}  # layers, width, heads
HIDDEN = ("float16", "int8", "fp8")
ATTENTION = ("maps", "uint8", "qk", "qk:int8", "qk:fp8", "topk:8", "topk:4", "qkv")
EMBEDDING = ("stored", "tables")
"""Layer 0 per token, or from the teacher's embedding tables (a fixed size, left out of the per-token figure)."""
STUDENT = "layers=4,hidden=312,ffn=1200,heads=12"


def tinybert4_geometry(teacher: str, hidden: str, attention: str, max_seq_len: int, tables: bool) -> Geometry:
    layers, width, heads = TEACHERS[teacher]
    mapped = tuple(uniform_layer_map(4, layers))
    return Geometry(width, heads, (0, *mapped), mapped, vector_encoding(hidden), attention_encoding(attention),
                    max_seq_len, embedding_tables=tables)


def data_lengths(limit: int) -> dict[str, tuple[np.ndarray, int]]:
    """Token lengths (MiniLM's uncased WordPiece, BERT-base's vocabulary) of each data set, and its L."""
    tokenizer = AutoTokenizer.from_pretrained(default_teacher_path())
    _, corpus = Corpus(CORPUS, "train", 0.0, limit).pack(tokenizer, 128)
    out = {"corpus (packed, L=128)": (corpus, 128),
           "full L=128 (long documents, as the paper's corpus)": (np.full(limit, 128), 128)}
    for name, folder, length in (("SST-2 (L=64)", "SST-2", 64), ("MRPC (L=128)", "MRPC", 128)):
        task = folder.lower().replace("-", "")
        out[name] = (tokenize(load_examples(task, GLUE / folder, "train"), tokenizer, length).lengths, length)
    return out


def sizes(limit: int) -> dict:
    table = {}
    for data, (lengths, length) in data_lengths(limit).items():
        tokens = int(lengths.sum())
        for teacher, hidden, attention, embedding in itertools.product(TEACHERS, HIDDEN, ATTENTION, EMBEDDING):
            g = tinybert4_geometry(teacher, hidden, attention, length, embedding == "tables")
            table[f"{data} | {teacher} | {hidden} | {attention} | {embedding}"] = {
                "hidden": float(g.example_bytes(lengths, "hidden").sum() / tokens),
                "attention": float(g.example_bytes(lengths, "attention").sum() / tokens)}
    return table


@dataclass
class ErrorSums:
    """Running sums over examples of |decoded - exact| and of both squared, per kind of target."""

    squared_error: float = 0.0
    squared: float = 0.0
    max_abs: float = 0.0
    abs_error: float = 0.0
    values: int = 0
    lost_mass: float = 0.0
    rows: int = 0

    def add(self, decoded: torch.Tensor, exact: torch.Tensor) -> None:
        error = (decoded - exact).abs()
        self.squared_error += float(error.square().sum())
        self.squared += float(exact.square().sum())
        self.max_abs = max(self.max_abs, float(error.max()))
        self.abs_error += float(error.sum())
        self.values += error.numel()

    def summary(self) -> dict:
        return {"relative_rms": (self.squared_error / max(self.squared, 1e-30)) ** 0.5, "max_abs": self.max_abs,
                "mean_abs": self.abs_error / max(self.values, 1), "values": self.values,
                **({"mean_lost_mass": self.lost_mass / self.rows} if self.rows else {})}


def compare(exact: Path, encoded: Path, examples: int) -> dict:
    """Errors of `encoded`'s decoded hidden states, probabilities and (where it has them) scores."""
    reference, cache = open_cache(exact), open_cache(encoded)
    sums = {"hidden": ErrorSums(), "probs": ErrorSums()}
    has_scores = cache.manifest.geometry.decodes_to == AttentionKind.SCORES
    if has_scores:
        sums["scores"] = ErrorSums()
    for i in range(min(examples, len(cache))):
        want, got = reference[i], cache[i]
        for layer, hidden in got["hidden"].items():
            sums["hidden"].add(hidden, want["hidden"][layer])
        for layer, attention in got["attention"].items():
            scores = want["attention"][layer]
            probs = scores.softmax(-1)
            if has_scores:
                sums["scores"].add(attention, scores)
                attention = attention.softmax(-1)
            sums["probs"].add(attention, probs)
            sums["probs"].lost_mass += float((1 - attention.sum(-1)).sum())
            sums["probs"].rows += attention.shape[0] * attention.shape[1]
    return {kind: s.summary() for kind, s in sums.items()}


def corpus_dump(out: Path, hidden: str, attention: str, limit: int, compression: str = "none",
                embedding: str = "stored") -> Path:
    dump_teacher(DumpConfig(task="corpus", data=CORPUS, split="train", out=out, layers=(0, *uniform_layer_map(4, 6)),
                            attention="probs", hidden_encoding=hidden, attention_encoding=attention,
                            embedding_output=embedding, compression=compression, limit=limit),
                 command="bench", progress=False)
    return out


COMBINATIONS = [("float16", "maps"), ("float16", "qk"), ("float16", "uint8"), ("int8", "maps"), ("fp8", "maps"),
                ("float16", "qk:int8"), ("float16", "qk:fp8"), ("float16", "topk:8"), ("float16", "topk:4"),
                ("int8", "topk:8"), ("int8", "qk:int8")]


def errors(work: Path, limit: int, examples: int) -> dict:
    exact = corpus_dump(work / "exact", "float32", "qk:float32", limit)
    out = {}
    for hidden, attention in COMBINATIONS:
        name = f"{hidden} | {attention}"
        plain = corpus_dump(work / name.replace(" | ", "-").replace(":", ""), hidden, attention, limit)
        packed = corpus_dump(work / (plain.name + "-zstd"), hidden, attention, limit, "zstd")
        tokens = open_cache(plain).lengths.sum()
        out[name] = {"bytes_per_token": cache_summary(plain)["sizes"]["bytes_per_token"],
                     "zstd_target_bytes_per_token": cache_summary(packed)["sizes"]["target_bytes"] / tokens,
                     "target_bytes_per_token": cache_summary(plain)["sizes"]["target_bytes"] / tokens,
                     "error": compare(exact, plain, examples)}
        print(name, {k: round(v["relative_rms"], 5) for k, v in out[name]["error"].items()}, flush=True)
    return out


DECODED = [("float16", "maps", "stored"), ("float16", "qk", "stored"), ("float16", "uint8", "stored"),
           ("int8", "maps", "stored"), ("float16", "qk:int8", "stored"), ("float16", "topk:8", "stored"),
           ("int8", "topk:8", "stored"), ("int8", "topk:4", "tables")]


def decode_cost(work: Path, limit: int, steps: int, rounds: int) -> dict:
    caches = {f"{h} | {a}" + (" | tables" if e == "tables" else ""):
              corpus_dump(work / f"{h}-{a}-{e}".replace(":", ""), h, a, limit, embedding=e) for h, a, e in DECODED}
    rates: dict[str, list[float]] = {name: [] for name in caches}
    for r in range(rounds):
        for name, cache in caches.items():
            out = work / f"train-{r}-{cache.name}"
            train_student(TrainConfig(cache=cache, out=out, student=STUDENT, stage="general", max_steps=steps,
                                      epochs_intermediate=100, log_every=steps, save_every=10**6),
                          command="bench", progress=False)
            rates[name].append([e for e in _entries(out) if "examples_per_s" in e][-1]["examples_per_s"])
    base = statistics.median(rates["float16 | maps"])
    return {name: {"examples_per_s": statistics.median(r), "vs_float16_maps": statistics.median(r) / base,
                   "rounds": r} for name, r in rates.items()}


def _entries(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@click.command()
@click.argument("part", type=click.Choice(["sizes", "errors", "decode"]))
@click.option("--limit", default=300, help="Packed corpus sequences (L=128) to dump (errors, decode); "
              "sizes: sequences to pack (they are all 128 long but the last).")
@click.option("--examples", default=300, help="errors: examples compared.")
@click.option("--steps", default=30, help="decode: training steps per run.")
@click.option("--rounds", default=2, help="decode: alternating rounds (medians reported).")
def main(part, limit, examples, steps, rounds):
    quiet_transformers()
    machine = f"{platform.node()} {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}"
    with tempfile.TemporaryDirectory() as tmp:
        if part == "sizes":
            result = sizes(limit)
        elif part == "errors":
            result = errors(Path(tmp), limit, examples)
        else:
            result = decode_cost(Path(tmp), limit, steps, rounds)
    save_result(f"encoding-{part}", {"machine": machine, "limit": limit, part: result})


if __name__ == "__main__":
    main()
