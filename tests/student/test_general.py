"""General distillation on a corpus cache, and task distillation from a general student: ours, or
one saved by the reference TinyBERT code."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, BertConfig, BertModel

from cache import open_cache
from cache.data.checkpoints import default_teacher_path
from cache.runtime.attention import use_attention
from cache.runtime.errors import UserError
from cache.teacher.config import InitConfig
from cache.teacher.init_student import init_student
from student.objective import held_out_losses
from student.setup import Run
from student.trainer import train_student
from tests.helpers import GLUE, assert_refused, dump, logged, run, save_tiny_teacher, vocabulary
from tests.helpers import train_config as config
from tests.reference import load_reference, reference_targets

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "corpus"
GENERAL = "layers=2,hidden=16,ffn=32,heads=2"  # 2 heads against the tiny teacher's 4: grouped head mapping


@pytest.fixture(scope="module")
def corpus_caches(tmp_path_factory, tiny_bare_teacher):
    """Train and held-out caches of the tiny bare teacher over real sentences packed as a corpus."""
    folder = tmp_path_factory.mktemp("corpus")
    lines = [line.split("\t")[0] for line in (GLUE / "SST-2" / "train.tsv").read_text().splitlines()[1:161]]
    (folder / "text.txt").write_text("\n\n".join("\n".join(lines[i:i + 3]) for i in range(0, len(lines), 3)))
    caches = {}
    for split in ("train", "holdout"):
        caches[split] = folder / f"{split}.zarr"
        dump(tiny_bare_teacher, GLUE, caches[split], task="corpus", data=folder / "text.txt", split=split,
             holdout=0.3, max_seq_len=32, limit=None)
    return caches


def independent_losses(student: Path, cache_path: Path, layer_map: list[int]) -> dict[str, float]:
    """The intermediate losses of a saved student over a whole cache, example by example with an
    eager forward and its recomputed scores: sums of squares over real tokens and cells."""
    model, cache = load_reference(student), open_cache(cache_path)
    maps = torch.load(student / "projections.pt")["state"]

    def project(m, h):
        k = min(m, 1)
        return h @ maps[f"maps.{k}.weight"].T + maps[f"maps.{k}.bias"]

    sums = {"embd": 0.0, "hidn": [0.0] * len(layer_map), "attn": [0.0] * len(layer_map)}
    tokens = cells = 0
    for i in range(len(cache)):
        item = cache[i]
        ref = reference_targets(model, item["input_ids"].long(), item["token_type_ids"].long())
        sums["embd"] += (project(0, ref["hidden"][0]) - item["hidden"][0].float()).square().sum().item()
        for j, n in enumerate(layer_map):
            m = j + 1
            sums["hidn"][j] += (project(m, ref["hidden"][m]) - item["hidden"][n].float()).square().sum().item()
            teacher = item["attention"][n].float()  # (4, L, L): heads 2h and 2h+1 teach student head h
            grouped = teacher.view(2, 2, *teacher.shape[1:]).mean(1)
            sums["attn"][j] += (ref["scores"][j] - grouped).square().sum().item()
        tokens += len(item["input_ids"])
        cells += len(item["input_ids"]) ** 2 * 2
    width = cache.manifest.teacher.hidden_size
    embd, hidn, attn = sums["embd"] / (tokens * width), sum(sums["hidn"]) / (tokens * width), sum(sums["attn"]) / cells
    return {"loss": embd + hidn + attn, "embd": embd, "hidn": hidn, "attn": attn}


def test_general_student_and_its_held_out_losses(tmp_path, corpus_caches):
    out = tmp_path / "general"
    final = train_student(config(corpus_caches["train"], out, student=GENERAL, stage="general", layer_map="2,3",
                                 eval_cache=corpus_caches["holdout"], batch_size=256, eval_every=2, max_steps=4),
                          command="x", progress=False)
    assert logged(out, "stage")[0] == "general" and len(logged(out, "eval")) == 2
    model = AutoModel.from_pretrained(out / "last")
    assert type(model) is BertModel and not hasattr(model, "classifier")
    record = json.loads((out / "train_config.json").read_text())
    assert record["head_map"] == "grouped" and record["projections_resolved"] == "separate"
    # means over every real token and cell of the held-out cache, whatever the batches
    expected = independent_losses(out / "last", corpus_caches["holdout"], [2, 3])
    assert final.keys() == expected.keys()
    for name in expected:
        assert final[name] == pytest.approx(expected[name], rel=2e-4), name
    assert (out / "best" / "config.json").exists()  # the lowest held-out loss


def independent_embedding_loss(student: Path, cache_path: Path, kind: str) -> float:
    """The pooled embedding term of a saved student over a whole cache, example by example: the mean
    of its last layer through W_h against the mean of the teacher's last layer."""
    model, cache = AutoModel.from_pretrained(student).eval(), open_cache(cache_path)
    w_h = torch.load(student / "projections.pt")["state"]
    losses = []
    for i in range(len(cache)):
        item = cache[i]
        with torch.no_grad():
            states = model(input_ids=item["input_ids"][None].long()).last_hidden_state[0]
        ours = states.mean(0) @ w_h["maps.1.weight"].T + w_h["maps.1.bias"]
        theirs = item["hidden"][3].float().mean(0)  # the tiny teacher's last layer
        losses.append((ours - theirs).square().mean().item() if kind == "mse" else
                      1 - torch.nn.functional.cosine_similarity(ours, theirs, dim=0).item())
    return sum(losses) / len(losses)


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_the_embedding_term_is_the_pooled_sentence_vectors_distance(tmp_path, corpus_caches, kind):
    out = tmp_path / "general"
    final = train_student(config(corpus_caches["train"], out, student=GENERAL, stage="general", layer_map="2,3",
                                 eval_cache=corpus_caches["holdout"], batch_size=64, max_steps=2,
                                 embedding_loss=kind, embedding_weight=0.5), command="x", progress=False)
    assert len(logged(out, "emb")) == 2
    assert final["emb"] == pytest.approx(0.5 * independent_embedding_loss(out / "last", corpus_caches["holdout"],
                                                                          kind), rel=2e-4)
    assert final["loss"] == pytest.approx(final["embd"] + final["hidn"] + final["attn"] + final["emb"])


