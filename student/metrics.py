"""GLUE metrics, written out with numpy so each is checkable against its definition."""

import numpy as np


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean(pred == gold))


def f1(pred: np.ndarray, gold: np.ndarray) -> float:
    """F1 of the positive class (label 1), as GLUE scores MRPC and QQP."""
    tp = np.sum((pred == 1) & (gold == 1))
    precision, recall = tp / max(np.sum(pred == 1), 1), tp / max(np.sum(gold == 1), 1)
    return float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0


def matthews(pred: np.ndarray, gold: np.ndarray) -> float:
    """Matthews correlation for binary labels (CoLA); 0 when a marginal is empty."""
    tp, tn = np.sum((pred == 1) & (gold == 1)), np.sum((pred == 0) & (gold == 0))
    fp, fn = np.sum((pred == 1) & (gold == 0)), np.sum((pred == 0) & (gold == 1))
    denominator = np.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    return float((tp * tn - fp * fn) / denominator) if denominator else 0.0


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x, y)[0, 1])


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    return pearson(_ranks(x), _ranks(y))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties given their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def glue_metrics(metric: str, predictions: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """The task's metrics; `predictions` are logits (B, C), or (B, 1) for regression."""
    if metric == "pearson_spearman":
        scores = predictions[:, 0]
        return {"pearson": pearson(scores, gold), "spearman": spearman(scores, gold)}
    labels = predictions.argmax(-1)
    if metric == "mcc":
        return {"mcc": matthews(labels, gold)}
    if metric == "f1_accuracy":
        return {"f1": f1(labels, gold), "accuracy": accuracy(labels, gold)}
    return {"accuracy": accuracy(labels, gold)}


MAIN_METRIC = {"accuracy": "accuracy", "f1_accuracy": "f1", "mcc": "mcc", "pearson_spearman": "pearson"}
"""The number each task is ranked by (used to keep the best student)."""
