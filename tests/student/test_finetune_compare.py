"""finetune-teacher (real MiniLM) makes a teacher dump-teacher takes; compare reports what it measures."""

import json

import pytest
import torch
from click.testing import CliRunner
from transformers import AutoConfig, BertForSequenceClassification

from cache import open_cache
from cache.data.checkpoints import TaskHead, recorded_head
from cache.data.evaluate import evaluate
from cache.data.readers import load_examples
from cache.teacher.config import FinetuneConfig
from cache.teacher.finetune import finetune_teacher
from cli import cli
from student.compare import compare_models
from tests.helpers import dump


@pytest.mark.slow
def test_finetuned_minilm_becomes_a_teacher_with_logits(tmp_path, small_sst2):
    out = tmp_path / "teacher"
    metrics = finetune_teacher(FinetuneConfig(task="sst2", data=small_sst2, out=out, epochs=1, batch_size=16,
                                              lr=1e-4), command="test", progress=False)
    assert AutoConfig.from_pretrained(out).architectures == ["BertForSequenceClassification"]
    assert recorded_head(AutoConfig.from_pretrained(out)) == TaskHead("sst2", ("0", "1"), trained=True)
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["eval"] == metrics
    model = BertForSequenceClassification.from_pretrained(out)
    from transformers import AutoTokenizer

    assert metrics == evaluate(model, AutoTokenizer.from_pretrained(out), load_examples("sst2", small_sst2, "dev"), 128)
    dump(out, small_sst2, tmp_path / "c", data=small_sst2, limit=None, block_mb=1)
    item = open_cache(tmp_path / "c")[0]
    with torch.no_grad():
        logits = model(input_ids=item["input_ids"][None], token_type_ids=item["token_type_ids"][None]).logits[0]
    torch.testing.assert_close(item["logits"], logits, rtol=1e-4, atol=1e-4)
    again = CliRunner().invoke(cli, ["finetune-teacher", "--task", "sst2", "--data", str(small_sst2),
                                     "--out", str(out)])
    assert again.exit_code == 1 and "already holds a model" in again.output


def test_compare_reports_metric_size_and_speed(tmp_path, small_sst2, tiny_teacher):
    from tests.helpers import save_tiny_teacher

    big = save_tiny_teacher(tmp_path / "big", head=True, layers=6)
    rows = compare_models({"teacher": big, "student": tiny_teacher}, "sst2", small_sst2, "dev", 128,
                          latency_examples=20)
    examples = load_examples("sst2", small_sst2, "dev")
    from transformers import AutoTokenizer

    for row, folder in zip(rows, [big, tiny_teacher], strict=True):
        model = BertForSequenceClassification.from_pretrained(folder).eval()
        assert row["accuracy"] == evaluate(model, AutoTokenizer.from_pretrained(folder), examples, 128)["accuracy"]
        assert row["parameters"] == sum(p.numel() for p in model.parameters())
    assert rows[0]["speedup"] == rows[0]["speedup_batch32"] == 1.0
    assert rows[1]["speedup"] == pytest.approx(rows[0]["latency_ms"] / rows[1]["latency_ms"])
    assert rows[1]["speedup_batch32"] == pytest.approx(rows[0]["latency_ms_batch32"] / rows[1]["latency_ms_batch32"])
    result = CliRunner().invoke(cli, ["compare", "--model", f"teacher={big}", "--model", f"student={tiny_teacher}",
                                      "--task", "sst2", "--data", str(small_sst2)])
    assert result.exit_code == 0 and "speed-up" in result.stdout.splitlines()[0]  # the progress bar is on stderr


def test_latency_is_measured_as_the_task_is_served(tiny_teacher, glue):
    """Batches of 1 and of 32, truncated at the task's --max-seq-len (not a fixed 128)."""
    from transformers import AutoTokenizer

    from student.compare import latency_batches

    examples = load_examples("mrpc", glue / "MRPC", "dev", limit=40)
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    for size, max_len in ((1, 24), (32, 24), (32, 200)):
        batches = latency_batches(tokenizer, examples.texts, examples.pairs, max_len, size)
        assert [len(b["input_ids"]) for b in batches] == ([1] * 40 if size == 1 else [32, 8])
        full = [len(tokenizer(a, b)["input_ids"]) for a, b in zip(examples.texts, examples.pairs, strict=True)]
        longest = [min(max(full[i:i + size]), max_len) for i in range(0, 40, size)]
        assert [b["input_ids"].shape[1] for b in batches] == longest
