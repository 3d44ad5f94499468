"""Teachers of every encoder family (`cache.data.families`): small random models built from each
family's own config class and a tokenizer made here, dumped, and their cached targets checked
against the model's own eager forward, one example at a time (no padding)."""

import json
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertTokenizer,
    DebertaV2Config,
    DistilBertConfig,
    ElectraConfig,
    GPT2Config,
    GPT2Model,
    ModernBertConfig,
    RobertaConfig,
    XLMRobertaConfig,
)

from cache import open_cache
from cache.format.encoding import Factored, Maps, choose_attention
from cache.read.decode import decode_batch, probabilities_from_scores
from cache.runtime.kinds import AttentionKind
from student.show import attention_maps
from tests.helpers import FAIRSEQ_SPECIALS, SPECIALS, assert_refused, dump, fairseq_tokenizer, run, vocabulary

SHAPE = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64,
         "num_labels": 2}
FAMILIES = {
    "roberta": lambda vocab: RobertaConfig(vocab_size=vocab, max_position_embeddings=130, pad_token_id=1,
                                           bos_token_id=0, eos_token_id=2, type_vocab_size=1, **SHAPE),
    "xlm-roberta": lambda vocab: XLMRobertaConfig(vocab_size=vocab, max_position_embeddings=130, pad_token_id=1,
                                                  bos_token_id=0, eos_token_id=2, type_vocab_size=1, **SHAPE),
    "electra": lambda vocab: ElectraConfig(vocab_size=vocab, embedding_size=32, max_position_embeddings=128, **SHAPE),
    "distilbert": lambda vocab: DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                                 max_position_embeddings=128, num_labels=2),
    # layer 1 global, layer 2 local: within 4 tokens of each other, fewer than most examples have
    "modernbert": lambda vocab: ModernBertConfig(vocab_size=vocab, local_attention=8, max_position_embeddings=128,
                                                 pad_token_id=0, cls_token_id=2, sep_token_id=3, bos_token_id=2,
                                                 eos_token_id=3, **SHAPE),
    # as DeBERTa-v3: relative positions in log buckets, no absolute positions, no token types
    "deberta": lambda vocab: DebertaV2Config(vocab_size=vocab, max_position_embeddings=128, relative_attention=True,
                                             position_buckets=16, pos_att_type=["p2c", "c2p"], share_att_key=True,
                                             position_biased_input=False, type_vocab_size=0, norm_rel_ebd="layer_norm",
                                             pad_token_id=0, **SHAPE),
}
FACTORED = [family for family in FAMILIES if family != "deberta"]  # whose scores queries and keys give
NO_TOKEN_TYPES = ("distilbert", "modernbert")
def save_teacher(folder: Path, family: str, seed: int = 0) -> Path:
    """A random classifier of `family` with a tokenizer of its kind, saved as a checkpoint."""
    words = vocabulary()[len(SPECIALS):]
    roberta_like = family in ("roberta", "xlm-roberta")
    vocab = [*FAIRSEQ_SPECIALS, *words] if roberta_like else vocabulary()
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(FAMILIES[family](len(vocab))).save_pretrained(folder)
    tokenizer = fairseq_tokenizer(words) if roberta_like else BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=list(FAMILIES))
def teacher(request, tmp_path_factory) -> tuple[str, Path]:
    return request.param, save_teacher(tmp_path_factory.mktemp(request.param), request.param)


@torch.no_grad()
def eager(folder: Path, family: str, item: dict) -> tuple[tuple, tuple, torch.Tensor]:
    """The model's own forward of one example: hidden states, attention probabilities, logits."""
    model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
    types = {} if family in NO_TOKEN_TYPES else {"token_type_ids": item["token_type_ids"][None]}
    out = model(input_ids=item["input_ids"][None], **types, output_hidden_states=True, output_attentions=True)
    return tuple(h[0] for h in out.hidden_states), tuple(a[0] for a in out.attentions), out.logits[0]


def decoded(cache, i: int, kind: AttentionKind | None = None) -> tuple[dict, dict]:
    """Example i's hidden states and attention (as `kind`), decoded as training decodes them."""
    k = cache.block_of(i)
    j = i - int(cache.block_starts[k])
    one = decode_batch(cache.read_block(k, j, j + 1), torch.device("cpu"), kind, cache.embeddings)
    return {layer: h[0] for layer, h in one.hidden.items()}, {layer: a[0] for layer, a in one.attention.items()}


