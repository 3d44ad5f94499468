"""A student as a sentence-transformers embedder: its encoder, the teacher's pooling, W_h (the
projection trained with it onto the teacher's width) and the teacher's normalisation.

Pooling is linear, so the mean of the projected token vectors is the projection of their mean:
a student distilled on the teacher's hidden states through W_h gives, pooled and projected, an
approximation of the teacher's own sentence vector, comparable with vectors the teacher made.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cache.data.checkpoints import load_config
from cache.runtime.errors import UserError
from cache.runtime.paths import model_folder
from student.config import RUN_RECORD, ExportConfig
from student.model import saved_projections
from student.onnx_graph import CHECK_SENTENCES, Check, export_onnx, vectors_check

POOLINGS = ("mean", "cls")
"""The poolings an embedder keeps: mean (what W_h's linearity argument needs) and the first token."""
ONNX_INT8_GRAPH = "model_qint8.onnx"
"""The int8 encoder's name in an embedder's onnx/ folder (load it with model_kwargs={"file_name": ...})."""


@dataclass(frozen=True)
class TeacherHead:
    """What the teacher does after its encoder: its pooling, and whether it normalises."""

    pooling: str = "mean"
    normalize: bool = False
    max_seq_length: int | None = None

    @classmethod
    def of(cls, teacher: Path) -> "TeacherHead":
        """A sentence-transformers teacher's modules; a plain transformers one pools by mean."""
        modules_file = teacher / "modules.json"
        if not modules_file.is_file():
            return cls()
        modules = json.loads(modules_file.read_text())
        pooling, normalize = "mean", False
        for module in modules:
            kind = module["type"].rsplit(".", 1)[-1]
            if kind == "Pooling":
                config = json.loads((teacher / module["path"] / "config.json").read_text())
                pooling = config.get("pooling_mode") or ("cls" if config.get("pooling_mode_cls_token") else "mean")
                if pooling not in POOLINGS or config.get("pooling_mode_max_tokens") \
                        or config.get("pooling_mode_mean_sqrt_len_tokens"):
                    raise UserError(f"--teacher: {teacher} pools by {pooling!r}; an embedder keeps mean or cls pooling")
            normalize |= kind == "Normalize"
        settings_file = teacher / "sentence_bert_config.json"
        length = json.loads(settings_file.read_text()).get("max_seq_length") if settings_file.is_file() else None
        return cls(pooling, normalize, length)


def recorded_teacher(student: Path) -> Path | None:
    """The teacher of the cache the student's run was distilled from, where that folder exists."""
    record = student.parent / RUN_RECORD
    if not record.is_file():
        return None
    from cache import open_cache

    try:
        teacher = Path(open_cache(json.loads(record.read_text())["cache"]).manifest.teacher.path)
    except Exception:  # noqa: BLE001 - a moved or remote cache: the user names the teacher instead
        return None
    return teacher if teacher.is_dir() else None


def output_projection(student: Path, config) -> torch.nn.Linear | None:
    """W_h of the student's last layer, as trained with it (None when it saved no projections)."""
    saved = saved_projections(student)
    if saved is None:
        return None
    _, state = saved
    maps = sorted({int(key.split(".")[1]) for key in state})
    index = min(config.num_hidden_layers, len(maps) - 1)
    weight, bias = state[f"maps.{index}.weight"], state[f"maps.{index}.bias"]
    linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
    linear.load_state_dict({"weight": weight, "bias": bias})
    return linear


def embedder_modules(student: Path, head: TeacherHead, projection: torch.nn.Linear | None) -> list:
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    config = load_config(student, "--model")
    length = min(head.max_seq_length or 512, config.max_position_embeddings)
    modules = [Transformer(str(student), max_seq_length=length), Pooling(config.hidden_size, head.pooling)]
    if projection is not None:
        modules.append(Dense(projection.in_features, projection.out_features, bias=True, activation_function=None,
                             init_weight=projection.weight.detach(), init_bias=projection.bias.detach()))
    if head.normalize:
        modules.append(Normalize())
    return modules


def export_embedder(source: Path, folder: Path, config: ExportConfig) -> tuple[list[Check], list[str]]:
    """The sentence-transformers folder of `source` in `folder` (with its ONNX encoder under onnx/
    with --onnx), checked against a computation by hand; returns the checks and what the user
    should know about the vectors."""
    from sentence_transformers import SentenceTransformer

    teacher = Path(config.teacher) if config.teacher else recorded_teacher(source)
    head = TeacherHead.of(teacher) if teacher else TeacherHead()
    student_config = load_config(source, "--model")
    projection = output_projection(source, student_config)
    SentenceTransformer(modules=embedder_modules(source, head, projection), device="cpu").save(str(folder))
    checks = [embedder_check(folder, source, head, projection)]
    if config.onnx:
        (folder / "onnx").mkdir()
        checks += export_onnx(folder, folder / "onnx", config.quantize, int8_name=ONNX_INT8_GRAPH)
    notes = []
    if teacher is None:
        notes.append("no teacher found (give --teacher): mean pooling, not normalised")
    if projection is None and not (teacher and teacher.resolve() == source.resolve()):  # the teacher is its own space
        notes.append("the student saved no projections: its vectors are its own, not in the teacher's space")
    return checks, notes


@torch.inference_mode()
def embedder_check(folder: Path, student: Path, head: TeacherHead, projection: torch.nn.Linear | None) -> Check:
    """The saved embedder's vectors against the student's by hand: mean over real tokens, W_h, normalise."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    found = SentenceTransformer(str(folder), device="cpu").encode(list(CHECK_SENTENCES), convert_to_numpy=True)
    tokenizer, model = AutoTokenizer.from_pretrained(student), AutoModel.from_pretrained(student).eval()
    batch = tokenizer(list(CHECK_SENTENCES), padding=True, return_tensors="pt")
    states = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    vectors = (states * mask).sum(1) / mask.sum(1) if head.pooling == "mean" else states[:, 0]
    if projection is not None:
        vectors = projection(vectors)
    if head.normalize:
        vectors = torch.nn.functional.normalize(vectors, dim=-1)
    return vectors_check("sentence-transformers", vectors.numpy(), np.asarray(found), "sentence")


@dataclass(frozen=True)
class Agreement:
    """How closely an embedder follows its teacher on sentences neither was trained on (no labels)."""

    sentences: int
    pairs: int
    spearman: float
    """Spearman correlation between the two models' cosine similarities of the same sentence pairs."""
    mean_cosine: float | None
    """Mean cosine between the two vectors of each sentence (None when their widths differ)."""
    top10_overlap: float | None
    """Each sentence as a query against the teacher's vectors of the others: the share of the
    teacher's own 10 nearest that the student's query also finds (None when the widths differ)."""


def load_embedder(folder: Path, teacher: Path):
    """A sentence-transformers folder as it is; a student checkpoint (or a run's) as `export`
    would make it."""
    from sentence_transformers import SentenceTransformer

    if not (folder / "modules.json").is_file():
        folder = model_folder(folder, "--model")
    if (folder / "modules.json").is_file():
        return SentenceTransformer(str(folder), device="cpu")
    projection = output_projection(folder, load_config(folder, "--model"))
    return SentenceTransformer(modules=embedder_modules(folder, TeacherHead.of(teacher), projection), device="cpu")


ONNX_GRAPHS = {"onnx": "model.onnx", "onnx-int8": ONNX_INT8_GRAPH}
"""The encoders an embedder folder may hold under onnx/, by format name."""


class OnnxEmbedder:
    """An embedder folder's ONNX encoder (`graph` in onnx/) in ONNX Runtime, then the folder's own
    modules after it (pooling, W_h, normalisation): the vectors `SentenceTransformer(folder)` gives
    (of the int8 graph: its approximation), encoded as it does (sorted by length, in batches)."""

    def __init__(self, folder: Path, graph: str = ONNX_GRAPHS["onnx"], threads: int | None = None):
        from cache.data.served import ort_session

        self.model = load_embedder(folder, folder)
        self.session = ort_session(folder / "onnx" / graph, threads)
        self.inputs = {node.name for node in self.session.get_inputs()}

    def parameters(self):
        """The parameters of the model the graph was exported from (the graph's own are folded and quantised)."""
        return self.model.parameters()

    @torch.inference_mode()
    def encode(self, sentences: list[str], batch_size: int = 32, normalize_embeddings: bool = False) -> np.ndarray:
        order = np.argsort([-len(s) for s in sentences], kind="stable")
        vectors = []
        for start in range(0, len(sentences), batch_size):
            batch = self.model.preprocess([sentences[i] for i in order[start:start + batch_size]])
            feeds = {name: value.numpy().astype(np.int64) for name, value in batch.items() if name in self.inputs}
            features = {"token_embeddings": torch.from_numpy(self.session.run(None, feeds)[0]),
                        "attention_mask": batch["attention_mask"]}
            for module in list(self.model)[1:]:
                features = module(features)
            vectors.append(features["sentence_embedding"])
        found = torch.cat(vectors)
        if normalize_embeddings:
            found = torch.nn.functional.normalize(found, dim=-1)
        result = np.empty_like(found.numpy())
        result[order] = found.numpy()
        return result


def embedding_agreement(student: Path, teacher: Path, sentences: list[str], pairs: int = 5000,
                        batch_size: int = 32, seed: int = 0) -> Agreement:
    """`student`'s agreement with `teacher` over `sentences` (`Agreement`)."""
    ours = load_embedder(student, teacher).encode(sentences, batch_size=batch_size, normalize_embeddings=True)
    theirs = load_embedder(teacher, teacher).encode(sentences, batch_size=batch_size, normalize_embeddings=True)
    return vectors_agreement(ours, theirs, pairs, seed)


def vectors_agreement(ours: np.ndarray, theirs: np.ndarray, pairs: int = 5000, seed: int = 0) -> Agreement:
    """The agreement of two models' unit vectors of the same sentences (rows)."""
    from scipy.stats import spearmanr

    sentences = len(ours)
    rng = np.random.default_rng(seed)
    first, second = rng.integers(sentences, size=(2, pairs))
    distinct = first != second
    first, second = first[distinct], second[distinct]
    correlation = spearmanr((ours[first] * ours[second]).sum(-1), (theirs[first] * theirs[second]).sum(-1))
    same_space = ours.shape[1] == theirs.shape[1]
    return Agreement(sentences, int(distinct.sum()), float(correlation.statistic),
                     float((ours * theirs).sum(-1).mean()) if same_space else None,
                     index_overlap(ours, theirs, 10) if same_space else None)


def index_overlap(queries: np.ndarray, index: np.ndarray, k: int) -> float:
    """Mean share of the k nearest rows of `index` (by cosine, the query's own row left out) that
    `queries[i]` finds among those `index[i]` finds."""
    found = nearest(queries @ index.T, k)
    expected = nearest(index @ index.T, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, expected, strict=True)]))


def nearest(similarities: np.ndarray, k: int) -> np.ndarray:
    np.fill_diagonal(similarities, -np.inf)
    return np.argsort(-similarities, axis=1, kind="stable")[:, :k]


def agreement_sentences(task: str, data: Path, split: str, limit: int, holdout: float, documents: str,
                        tokenizer) -> list[str]:
    """Sentences to score an embedder on: a corpus's paragraphs of one split (documents held out by
    the dump's rule), or a task split's texts (both texts of a pair task)."""
    from cache.data.corpus import Corpus
    from cache.data.readers import load_examples
    from cache.data.tasks import CORPUS_TASK

    if task == CORPUS_TASK:
        corpus = Corpus(data, split, holdout, limit, documents)
        corpus.check()
        return corpus.texts(tokenizer)
    examples = load_examples(task, data, split)
    return [*examples.texts, *(examples.pairs or [])][:limit]