def test_the_embedding_term_needs_the_teachers_last_layer(tmp_path, tiny_bare_teacher):
    cache = tmp_path / "c"
    dump(tiny_bare_teacher, GLUE, cache, layers=(0, 2))
    assert_refused(run("train-student", "--cache", cache, "--stage", "general", "--layer-map", "2,2",
                       "--student", GENERAL, "--embedding-loss", "mse", "--out", tmp_path / "r"),
                   "--embedding-loss: --cache does not store the teacher's last layer 3 (it has [0, 2]); "
                   "dump it with --layers including 3")


@pytest.mark.parametrize("kind", [None, "cosine"])
def test_the_embedding_objective_trains_the_sentence_vector_alone(tmp_path, corpus_caches, tiny_bare_teacher, kind):
    """From caches of the teacher's last layer alone: no other layer is read, no attention taken."""
    folder, caches = corpus_caches["train"].parent, {}
    for split in ("train", "holdout"):
        caches[split] = tmp_path / f"{split}.zarr"
        dump(tiny_bare_teacher, GLUE, caches[split], task="corpus", data=folder / "text.txt", split=split,
             holdout=0.3, max_seq_len=32, limit=None, layers=(3,), attention_encoding="none")
    out = tmp_path / "general"
    final = train_student(config(caches["train"], out, student=GENERAL, stage="general", objective="embedding",
                                 embedding_loss=kind, eval_cache=caches["holdout"], batch_size=64, max_steps=2),
                          command="x", progress=False)
    assert final.keys() == {"loss", "emb"} and len(logged(out, "emb")) == 2
    expected = independent_embedding_loss(out / "last", caches["holdout"], kind or "mse")
    assert final["emb"] == pytest.approx(expected, rel=2e-4)
    assert json.loads((out / "train_config.json").read_text())["layer_map_resolved"] == []


def test_the_embedding_objective_refuses_what_it_cannot_use(tmp_path, tiny_bare_teacher):
    cache = tmp_path / "c"
    dump(tiny_bare_teacher, GLUE, cache, layers=(0, 2))
    common = ("train-student", "--cache", cache, "--stage", "general", "--student", GENERAL, "--objective",
              "embedding", "--out", tmp_path / "r")
    assert_refused(run(*common), "--objective embedding: --cache does not store the teacher's last layer 3 (it "
                                 "has [0, 2]); dump it with --layers including 3")
    assert_refused(run(*common, "--layer-map", "2,2"),
                   "--layer-map: the embedding objective compares sentence vectors, not layers")
    hidden_only = tmp_path / "h"
    dump(tiny_bare_teacher, GLUE, hidden_only, layers=(0, 2, 3), attention_encoding="none")
    assert_refused(run("train-student", "--cache", hidden_only, "--stage", "general", "--student", GENERAL,
                       "--layer-map", "2,3", "--out", tmp_path / "t"),
                   "--layer-map: --cache stores no attention of teacher layers [2, 3] (it was dumped with "
                   "--attention-encoding none); TinyBERT's losses need it")


