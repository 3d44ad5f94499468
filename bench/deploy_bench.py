"""Serving formats side by side: each classifier in PyTorch, ONNX Runtime fp32 and ONNX Runtime int8,
and a general student as a sentence-transformers embedder against its teacher.

Every classifier is exported (`export --format onnx`, with and without `--quantize int8`), then all
are scored and timed by `compare` in one process: SST-2 dev accuracy and retention against the first
model, size on disk, and latency per example at batch 1 and 32 over the first 200 dev sentences
(their own lengths, truncated at --max-seq-len), each the median of 3 timed passes after a warm-up.
The embedder (`export --format sentence-transformers`) is scored by `evaluate --embeddings` on the
corpus's held-out paragraphs, and its encoding throughput at batch 32 over SST-2 dev sentences is
timed against the teacher's, PyTorch and ONNX Runtime, in the same process.

    python -m bench.deploy_bench --model teacher=runs/demo/teacher --model student=runs/demo/student \\
        --embedder runs/recipe/general --threads 2

torch and ONNX Runtime run on --threads threads (pinned: torch's default of one per core collapses
when another busy process shares them). Writes bench/results/deploy.json.
"""

import platform
import statistics
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch

from bench.common import GLUE, REPO, save_result
from cache.data.checkpoints import default_teacher_path, quiet_transformers
from cache.data.readers import load_examples
from cache.data.served import disk_bytes, ort_session
from student.compare import compare_models, format_rows
from student.config import ExportConfig
from student.embedder import agreement_sentences, embedding_agreement
from student.export import export_model

CORPUS = REPO.parent / "shared" / "data" / "corpus"


def exported_classifiers(work: Path, models: dict[str, Path]) -> dict[str, Path]:
    """Each model, then its ONNX fp32 and int8 exports."""
    folders = {}
    for name, folder in models.items():
        folders[name] = folder
        for suffix, quantize in (("onnx", None), ("int8", "int8")):
            out = work / f"{name}-{suffix}"
            export_model(ExportConfig(model=folder, out=out, format="onnx", quantize=quantize), command="bench")
            folders[f"{name}-{suffix}"] = out
    return folders


def sentences_per_second(encode, sentences: list[str], repeats: int = 3) -> float:
    """Median sentences per second of `encode` over all `sentences`, after a warm-up batch."""
    encode(sentences[:32])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        encode(sentences)
        times.append(time.perf_counter() - started)
    return len(sentences) / statistics.median(times)


def onnx_encoder(folder: Path, tokenizer, batch_size: int = 32):
    """Mean-pooled vectors from an embedder's onnx/model.onnx (the Dense and Normalize after it are
    a (d' x d) product per sentence, left out of the timing)."""
    session = ort_session(folder / "onnx" / "model.onnx")
    names = {node.name for node in session.get_inputs()}

    def encode(sentences: list[str]) -> np.ndarray:
        order = np.argsort([-len(s) for s in sentences], kind="stable")  # by length, as sentence-transformers
        pooled = []
        for start in range(0, len(sentences), batch_size):
            batch = tokenizer([sentences[i] for i in order[start:start + batch_size]], padding=True,
                              truncation=True, max_length=128, return_tensors="np")
            states = session.run(None, {k: v.astype(np.int64) for k, v in batch.items() if k in names})[0]
            mask = batch["attention_mask"][..., None]
            pooled.append((states * mask).sum(1) / mask.sum(1))
        vectors = np.empty_like(np.concatenate(pooled))
        vectors[order] = np.concatenate(pooled)
        return vectors

    return encode


def embedder_figures(work: Path, general: Path, teacher: Path) -> dict:
    from sentence_transformers import SentenceTransformer

    figures: dict = {}
    for name, folder in (("student", general), ("teacher", teacher)):
        out = work / f"embedder-{name}"
        export_model(ExportConfig(model=folder, out=out, format="sentence-transformers", onnx=True,
                                  teacher=str(teacher)), command="bench")
        dev = load_examples("sst2", GLUE / "SST-2", "dev").texts
        model = SentenceTransformer(str(out), device="cpu")
        figures[name] = {
            "disk_mb": disk_bytes(out) / 1e6,
            "pytorch_sentences_per_s": sentences_per_second(lambda s, m=model: m.encode(s, batch_size=32), dev),
            "onnx_sentences_per_s": sentences_per_second(onnx_encoder(out, model.tokenizer), dev),
        }
    held_out = agreement_sentences("corpus", CORPUS, "holdout", 2000, 0.02, "file", SentenceTransformer(
        str(teacher), device="cpu").tokenizer)
    figures["agreement"] = vars(embedding_agreement(work / "embedder-student", teacher, held_out))
    return figures


def parse_models(ctx, param, values) -> dict[str, Path]:
    return {name: Path(folder) for name, _, folder in (value.partition("=") for value in values)}


@click.command()
@click.option("--model", "models", multiple=True, callback=parse_models, required=True,
              help="NAME=FOLDER of an SST-2 classifier; repeat; the first is the reference.")
@click.option("--embedder", type=click.Path(exists=True, path_type=Path), default=None,
              help="A general student (with its projections) of the packaged MiniLM, exported as an embedder.")
@click.option("--max-seq-len", default=64)
@click.option("--threads", default=2, help="torch and ONNX Runtime threads (pinned).")
def main(models, embedder, max_seq_len, threads):
    quiet_transformers()
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = compare_models(exported_classifiers(work, models), "sst2", GLUE / "SST-2", "dev", max_seq_len)
        print(format_rows(rows), flush=True)
        figures = {"classifiers": rows}
        if embedder is not None:
            figures["embedder"] = embedder_figures(work, embedder, Path(default_teacher_path()))
            print(figures["embedder"], flush=True)
    save_result("deploy", {"machine": f"{platform.node()} {platform.machine()}, threads {threads}", **figures})


if __name__ == "__main__":
    main()