@pytest.mark.parametrize(("teacher", "encoding"), [(family, "maps") for family in FAMILIES] +
                         [(family, "qk") for family in FACTORED], indirect=["teacher"])
def test_cached_targets_are_what_the_teacher_computes(teacher, tmp_path, glue, encoding):
    """Hidden states, attention (scores from maps, or from queries and keys; compared as the
    probabilities the model gives) and logits, for padded batches of several lengths."""
    family, folder = teacher
    dump(folder, glue, tmp_path / "c", task="mrpc", data=glue / "MRPC", limit=12, batch_size=5,
         attention_encoding=encoding, hidden_encoding="float32")
    cache = open_cache(tmp_path / "c")
    assert cache.manifest.teacher.family == ("roberta" if family == "xlm-roberta" else family)
    assert len(set(cache.lengths.tolist())) > 3
    for j in range(len(cache)):
        item = cache[j]
        hidden, probs, logits = eager(folder, family, item)
        for layer, values in item["hidden"].items():
            torch.testing.assert_close(values, hidden[layer], rtol=1e-5, atol=1e-5)
        for layer, values in decoded(cache, j, AttentionKind.PROBS)[1].items():
            torch.testing.assert_close(values, probs[layer - 1], rtol=2e-3, atol=2e-3)
        torch.testing.assert_close(item["logits"], logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("teacher", FACTORED, indirect=True)
def test_scores_from_queries_and_keys_are_the_captured_maps(teacher, tmp_path, glue):
    """The scores the attention function computes (maps) and those multiplied out of the queries
    and keys it was given (qk): two captures, one set of scores."""
    family, folder = teacher
    for encoding in ("maps:float32", "qk:float32"):
        dump(folder, glue, tmp_path / encoding, limit=10, attention_encoding=encoding, hidden_encoding="float32")
    maps, factored = (open_cache(tmp_path / encoding) for encoding in ("maps:float32", "qk:float32"))
    for i in range(len(maps)):
        for layer, scores in decoded(maps, i)[1].items():
            torch.testing.assert_close(decoded(factored, i)[1][layer], scores, rtol=1e-4, atol=1e-4)


def test_the_embedding_tables_give_the_teachers_layer_0(teacher, tmp_path, glue):
    """RoBERTa's positions after its padding index, DistilBERT's lack of token types: the layer
    recomputed from the tables is the one the model computes."""
    family, folder = teacher
    dump(folder, glue, tmp_path / "c", task="mrpc", data=glue / "MRPC", limit=8, embedding_output="tables",
         hidden_encoding="float32")
    cache = open_cache(tmp_path / "c")
    assert cache.embeddings is not None
    for i in range(len(cache)):
        hidden, _, _ = eager(folder, family, cache[i])
        torch.testing.assert_close(decoded(cache, i)[0][0], hidden[0], rtol=1e-5, atol=1e-5)


def test_a_debertas_scores_are_those_it_takes_the_softmax_of(tmp_path, glue):
    """Disentangled attention: content-to-content plus relative-position terms, which only the
    model's own pre-softmax values hold (recorded here by patching the softmax it calls)."""
    folder = save_teacher(tmp_path / "t", "deberta")
    dump(folder, glue, tmp_path / "c", limit=6, attention_encoding="maps:float32", hidden_encoding="float32")
    cache = open_cache(tmp_path / "c")
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    softmax, inputs = torch.nn.functional.softmax, []
    for i in range(len(cache)):
        inputs.clear()
        with mock.patch("torch.nn.functional.softmax", lambda x, *a, **k: inputs.append(x) or softmax(x, *a, **k)):
            model(input_ids=cache[i]["input_ids"][None])
        for layer, scores in decoded(cache, i)[1].items():
            torch.testing.assert_close(scores, inputs[layer - 1][0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("encoding", ["qk", "qkv:int8"])
def test_a_deberta_refuses_queries_and_keys_and_auto_chooses_maps(tmp_path, glue, encoding):
    folder = save_teacher(tmp_path / "t", "deberta")
    assert_refused(run("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--teacher", folder,
                       "--out", tmp_path / "c", "--attention-encoding", encoding),
                   "is a deberta model, whose scores add relative-position terms to QK^T; only maps (or topk:K) "
                   "hold them")
    dump(folder, glue, tmp_path / "auto", limit=12)
    assert str(open_cache(tmp_path / "auto").manifest.attention_encoding) == "maps:float16"
    long = np.full(8, 100)  # where queries and keys would be smaller than maps
    assert choose_attention(None, long, 32, 4, 128) == Factored()
    assert choose_attention(None, long, 32, 4, 128, factored=False) == Maps()


def test_an_electra_with_narrower_embeddings_stores_its_layer_0(tmp_path, glue):
    config = ElectraConfig(vocab_size=len(vocabulary()), embedding_size=16, max_position_embeddings=128, **SHAPE)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "t")
    BertTokenizer(vocab={w: i for i, w in enumerate(vocabulary())}).save_pretrained(tmp_path / "t")
    assert_refused(run("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--teacher", tmp_path / "t",
                       "--out", tmp_path / "c", "--limit", 8, "--embedding-output", "tables", "--max-unknown", 1),
                   "--embedding-output tables: this teacher projects its embeddings")
    dump(tmp_path / "t", glue, tmp_path / "auto", limit=8, embedding_output="auto", hidden_encoding="float32")
    cache = open_cache(tmp_path / "auto")
    assert cache.embeddings is None and 0 in cache.manifest.layers
    hidden, _, _ = eager(tmp_path / "t", "electra", cache[3])
    torch.testing.assert_close(cache[3]["hidden"][0], hidden[0], rtol=1e-5, atol=1e-5)


def test_a_modernbert_records_its_windows_and_its_students_keep_them(tmp_path, glue):
    """The manifest says which layers are global and how far the local ones see; init-student copies
    each layer with its attention type, and a student of a shape has the teacher's pattern."""
    folder = save_teacher(tmp_path / "t", "modernbert")
    dump(folder, glue, tmp_path / "c", limit=8)
    assert open_cache(tmp_path / "c").manifest.teacher.windows == (None, 4)
    for layer_map, types in (("2", ["sliding_attention"]), ("1,2", ["full_attention", "sliding_attention"])):
        made = run("init-student", "--teacher", folder, "--layer-map", layer_map, "--out", tmp_path / layer_map)
        assert made.exit_code == 0, made.output
        assert AutoConfig.from_pretrained(tmp_path / layer_map).layer_types == types
    trained = run("train-student", "--cache", tmp_path / "c", "--student", "layers=3,hidden=16,ffn=32,heads=2",
                  "--layer-map", "1,2,2", "--max-steps", 1, "--stage", "general", "--out", tmp_path / "run")
    assert trained.exit_code == 0, trained.output
    student = AutoConfig.from_pretrained(tmp_path / "run" / "last")
    assert student.layer_types == ["full_attention", "sliding_attention", "full_attention"]
    assert student.sliding_window == 4


def test_a_tokenizer_that_pads_with_another_id_than_the_model_is_refused(tmp_path, glue):
    config = FAMILIES["modernbert"](len(vocabulary()))
    config.pad_token_id = 4
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "t")
    BertTokenizer(vocab={w: i for i, w in enumerate(vocabulary())}).save_pretrained(tmp_path / "t")
    assert_refused(run("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--teacher", tmp_path / "t",
                       "--out", tmp_path / "c"),
                   "the tokenizer pads with id 0, the model with 4: they do not belong together")


def test_a_model_of_another_kind_is_refused_in_one_line(tmp_path, glue):
    GPT2Model(GPT2Config(n_layer=1, n_embd=32, n_head=4, vocab_size=len(vocabulary()))).save_pretrained(tmp_path / "g")
    BertTokenizer(vocab={w: i for i, w in enumerate(vocabulary())}).save_pretrained(tmp_path / "g")
    assert_refused(run("dump-teacher", "--task", "sst2", "--data", glue / "SST-2", "--teacher", tmp_path / "g",
                       "--out", tmp_path / "c"),
                   "a 'gpt2' model is not an encoder this tool distils (it takes bert, roberta, xlm-roberta, "
                   "electra, distilbert, modernbert, deberta-v2)")


def test_a_student_distils_from_the_cache_as_from_the_live_teacher(teacher, tmp_path, glue):
    """The student (a BERT on the teacher's vocabulary) logs the same losses from the cache as from
    the teacher run live on the same batches (`bench.online`), both stages."""
    from bench.online import OnlineTargets
    from cache.teacher.dump import DumpConfig, dump_teacher
    from student.trainer import train_student
    from tests.helpers import train_config

    family, folder = teacher
    dump_config = DumpConfig(task="sst2", data=glue / "SST-2", out=tmp_path / "c", teacher=str(folder), limit=48,
                             block_mb=0.05, batch_size=16, max_unknown=1.0)
    dump_teacher(dump_config, command="x", progress=False)
    run = train_config(tmp_path / "c", tmp_path / "cached", stage="all", max_steps=4, layer_map="1,2,2")
    train_student(run, command="x", progress=False)
    train_student(replace(run, out=tmp_path / "online"), command="x", progress=False,
                  source=OnlineTargets(dump_config))
    cached, online = (logged_losses(tmp_path / name) for name in ("cached", "online"))
    assert len(cached) == len(online) == 8
    assert [(a["stage"], a["step"]) for a in cached] == [(b["stage"], b["step"]) for b in online]
    for a, b in zip(cached, online, strict=True):
        assert a.keys() == b.keys() and all(a[key] == pytest.approx(b[key], rel=5e-3) for key in LOSSES if key in a)


LOSSES = ("loss", "embd", "hidn", "attn", "pred")


def logged_losses(run: Path) -> list[dict]:
    """Each logged step's position and every loss term (attention's apart: it is the smallest)."""
    entries = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [{"stage": e["stage"], "step": e["step"]} | {k: e[k] for k in LOSSES if k in e} for e in entries
            if "loss" in e]


FAMILY_CLASSES = {"roberta": "RobertaForSequenceClassification", "xlm-roberta": "XLMRobertaForSequenceClassification",
                  "electra": "ElectraForSequenceClassification", "distilbert": "DistilBertForSequenceClassification",
                  "modernbert": "ModernBertForSequenceClassification",
                  "deberta": "DebertaV2ForSequenceClassification"}


def test_init_train_save_and_serve_a_student_of_the_teachers_family(teacher, tmp_path, glue):
    """init-student copies the teacher's layers into a model of its family, train-student distils it
    from the cache, and what it saves loads with the Auto classes and answers in a pipeline."""
    from transformers import pipeline

    family, folder = teacher
    dump(folder, glue, tmp_path / "c", limit=24)
    assert run("init-student", "--teacher", folder, "--layers", 1, "--out", tmp_path / "init").exit_code == 0
    trained = run("train-student", "--cache", tmp_path / "c", "--student", tmp_path / "init", "--out",
                  tmp_path / "run", "--max-steps", 2, "--epochs-intermediate", 1, "--epochs-prediction", 1,
                  "--batch-size", 8)
    assert trained.exit_code == 0, trained.output
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "last")
    assert type(student).__name__ == FAMILY_CLASSES[family] and student.config.num_hidden_layers == 1
    classify = pipeline("text-classification", model=str(tmp_path / "run" / "last"))
    assert classify("a gorgeous , witty , seductive movie")[0]["label"] in {"0", "1"}
    maps = attention_maps(tmp_path / "c", 3, tmp_path / "run" / "last", layer=1)  # `show attention`
    _, probs, _ = eager(tmp_path / "run" / "last", family, open_cache(tmp_path / "c")[3])
    window = open_cache(tmp_path / "c").manifest.geometry.window(maps.teacher_layer)
    student = probabilities_from_scores(torch.from_numpy(maps.student)[None], torch.ones(1, len(maps.tokens),
                                                                                         dtype=torch.bool), window)
    torch.testing.assert_close(student[0], probs[0], rtol=1e-4, atol=1e-5)


def test_a_student_of_a_shape_is_built_in_the_teachers_family(teacher, tmp_path, glue):
    family, folder = teacher
    dump(folder, glue, tmp_path / "c", limit=16)
    trained = run("train-student", "--cache", tmp_path / "c", "--student", "layers=1,hidden=16,ffn=32,heads=2",
                  "--layer-map", "2", "--stage", "prediction", "--max-steps", 1, "--out", tmp_path / "run")
    assert trained.exit_code == 0, trained.output
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "last")
    assert type(student).__name__ == FAMILY_CLASSES[family] and student.config.hidden_size == 16


def test_finetune_and_evaluate_take_every_family(teacher, tmp_path, glue):
    family, folder = teacher
    tuned = run("finetune-teacher", "--task", "sst2", "--data", glue / "SST-2", "--base", folder, "--out",
                tmp_path / "t", "--limit", 16, "--epochs", 1, "--max-seq-len", 32)
    assert tuned.exit_code == 0, tuned.output
    scored = run("evaluate", "--model", tmp_path / "t", "--task", "sst2", "--data", glue / "SST-2", "--json")
    assert scored.exit_code == 0 and "accuracy" in json.loads(scored.output), scored.output
