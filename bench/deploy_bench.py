"""Serving formats side by side: each classifier in PyTorch, ONNX Runtime fp32 and ONNX Runtime int8,
and a general student as a sentence-transformers embedder against its teacher.

Every classifier is exported (`export --format onnx`, with and without `--quantize int8`), then all
are scored and timed by `compare` in one process: SST-2 dev accuracy and retention against the first
model, size on disk, and latency per example at batch 1 and 32 over the first 200 dev sentences
(their own lengths, truncated at --max-seq-len), each the median of 3 timed passes after a warm-up.
The embedder and its teacher (`export --format sentence-transformers --onnx`) are compared by
`compare --embeddings` over SST-2 dev sentences (sentences per second at batch 32, PyTorch and ONNX
Runtime), and the embedder is scored by `evaluate --embeddings` on the corpus's held-out paragraphs.

    python -m bench.deploy_bench --model teacher=runs/demo/teacher --model student=runs/demo/student \\
        --embedder runs/recipe/general --threads 2

torch and ONNX Runtime run on --threads threads (pinned: torch's default of one per core collapses
when another busy process shares them). Writes bench/results/deploy.json.
"""

import platform
import tempfile
from pathlib import Path

import click
import torch

from bench.common import GLUE, REPO, save_result
from cache.data.checkpoints import default_teacher_path, load_tokenizer, quiet_transformers
from cache.data.readers import load_examples
from student.compare import compare_embedders, compare_models, format_embedder_rows, format_rows
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


def embedder_figures(work: Path, general: Path, teacher: Path) -> dict:
    """The teacher and the student as sentence-transformers folders with their ONNX encoders, side by
    side (`compare --embeddings`) over SST-2 dev sentences, and the student's agreement over the
    corpus's held-out paragraphs."""
    folders = {}
    for name, folder in (("teacher", teacher), ("student", general)):
        folders[name] = work / f"embedder-{name}"
        export_model(ExportConfig(model=folder, out=folders[name], format="sentence-transformers", onnx=True,
                                  teacher=str(teacher)), command="bench")
    rows = compare_embedders(folders, load_examples("sst2", GLUE / "SST-2", "dev").texts)
    print(format_embedder_rows(rows), flush=True)
    tokenizer = load_tokenizer(teacher, "--embedder")
    held_out = agreement_sentences("corpus", CORPUS, "holdout", 2000, 0.02, "file", tokenizer)
    return {"models": rows, "agreement": vars(embedding_agreement(folders["student"], teacher, held_out))}


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
