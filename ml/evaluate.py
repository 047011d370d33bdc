"""``python -m ml evaluate``: score a labelled tree with the exported model (onnxruntime) and
write ``metrics.json`` (DESIGN.md), plots and per-file scores.

Decisions: an anomaly model flags a window (a file: its mean score) over the card's threshold,
and its confusion matrix is ``normal`` vs ``anomaly``; a classifier decides the most probable
label (a file: of its mean probabilities). Scores for AUC are the model's anomaly scores
(a classifier's: ``1 - p(normal)``), normal vs every other label.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audioclassifier.card import ModelCard
from audioclassifier.errors import AuscultError
from ml.dataset import scan_tree, suffixes
from ml.inference import OnnxModel, card_channels
from ml.metrics import UNKNOWN, level_metrics
from ml.windows import WindowSet, load_windows

__all__ = ["Evaluation", "LabelMismatchError", "check_labels", "evaluate", "format_table", "score_set"]


@dataclass
class Evaluation:
    """Metrics of both levels, where the report went, and the files that failed."""

    metrics: dict[str, dict[str, Any]]
    out: Path | None
    failed: dict[str, str]
    n_files: int
    n_windows: int


def score_set(model: OnnxModel, ws: WindowSet) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs and anomaly scores of every window."""
    out = model.run(ws.x)
    return out, model.scores(out)


def _decisions(model: OnnxModel, out: np.ndarray, scores: np.ndarray) -> np.ndarray:
    card = model.card
    if card.kind == "anomaly":
        return np.where(scores > card.threshold, "anomaly", card.normal_label).astype(object)
    return np.asarray(card.labels, dtype=object)[out.argmax(axis=1)]


def _with_unknown(model: OnnxModel, out: np.ndarray, dec: np.ndarray) -> np.ndarray | None:
    """A classifier's decisions with ``unknown`` under the card's confidence threshold (None: anomaly)."""
    if model.kind == "anomaly":
        return None
    conf = float(model.card.extra.get("confidence_threshold", 0.0))
    return np.where(out.max(axis=1) >= conf, dec, UNKNOWN).astype(object)


def check_labels(card: ModelCard, data_labels: list[str]) -> list[str]:
    """Warnings for labels the card does not know; :class:`LabelMismatchError` when nothing matches."""
    if card.kind == "anomaly":
        if card.normal_label not in data_labels:
            return [f"no '{card.normal_label}' folder (the card's normal label): every file counts as abnormal "
                    f"(labels found: {', '.join(data_labels)})"]
        return []
    new = [x for x in data_labels if x not in card.labels]
    if len(new) == len(data_labels):
        raise LabelMismatchError(f"none of the data's labels ({', '.join(data_labels)}) is among the model's labels "
                                 f"({', '.join(card.labels)}): is this the data the model was made for?")
    return [f"labels {', '.join(new)} are not among the model's ({', '.join(card.labels)}): their files are "
            "always wrong"] if new else []


class LabelMismatchError(AuscultError, ValueError):
    """The data's labels do not match the model's card."""


def _truth(model: OnnxModel, labels: np.ndarray) -> np.ndarray:
    if model.kind == "anomaly":
        return np.where(labels == model.card.normal_label, model.card.normal_label, "anomaly").astype(object)
    return labels


