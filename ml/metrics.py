"""Detection and classification metrics as DESIGN.md defines them for ``metrics.json``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["MAX_FPR", "binary_auc", "confusion", "level_metrics"]

#: pAUC is the area under the ROC curve for false-positive rates up to this (DCASE's 0.1).
MAX_FPR = 0.1


def binary_auc(y_abnormal: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """``(auc, pauc)`` of scores for abnormal (True) vs normal (False).

    ``pauc`` is sklearn's ``roc_auc_score(max_fpr=0.1)``: the McClish-standardised partial AUC
    (0.5 = chance, 1 = perfect), as the DCASE 2020 baseline's evaluation script computes it.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_abnormal, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.all() or not y.any():
        raise ValueError("AUC needs both normal and abnormal examples")
    return float(roc_auc_score(y, s)), float(roc_auc_score(y, s, max_fpr=MAX_FPR))


def confusion(true: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    """``m[i][j]`` = examples of true ``labels[i]`` decided as ``labels[j]``."""
    pos = {lab: i for i, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(true, pred):
        m[pos[t], pos[p]] += 1
    return m.tolist()


def level_metrics(true: Sequence[str], pred: Sequence[str], scores: np.ndarray, *, normal_label: str,
                  labels: Sequence[str]) -> dict[str, Any]:
    """The five keys of one level of ``metrics.json``: auc, pauc, accuracy, confusion, labels.

    ``auc``/``pauc`` are for ``normal_label`` vs everything else (None when one side is missing);
    ``accuracy`` is the share of decisions ``pred`` equal to ``true``.
    """
    true_a = np.asarray(list(true), dtype=object)
    y = true_a != normal_label
    auc = pauc = None
    if y.any() and (~y).any():
        auc, pauc = binary_auc(y, scores)
    acc = float(np.mean(true_a == np.asarray(list(pred), dtype=object))) if len(true_a) else None
    return {"auc": auc, "pauc": pauc, "accuracy": acc, "confusion": confusion(true, pred, labels), "labels": list(labels)}
