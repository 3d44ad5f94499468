"""GLUE metrics against values worked out by hand."""

import math

import numpy as np
import pytest

from cache.data.metrics import glue_metrics

GOLD = np.array([1, 1, 0, 0, 1])
PRED = np.array([1, 0, 0, 1, 1])  # tp 2, fn 1, tn 1, fp 1


def logits_for(labels):
    return np.eye(2)[labels]


def test_classification_metrics_by_hand():
    assert glue_metrics("accuracy", logits_for(PRED), GOLD) == {"accuracy": 0.6}
    got = glue_metrics("f1_accuracy", logits_for(PRED), GOLD)
    assert got["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1)) and got["accuracy"] == 0.6
    mcc = (2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2)
    assert glue_metrics("mcc", logits_for(PRED), GOLD)["mcc"] == pytest.approx(mcc)


def test_degenerate_cases():
    everything_positive = np.tile([[0.0, 1.0]], (5, 1))
    assert glue_metrics("mcc", everything_positive, np.array([0, 1, 1, 0, 1]))["mcc"] == 0.0
    assert glue_metrics("f1_accuracy", logits_for(np.zeros(4, int)), np.array([0, 1, 0, 1]))["f1"] == 0.0


def test_regression_metrics_with_ties():
    """Ranks of x with a tie: 1, 2.5, 2.5, 4; of y: 1, 3, 2, 4; their Pearson is 3 / sqrt(10)."""
    x, y = np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0, 4.0])
    got = glue_metrics("pearson_spearman", x[:, None], y)
    assert got["spearman"] == pytest.approx(3 / math.sqrt(10))
    assert got["pearson"] == pytest.approx(np.cov(x, y)[0, 1] / (x.std(ddof=1) * y.std(ddof=1)))