def evaluate(model_path: str | os.PathLike[str], data: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None,
             *, hop_seconds: float | None = None, channel: int | None = None, plots: bool = True,
             sensor: bool | None = None, allow_upsampling: bool = False) -> Evaluation:
    """Evaluate ``model_path`` on the tree ``data``; write the report to ``out_dir`` (if given).

    ``channel`` defaults to the card's channel handling; ``sensor`` to whether the card's model was
    trained on sensor series. Raises :class:`LabelMismatchError` when no data label is the card's."""
    model = OnnxModel(model_path, threads=os.cpu_count() or 1)
    card = model.card
    trained_ch = card_channels(card)
    if channel is None and trained_ch.get("mix") == "channel":
        channel = int(trained_ch["channel"])
    if sensor is None:
        sensor = trained_ch.get("input") == "sensor"
    items = scan_tree(data, sensor=sensor)
    if not items:
        raise FileNotFoundError(f"{data}: no {'/'.join(suffixes(sensor))} files found")
    warnings = check_labels(card, sorted({it.label for it in items}))
    ws = load_windows(items, params=card.features, window_seconds=card.window_seconds,
                      hop_seconds=hop_seconds if hop_seconds is not None else card.window_seconds / 2,
                      channel=channel, sensor=sensor, allow_upsampling=allow_upsampling)
    if not ws.items:
        raise FileNotFoundError(f"{data}: none of the {len(items)} files could be read")
    out, scores = score_set(model, ws)
    lab = ws.labels
    true_w = _truth(model, lab)
    dec_w = _decisions(model, out, scores)
    # file level: mean of the windows
    n_files = len(ws.items)
    counts = np.bincount(ws.file_index, minlength=n_files).astype(np.float64)
    f_scores = np.bincount(ws.file_index, weights=scores, minlength=n_files) / counts
    if model.kind == "anomaly":
        f_out = f_scores
    else:
        f_out = np.stack([np.bincount(ws.file_index, weights=out[:, k], minlength=n_files) / counts
                          for k in range(out.shape[1])], axis=1)
    f_lab = np.array([it.label for it in ws.items], dtype=object)
    true_f = _truth(model, f_lab)
    dec_f = _decisions(model, f_out, f_scores)
    if model.kind == "anomaly":
        labels = [card.normal_label, "anomaly"]
    else:
        labels = list(card.labels) + sorted(set(lab) - set(card.labels))
    metrics: dict[str, Any] = {
        "window": level_metrics(true_w, dec_w, scores, normal_label=card.normal_label, labels=labels,
                                decided=_with_unknown(model, out, dec_w)),
        "file": level_metrics(true_f, dec_f, f_scores, normal_label=card.normal_label, labels=labels,
                              decided=_with_unknown(model, f_out, dec_f) if model.kind != "anomaly" else None),
    }
    if warnings:
        metrics["warnings"] = warnings
    dest = None
    if out_dir is not None:
        dest = Path(out_dir)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        with open(dest / "scores.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "label", "group", "windows", "score", "decision"])
            for i, it in enumerate(ws.items):
                w.writerow([str(it.path), it.label, it.group, int(counts[i]), f"{f_scores[i]:.6g}", dec_f[i]])
        if plots:
            _plots(model, metrics, dest, lab, scores, f_lab, f_scores)
    return Evaluation(metrics, dest, dict(ws.failed), n_files, int(len(ws.x)))


def _plots(model: OnnxModel, metrics: dict[str, Any], dest: Path, lab: np.ndarray, scores: np.ndarray,
           f_lab: np.ndarray, f_scores: np.ndarray) -> None:
    from ml.plots import save_confusion_png, save_roc_png, save_score_histograms_png

    card = model.card
    for level in ("window", "file"):
        m = metrics[level]
        title = f"{level} level, accuracy {m['accuracy']:.3f}" if m["accuracy"] is not None else level
        if "columns" in m:
            title += f", unknown {m['unknown']:.0%}"
        save_confusion_png(m.get("confusion_unknown", m["confusion"]), m["labels"], dest / f"confusion_{level}.png",
                           title=title, columns=m.get("columns"))
    save_roc_png({"windows": (lab != card.normal_label, scores), "files": (f_lab != card.normal_label, f_scores)},
                 dest / "roc.png", title=f"{card.kind} {card.version}: normal vs rest")
    xlabel = "anomaly score" if card.kind == "anomaly" else "1 - p(normal)"
    order = [card.normal_label] + sorted(set(lab) - {card.normal_label})
    save_score_histograms_png({k: scores[lab == k] for k in order if (lab == k).any()}, dest / "histograms.png",
                              threshold=card.threshold, title="window scores per label", xlabel=xlabel)


def format_table(metrics: dict[str, Any]) -> str:
    """A readable summary: one row per level, per-class precision/recall/F1, then the confusion
    matrices (with the ``unknown`` column for a classifier)."""

    def f(v: Any) -> str:
        return "   -  " if v is None else f"{v:6.3f}"

    lines = [f"WARNING: {w}" for w in metrics.get("warnings", [])]
    lines += ["level    auc    pauc   accuracy unknown", "------  ------ ------ -------- -------"]
    for level in ("window", "file"):
        m = metrics[level]
        lines.append(f"{level:6s}  {f(m['auc'])} {f(m['pauc'])} {f(m['accuracy'])}   {f(m.get('unknown'))}")
    for level in ("window", "file"):
        m = metrics[level]
        labels = m["labels"]
        cols = m.get("columns", labels)
        w = max(8, *(len(x) for x in list(labels) + list(cols)))
        lines.append(f"\nper class ({level}): precision recall f1 support")
        for name, pc in m.get("per_class", {}).items():
            lines.append(f"{name:>{w}} {f(pc['precision'])} {f(pc['recall'])} {f(pc['f1'])} {pc['support']:>7d}")
        lines.append(f"\nconfusion ({level}; rows: true, columns: decision)")
        lines.append(" " * (w + 1) + " ".join(f"{x:>{w}}" for x in cols))
        for name, row in zip(labels, m.get("confusion_unknown", m["confusion"])):
            lines.append(f"{name:>{w}} " + " ".join(f"{v:>{w}d}" for v in row))
    return "\n".join(lines)