def test_a_student_copied_from_the_teacher_starts_where_it_ends(tmp_path, corpus_caches, tiny_bare_teacher):
    """A student of the teacher's width starts with identity projections: one that copies every
    teacher layer has nothing left to learn from the hidden states (float16 targets apart)."""
    student = tmp_path / "copy"
    init_student(InitConfig(teacher=str(tiny_bare_teacher), out=student, layers=3), command="x")
    run_ = Run(config(corpus_caches["train"], tmp_path / "r", student=str(student), stage="general",
                      eval_cache=corpus_caches["holdout"]))
    assert torch.equal(run_.projections.layer(1).weight, torch.eye(run_.teacher.hidden_size))
    use_attention(run_.student, run_.attention)  # as the recipe's intermediate stage does
    losses = held_out_losses(run_)
    assert losses["embd"] < 1e-6 and losses["hidn"] < 1e-6 and losses["attn"] < 1e-4


def test_task_distillation_continues_the_general_student(tmp_path, corpus_caches, tiny_cache):
    general = tmp_path / "general"
    train_student(config(corpus_caches["train"], general, student=GENERAL, stage="general", layer_map="2,3",
                         max_steps=2), command="x", progress=False)
    saved = torch.load(general / "last" / "projections.pt")["state"]
    task = Run(config(tiny_cache, tmp_path / "task", student=str(general), layer_map="2,3"))  # the run's last/
    encoder = BertModel.from_pretrained(general / "last").state_dict()
    assert all(torch.equal(task.student.bert.state_dict()[k], v) for k, v in encoder.items())
    assert all(torch.equal(task.projections.state_dict()[k].cpu(), v) for k, v in saved.items())
    fresh = Run(config(tiny_cache, tmp_path / "task", student=str(general / "last"), layer_map="2,3",
                       fresh_projections=True, projections="per-layer"))
    assert len(fresh.projections.maps) == 3 and not torch.equal(fresh.projections.maps[0].weight.cpu(),
                                                                saved["maps.0.weight"])
    with pytest.raises(UserError, match="holds separate projections; add --fresh-projections"):
        Run(config(tiny_cache, tmp_path / "task", student=str(general / "last"), layer_map="2,3",
                   projections="shared"))
    train_student(config(tiny_cache, tmp_path / "task", student=str(general / "last"), layer_map="2,3",
                         max_steps=2), command="x", progress=False)
    assert logged(tmp_path / "task", "stage")[-1] == "prediction"


def reference_checkpoint(folder: Path, projections: dict) -> dict:
    """A general TinyBERT as the reference code saves it: BERT weights under `bert.`, its MLM head,
    and the projections in one pytorch_model.bin; a config.json without model_type; vocab.txt."""
    folder.mkdir()
    vocab = vocabulary()
    config = {"attention_probs_dropout_prob": 0.1, "cell": {}, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
              "hidden_size": 16, "initializer_range": 0.02, "intermediate_size": 32, "max_position_embeddings": 128,
              "num_attention_heads": 2, "num_hidden_layers": 2, "pre_trained": "", "structure": [],
              "training": "", "type_vocab_size": 2, "vocab_size": len(vocab)}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    torch.manual_seed(3)
    bert = BertModel(BertConfig(**config)).state_dict()
    weights = {f"bert.{k}": v for k, v in bert.items()} | projections
    weights["cls.predictions.bias"] = torch.zeros(len(vocab))
    torch.save(weights, folder / "pytorch_model.bin")
    return bert


@pytest.mark.parametrize("kind", ["fit_dense", "fit_denses"])
def test_reference_code_general_tinybert_loads(tmp_path, tiny_cache, kind):
    if kind == "fit_dense":
        projections = {"fit_dense.weight": torch.randn(32, 16), "fit_dense.bias": torch.randn(32)}
    else:
        projections = {f"fit_denses.{m}.{p}": torch.randn(32, 16) if p == "weight" else torch.randn(32)
                       for m in range(3) for p in ("weight", "bias")}
    bert = reference_checkpoint(tmp_path / "tinybert", projections)
    task = Run(config(tiny_cache, tmp_path / "task", student=str(tmp_path / "tinybert"), layer_map="2,3"))
    assert all(torch.equal(task.student.bert.state_dict()[k], v) for k, v in bert.items())
    assert task.projections.sharing == ("shared" if kind == "fit_dense" else "per-layer")
    for name, value in task.projections.state_dict().items():
        m, param = name.split(".")[1:]
        source = f"fit_dense.{param}" if kind == "fit_dense" else f"fit_denses.{m}.{param}"
        assert torch.equal(value.cpu(), projections[source])


