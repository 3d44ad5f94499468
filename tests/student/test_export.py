"""export: ONNX graphs (int8 too) run by ONNX Runtime give PyTorch's outputs; a sentence-transformers
folder embeds as the student, W_h and the teacher's normalisation computed by hand; evaluate and
compare take exports; bad input is refused in one line and overwrites nothing."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification

from cache.data.checkpoints import default_teacher_path
from cache.data.evaluate import evaluate_saved
from cache.data.served import disk_bytes
from student.compare import compare_models
from student.config import EXPORT_RECORD, ExportConfig
from student.embedder import OnnxEmbedder, embedding_agreement
from student.export import export_model
from student.model import Projections
from tests.helpers import GLUE, assert_refused, run, save_tiny_teacher


def dev_sentences(count: int = 24) -> list[str]:
    """Real SST-2 dev sentences, their own lengths."""
    return [line.split("\t")[0] for line in (GLUE / "SST-2" / "dev.tsv").read_text().splitlines()[1:count + 1]]


def export(model, out, fmt="onnx", **options):
    return export_model(ExportConfig(model=model, out=out, format=fmt, **options), command="test")


def onnx_outputs(graph, tokenizer, sentences) -> tuple[np.ndarray, dict]:
    batch = tokenizer(sentences, padding=True, return_tensors="np")
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    names = {node.name for node in session.get_inputs()}
    return session.run(None, {k: v.astype(np.int64) for k, v in batch.items() if k in names})[0], batch


@pytest.fixture(scope="module")
def exports(tmp_path_factory, tiny_teacher):
    """The tiny classifier exported in fp32 and in int8."""
    root = tmp_path_factory.mktemp("exports")
    export(tiny_teacher, root / "fp32")
    export(tiny_teacher, root / "int8", quantize="int8")
    return root / "fp32", root / "int8"


def test_onnx_classifier_gives_pytorch_logits_on_real_sentences(exports, tiny_teacher):
    fp32, _ = exports
    tokenizer = AutoTokenizer.from_pretrained(fp32)
    found, batch = onnx_outputs(fp32 / "model.onnx", tokenizer, dev_sentences())
    with torch.no_grad():
        expected = BertForSequenceClassification.from_pretrained(tiny_teacher).eval()(
            **{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    assert found.shape == expected.shape and np.abs(found - expected).max() < 1e-4
    record = json.loads((fp32 / EXPORT_RECORD).read_text())
    assert record["format"] == "onnx" and record["command"] == "test"
    assert [c["graph"] for c in record["checks"]] == ["model.onnx"] and record["checks"][0]["max_difference"] < 1e-4
    assert sorted(p.name for p in fp32.glob("*.onnx")) == ["model.onnx"]


def test_int8_export_serves_one_smaller_quantised_graph(exports, tiny_teacher):
    fp32, int8 = exports
    assert sorted(p.name for p in int8.glob("*.onnx")) == ["model_quantized.onnx"]
    assert disk_bytes(int8) < disk_bytes(fp32)
    found, _ = onnx_outputs(int8 / "model_quantized.onnx", AutoTokenizer.from_pretrained(int8), dev_sentences())
    assert found.shape == (24, 2) and np.isfinite(found).all()
    checks = json.loads((int8 / EXPORT_RECORD).read_text())["checks"]
    assert [c["graph"] for c in checks] == ["model.onnx", "model_quantized.onnx"]
    assert 0 <= checks[1]["agreement"] <= 1 and checks[1]["measure"] == "same class"


def test_evaluate_and_compare_take_exports(exports, tiny_teacher, small_sst2):
    fp32, int8 = exports
    pytorch = evaluate_saved(tiny_teacher, "sst2", small_sst2, "dev", 64)
    onnx = evaluate_saved(fp32, "sst2", small_sst2, "dev", 64)
    assert (pytorch["format"], onnx["format"]) == ("pytorch", "onnx")
    assert onnx["accuracy"] == pytorch["accuracy"]
    rows = compare_models({"pytorch": tiny_teacher, "onnx": fp32, "int8": int8}, "sst2", small_sst2, "dev", 64,
                          latency_examples=8, progress=False)
    assert [r["format"] for r in rows] == ["pytorch", "onnx", "onnx-int8"]
    assert [r["disk_mb"] for r in rows] == [(tiny_teacher / "model.safetensors").stat().st_size / 1e6,
                                            (fp32 / "model.onnx").stat().st_size / 1e6,
                                            (int8 / "model_quantized.onnx").stat().st_size / 1e6]
    assert rows[1]["accuracy"] == pytorch["accuracy"] and rows[1]["retention"] == 1.0
    assert rows[1]["parameters"] == rows[0]["parameters"]  # every weight is an initializer of the graph
    assert all(r["latency_ms"] > 0 and r["latency_ms_batch32"] > 0 and r["threads"] >= 1 for r in rows)


@pytest.fixture(scope="module")
def embedding_student(tmp_path_factory):
    """A bare student of width 32 with projections to the MiniLM's 384 (random, saved as training saves them)."""
    folder = save_tiny_teacher(tmp_path_factory.mktemp("embedding_student"), head=False, seed=3)
    torch.manual_seed(4)
    Projections(32, 384, 3).save(folder)
    return folder


