"""GLUE metrics, computed by scikit-learn and scipy (their definitions are the ones GLUE uses)."""

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def glue_metrics(metric: str, predictions: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """The task's metrics; `predictions` are logits (B, C), or (B, 1) for regression.

    F1 is the positive class's (label 1), as GLUE scores MRPC and QQP; Matthews correlation is 0
    when a marginal is empty; Spearman gives ties their average rank.
    """
    if metric == "pearson_spearman":
        scores = predictions[:, 0]
        return {"pearson": float(pearsonr(scores, gold)[0]), "spearman": float(spearmanr(scores, gold)[0])}
    labels = predictions.argmax(-1)
    if metric == "mcc":
        return {"mcc": float(matthews_corrcoef(gold, labels))}
    accuracy = float(accuracy_score(gold, labels))
    if metric == "f1_accuracy":
        return {"f1": float(f1_score(gold, labels, zero_division=0)), "accuracy": accuracy}
    return {"accuracy": accuracy}


MAIN_METRIC = {"accuracy": "accuracy", "f1_accuracy": "f1", "mcc": "mcc", "pearson_spearman": "pearson"}
"""The number each task is ranked by (used to keep the best student)."""