def test_evaluation_caches_that_would_mislead_are_refused(tmp_path, corpus_caches, glue):
    train = corpus_caches["train"]
    with pytest.raises(UserError, match=r"--eval-cache: (\d+) of the \1 sequences of .* are also in --cache"):
        train_student(config(train, tmp_path / "a", stage="general", eval_cache=train), command="x", progress=False)
    other = save_tiny_teacher(tmp_path / "other", head=False, seed=7)
    dump(other, glue, tmp_path / "other.zarr", task="corpus", data=train.parent / "text.txt", split="holdout",
         holdout=0.3, max_seq_len=32)
    with pytest.raises(UserError, match="made by another teacher"):
        train_student(config(train, tmp_path / "b", stage="general", eval_cache=tmp_path / "other.zarr"),
                      command="x", progress=False)
    with pytest.raises(UserError, match="general distillation has no labels to score"):
        train_student(config(train, tmp_path / "c", stage="general", eval_data=glue / "SST-2"), command="x",
                      progress=False)
    with pytest.raises(UserError, match="use --stage general"):
        train_student(config(train, tmp_path / "d", stage="all"), command="x", progress=False)


def test_real_minilm_general_distillation_on_the_real_corpus(tmp_path):
    """The packaged MiniLM's targets on real corpus text teach a 2-layer student with 4 heads
    (teacher heads averaged in groups of 3): the command line run, the saved general student, and
    its held-out losses against an independent computation."""
    teacher = default_teacher_path()
    for split in ("train", "holdout"):
        dump(teacher, GLUE, tmp_path / split, task="corpus", data=CORPUS, split=split, holdout=0.05,
             layers=(0, 3, 6), limit=8, max_seq_len=64)
    result = run("train-student", "--cache", tmp_path / "train", "--eval-cache", tmp_path / "holdout",
                 "--stage", "general", "--student", "layers=2,hidden=64,ffn=128,heads=4", "--out", tmp_path / "g",
                 "--max-steps", "3", "--batch-size", "8", "--lr-intermediate", "1e-3")
    assert result.exit_code == 0, result.output
    assert "held-out losses" in result.output
    final = [json.loads(line) for line in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()][-1]["eval"]
    model = AutoModel.from_pretrained(tmp_path / "g" / "last")
    assert type(model) is BertModel and model.config.num_attention_heads == 4
    # the independent computation groups teacher heads in pairs (the tiny case); here groups of 3
    cache, ref_model = open_cache(tmp_path / "holdout"), load_reference(tmp_path / "g" / "last")
    maps = torch.load(tmp_path / "g" / "last" / "projections.pt")["state"]
    attn = cells = 0.0
    for i in range(len(cache)):
        item = cache[i]
        ref = reference_targets(ref_model, item["input_ids"].long(), item["token_type_ids"].long())
        for j, n in enumerate((3, 6)):
            teacher = item["attention"][n].float()
            attn += (ref["scores"][j] - teacher.view(4, 3, *teacher.shape[1:]).mean(1)).square().sum().item()
        cells += len(item["input_ids"]) ** 2 * 4
    assert maps["maps.0.weight"].shape == (384, 64)
    assert final["attn"] == pytest.approx(attn / cells, rel=2e-4)


def test_real_minilm_as_a_reference_code_general_student(tmp_path):
    """The packaged MiniLM's weights saved as the reference code saves a general TinyBERT (with a
    `fit_dense`), loaded by task distillation on real SST-2 targets of the same MiniLM."""
    teacher = default_teacher_path()
    folder = tmp_path / "reference"
    folder.mkdir()
    minilm = BertModel.from_pretrained(teacher, add_pooling_layer=False)
    config = {k: v for k, v in minilm.config.to_dict().items() if k not in ("model_type", "architectures")}
    (folder / "config.json").write_text(json.dumps(config | {"pre_trained": "", "training": ""}))
    (folder / "vocab.txt").write_text((Path(teacher) / "vocab.txt").read_text())
    fit_dense = {"fit_dense.weight": torch.randn(384, 384) / 20, "fit_dense.bias": torch.zeros(384)}
    torch.save({f"bert.{k}": v for k, v in minilm.state_dict().items()} | fit_dense, folder / "pytorch_model.bin")
    dump(teacher, GLUE, tmp_path / "sst2.zarr", limit=16, max_seq_len=64)
    run_ = Run(config_of(tmp_path / "sst2.zarr", tmp_path / "task", folder))
    loaded = run_.student.bert.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in minilm.state_dict().items())
    assert run_.projections.sharing == "shared"
    assert torch.equal(run_.projections.maps[0].weight.cpu(), fit_dense["fit_dense.weight"])
    train_student(config_of(tmp_path / "sst2.zarr", tmp_path / "task", folder, max_steps=2), command="x",
                  progress=False)
    assert len(logged(tmp_path / "task", "attn")) == 2


def config_of(cache: Path, out: Path, student: Path, **overrides):
    return config(cache, out, student=str(student), stage="intermediate", layer_map="uniform", **overrides)
