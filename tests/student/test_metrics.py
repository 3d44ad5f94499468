"""GLUE metrics against scikit-learn and scipy as independent references."""

import numpy as np
import pytest

from student.metrics import glue_metrics

metrics = pytest.importorskip("sklearn.metrics")
stats = pytest.importorskip("scipy.stats")


def test_classification_metrics():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 200)
    logits = rng.standard_normal((200, 2)) + np.eye(2)[gold] * 0.8
    pred = logits.argmax(1)
    assert glue_metrics("accuracy", logits, gold)["accuracy"] == pytest.approx(metrics.accuracy_score(gold, pred))
    assert glue_metrics("f1_accuracy", logits, gold)["f1"] == pytest.approx(metrics.f1_score(gold, pred))
    assert glue_metrics("mcc", logits, gold)["mcc"] == pytest.approx(metrics.matthews_corrcoef(gold, pred))
    assert glue_metrics("mcc", np.tile([[0.0, 1.0]], (5, 1)), np.array([0, 1, 1, 0, 1]))["mcc"] == 0.0


def test_regression_metrics_with_ties():
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 6, 100).astype(float)  # many ties, as in STS-B
    scores = gold + rng.standard_normal(100)
    got = glue_metrics("pearson_spearman", scores[:, None], gold)
    assert got["pearson"] == pytest.approx(stats.pearsonr(scores, gold)[0])
    assert got["spearman"] == pytest.approx(stats.spearmanr(scores, gold)[0])