def test_sentence_transformers_export_embeds_as_computed_by_hand(tmp_path, embedding_student):
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "embedder"
    export(embedding_student, out, "sentence-transformers", onnx=True, teacher=str(default_teacher_path()))
    sentences = dev_sentences()
    vectors = SentenceTransformer(str(out), device="cpu").encode(sentences)
    tokenizer = AutoTokenizer.from_pretrained(embedding_student)
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = AutoModel.from_pretrained(embedding_student)(**batch).last_hidden_state.numpy()
    mask = batch["attention_mask"].numpy()[..., None]
    pooled = (states * mask).sum(1) / mask.sum(1)
    w_h = torch.load(embedding_student / "projections.pt")["state"]  # layer 3 of "separate": W_h, maps.1
    projected = pooled @ w_h["maps.1.weight"].numpy().T + w_h["maps.1.bias"].numpy()
    expected = projected / np.linalg.norm(projected, axis=1, keepdims=True)  # the MiniLM normalises
    assert vectors.shape == (24, 384) and np.abs(vectors - expected).max() < 1e-5
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((out / "modules.json").read_text())]
    assert modules == ["Transformer", "Pooling", "Dense", "Normalize"]
    found, _ = onnx_outputs(out / "onnx" / "model.onnx", tokenizer, sentences)
    real = mask[..., 0].astype(bool)
    assert np.abs(found[real] - states[real]).max() < 1e-4


def test_sentence_transformers_export_without_a_teacher_says_so(tmp_path, embedding_student):
    report = export(embedding_student, tmp_path / "plain", "sentence-transformers")
    assert report.notes == ("no teacher found (give --teacher): mean pooling, not normalised",)
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((tmp_path / "plain" / "modules.json").read_text())]
    assert modules == ["Transformer", "Pooling", "Dense"]


