"""Detection and classification metrics as DESIGN.md defines them for ``metrics.json``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["MAX_FPR", "UNKNOWN", "binary_auc", "confusion", "level_metrics", "per_class"]

#: the decision of a classifier whose top probability is under the card's confidence threshold
UNKNOWN = "unknown"

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


def confusion(true: Sequence[str], pred: Sequence[str], labels: Sequence[str],
              columns: Sequence[str] | None = None) -> list[list[int]]:
    """``m[i][j]`` = examples of true ``labels[i]`` decided as ``columns[j]`` (default: the labels)."""
    cols = list(labels) if columns is None else list(columns)
    pos = {lab: i for i, lab in enumerate(labels)}
    cpos = {lab: j for j, lab in enumerate(cols)}
    m = np.zeros((len(labels), len(cols)), dtype=np.int64)
    for t, p in zip(true, pred):
        m[pos[t], cpos[p]] += 1
    return m.tolist()


def per_class(true: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and support of every label (None where undefined: no decision or no example).

    A decision ``unknown`` counts against recall, never as a false positive of a label."""
    t = np.asarray(list(true), dtype=object)
    p = np.asarray(list(pred), dtype=object)
    out: dict[str, dict[str, Any]] = {}
    for lab in labels:
        tp = int(((t == lab) & (p == lab)).sum())
        n_pred = int((p == lab).sum())
        n_true = int((t == lab).sum())
        prec = tp / n_pred if n_pred else None
        rec = tp / n_true if n_true else None
        f1 = (2 * prec * rec / (prec + rec) if prec is not None and rec is not None and prec + rec > 0
              else (0.0 if prec is not None and rec is not None else None))
        out[lab] = {"precision": None if prec is None else round(prec, 4), "recall": None if rec is None else round(rec, 4),
                    "f1": None if f1 is None else round(f1, 4), "support": n_true}
    return out


def level_metrics(true: Sequence[str], pred: Sequence[str], scores: np.ndarray, *, normal_label: str,
                  labels: Sequence[str], decided: Sequence[str] | None = None) -> dict[str, Any]:
    """One level of ``metrics.json``: auc, pauc, accuracy, confusion, labels, per_class; with
    ``decided`` (the decisions with ``unknown`` under the confidence cut) also ``columns``,
    ``confusion_unknown``, ``unknown`` (its share) and ``accuracy_decided`` (among the rest).

    ``auc``/``pauc`` are for ``normal_label`` vs everything else (None when one side is missing);
    ``accuracy`` is the share of decisions ``pred`` equal to ``true``.
    """
    true_a = np.asarray(list(true), dtype=object)
    y = true_a != normal_label
    auc = pauc = None
    if y.any() and (~y).any():
        auc, pauc = binary_auc(y, scores)
    acc = float(np.mean(true_a == np.asarray(list(pred), dtype=object))) if len(true_a) else None
    out: dict[str, Any] = {"auc": auc, "pauc": pauc, "accuracy": acc, "confusion": confusion(true, pred, labels),
                           "labels": list(labels)}
    if decided is None:
        out["per_class"] = per_class(true_a, list(pred), labels)
        return out
    d = np.asarray(list(decided), dtype=object)
    known = d != UNKNOWN
    out["columns"] = list(labels) + [UNKNOWN]
    out["confusion_unknown"] = confusion(true_a, d, labels, out["columns"])
    out["unknown"] = float((~known).mean()) if len(d) else None
    out["accuracy_decided"] = float((true_a[known] == d[known]).mean()) if known.any() else None
    out["per_class"] = per_class(true_a, d, labels)
    return out