def test_export_refusals_overwrite_nothing(tmp_path, tiny_teacher, exports):
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    assert_refused(run("export", "--model", not_a_model, "--out", tmp_path / "x", "--format", "onnx"), "holds no model")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    assert_refused(run("export", "--model", tiny_teacher, "--out", occupied, "--format", "onnx"),
                   "already holds other files")
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    assert_refused(run("export", "--model", tiny_teacher, "--out", tmp_path / "y", "--format", "sentence-transformers",
                       "--quantize", "int8"), "add --onnx")
    assert not (tmp_path / "y").exists() and not (tmp_path / "x").exists()
    earlier = tmp_path / "earlier"
    shutil.copytree(exports[1], earlier)  # an int8 export, replaced whole by an fp32 one
    result = run("export", "--model", tiny_teacher, "--out", earlier, "--format", "onnx")
    assert result.exit_code == 0, result.output
    assert "model.onnx: max |difference| from PyTorch" in result.output
    assert sorted(p.name for p in earlier.glob("*.onnx")) == ["model.onnx"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


@pytest.mark.slow
def test_real_minilm_classifier_and_embedder_exports(tmp_path):
    """A classifier on the packaged MiniLM (its head untrained) in fp32 and int8, and the MiniLM
    itself as an embedder: its vectors are sentence-transformers' own of the teacher."""
    from sentence_transformers import SentenceTransformer

    teacher = Path(default_teacher_path())
    classifier = tmp_path / "classifier"
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(teacher, num_labels=2).save_pretrained(classifier)
    AutoTokenizer.from_pretrained(teacher).save_pretrained(classifier)
    report = export(classifier, tmp_path / "int8", quantize="int8")
    assert report.checks[0].max_difference < 1e-4
    print(f"int8 MiniLM classifier: {report.checks[1].agreement:.3f} of the check sentences in the same class")
    export(classifier, tmp_path / "fp32")
    tokenizer = AutoTokenizer.from_pretrained(teacher)
    found, batch = onnx_outputs(tmp_path / "fp32" / "model.onnx", tokenizer, dev_sentences(64))
    with torch.no_grad():
        expected = AutoModelForSequenceClassification.from_pretrained(classifier).eval()(
            **{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    assert np.abs(found - expected).max() < 1e-4
    assert export(teacher, tmp_path / "embedder", "sentence-transformers", teacher=str(teacher)).notes == ()
    sentences = dev_sentences(64)
    ours = SentenceTransformer(str(tmp_path / "embedder"), device="cpu").encode(sentences)
    theirs = SentenceTransformer(str(teacher), device="cpu").encode(sentences)
    assert np.abs(ours - theirs).max() < 1e-5


def test_embedding_agreement_against_a_hand_computation(embedding_student):
    from scipy.stats import rankdata
    from sentence_transformers import SentenceTransformer

    teacher, sentences = Path(default_teacher_path()), dev_sentences(40)
    result = embedding_agreement(embedding_student, teacher, sentences, pairs=300)
    tokenizer = AutoTokenizer.from_pretrained(embedding_student)
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = AutoModel.from_pretrained(embedding_student)(**batch).last_hidden_state.numpy()
    mask = batch["attention_mask"].numpy()[..., None]
    w_h = torch.load(embedding_student / "projections.pt")["state"]
    ours = ((states * mask).sum(1) / mask.sum(1)) @ w_h["maps.1.weight"].numpy().T + w_h["maps.1.bias"].numpy()
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    theirs = SentenceTransformer(str(teacher), device="cpu").encode(sentences)
    first, second = np.random.default_rng(0).integers(40, size=(2, 300))
    pairs = [(i, j) for i, j in zip(first, second, strict=True) if i != j]
    ranks = [rankdata([float(x[i] @ x[j]) for i, j in pairs]) for x in (ours, theirs)]
    assert result.pairs == len(pairs) and result.sentences == 40
    assert result.spearman == pytest.approx(np.corrcoef(*ranks)[0, 1], abs=1e-4)
    assert result.mean_cosine == pytest.approx(np.mean([a @ b for a, b in zip(ours, theirs, strict=True)]), abs=1e-4)
    def top10(query, i):
        return set(sorted((j for j in range(40) if j != i), key=lambda j: -float(query @ theirs[j]))[:10])

    overlaps = [len(top10(ours[i], i) & top10(theirs[i], i)) / 10 for i in range(40)]
    assert result.top10_overlap == pytest.approx(np.mean(overlaps))
    itself = embedding_agreement(teacher, teacher, sentences, pairs=300)
    assert (itself.spearman, itself.mean_cosine, itself.top10_overlap) == pytest.approx((1, 1, 1), abs=1e-5)


def test_evaluate_embeddings_on_a_corpus_holdout(tmp_path, embedding_student):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for book in range(6):
        (folder / f"{book}.txt").write_text("\n\n".join(dev_sentences(60)[book * 10:(book + 1) * 10]) + "\n")
    result = run("evaluate", "--embeddings", "--model", embedding_student, "--teacher", default_teacher_path(),
                 "--task", "corpus", "--data", folder, "--split", "holdout", "--holdout", 0.5, "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert scores["sentences"] % 10 == 0 and 0 < scores["sentences"] < 60  # whole files held out
    assert -1 <= scores["spearman"] <= 1 and scores["top10_overlap"] is not None
    packaged = run("evaluate", "--embeddings", "--model", embedding_student, "--task", "corpus", "--data", folder,
                   "--split", "holdout", "--holdout", 0.5, "--json")  # the teacher by default
    assert json.loads(packaged.output) == scores


def test_compare_embeddings_agreement_size_and_speed(tmp_path, embedding_student):
    """The teacher as it is packaged (PyTorch only) against a student exported with its ONNX
    encoders: one row per format; the fp32 graph's vectors are sentence-transformers' own, the
    int8 graph's near them; the sizes are the files'."""
    from sentence_transformers import SentenceTransformer

    teacher, student = Path(default_teacher_path()), tmp_path / "embedder"
    export(embedding_student, student, "sentence-transformers", onnx=True, quantize="int8", teacher=str(teacher))
    sentences = dev_sentences(40)
    expected = SentenceTransformer(str(student), device="cpu").encode(sentences)
    assert np.abs(OnnxEmbedder(student).encode(sentences, batch_size=7) - expected).max() < 1e-4
    result = run("compare", "--embeddings", "--model", f"teacher={teacher}", "--model", f"small={student}",
                 "--task", "sst2", "--data", GLUE / "SST-2", "--limit", 40, "--threads", 1, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["models"]
    assert [(r["model"], r["format"]) for r in rows] == [("teacher", "pytorch"), ("small", "pytorch"),
                                                         ("small", "onnx"), ("small", "onnx-int8")]
    first, pytorch, onnx, int8 = rows
    assert (first["spearman"], first["mean_cosine"], first["speedup"]) == pytest.approx((1, 1, 1), abs=1e-5)
    agreement = embedding_agreement(embedding_student, teacher, sentences)
    for row in (pytorch, onnx):
        assert (row["spearman"], row["mean_cosine"], row["top10_overlap"]) == \
            pytest.approx((agreement.spearman, agreement.mean_cosine, agreement.top10_overlap), abs=1e-4)
    assert int8["mean_cosine"] == pytest.approx(agreement.mean_cosine, abs=0.05)
    dense = (student / "2_Dense" / "model.safetensors").stat().st_size
    assert pytorch["disk_mb"] * 1e6 == (student / "model.safetensors").stat().st_size + dense
    assert onnx["disk_mb"] * 1e6 == (student / "onnx" / "model.onnx").stat().st_size + dense
    assert int8["disk_mb"] * 1e6 == (student / "onnx" / "model_qint8.onnx").stat().st_size + dense
    encoder = sum(p.numel() for p in AutoModel.from_pretrained(embedding_student).parameters())
    assert {r["parameters"] for r in rows[1:]} == {encoder + 32 * 384 + 384} and pytorch["dimensions"] == 384
    assert all(r["sentences_per_s"] > 0 and r["threads"] == 1 for r in rows)
