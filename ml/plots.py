"""Figures the toolkit writes: spectrogram images (more plots join as verbs need them)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on build machines or devices
import matplotlib.pyplot as plt
import numpy as np

from audioclassifier.features import LogMelParams, mel_frequencies

__all__ = ["plot_logmel", "save_spectrogram_png"]


def plot_logmel(ax: plt.Axes, s_db: np.ndarray, *, params: LogMelParams, t0: float = 0.0) -> matplotlib.image.AxesImage:
    """Draw a ``(n_mels, T)`` dB log-mel on ``ax`` with seconds and Hz axes (mel-spaced rows)."""
    n_mels, n = s_db.shape
    hop_s = params.hop_length / params.sample_rate
    frame_s = params.n_fft / params.sample_rate
    extent = (t0, t0 + (n - 1) * hop_s + frame_s if n else t0 + frame_s, -0.5, n_mels - 0.5)
    im = ax.imshow(s_db, origin="lower", aspect="auto", extent=extent, cmap="magma", interpolation="nearest")
    centers = mel_frequencies(n_mels=n_mels + 2, fmin=float(params.fmin), fmax=params.fmax_hz)[1:-1]
    ticks = np.linspace(0, n_mels - 1, 6).round().astype(int)
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"{centers[i] / 1000:.1f}k" if centers[i] >= 1000 else f"{centers[i]:.0f}" for i in ticks])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz, mel scale)")
    return im


def save_spectrogram_png(
    s_db: np.ndarray, path: str | os.PathLike[str], *, params: LogMelParams, title: str = "", dpi: int = 80,
    db_range: tuple[float, float] | None = None,
) -> Path:
    """Write a log-mel spectrogram image with time and frequency axes and a dB colour bar;
    ``db_range`` fixes the colour scale (images of a tree then compare), else the image's own."""
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=dpi)
    try:
        im = plot_logmel(ax, s_db, params=params)
        if db_range is not None:
            im.set_clim(*db_range)
        fig.colorbar(im, ax=ax, label="dB")
        if title:
            ax.set_title(title, fontsize=9)
        fig.tight_layout()
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(dest)
    finally:
        plt.close(fig)
    return dest


# --- evaluation and clustering figures (``evaluate``, ``cluster``) ---------------------------


def _save(fig: plt.Figure, path: str | os.PathLike[str]) -> Path:
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.tight_layout()
        fig.savefig(dest)
    finally:
        plt.close(fig)
    return dest


def save_confusion_png(matrix: list[list[int]], labels: list[str], path: str | os.PathLike[str], *,
                       title: str = "", xlabel: str = "decision", ylabel: str = "true label",
                       columns: list[str] | None = None) -> Path:
    """A confusion matrix with counts in the cells and rows shaded by their share; ``columns``
    names the decisions when they differ from the rows (e.g. an ``unknown`` column)."""
    m = np.asarray(matrix, dtype=np.float64)
    cols = list(labels) if columns is None else list(columns)
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n, k = len(labels), len(cols)
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * k, 1.0 + 0.7 * n), dpi=90)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(k):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", color="white" if share[i, j] > 0.6 else "black")
    ax.set_xticks(range(k))
    ax.set_xticklabels(cols, rotation=30, ha="right")
    ax.set_yticks(range(n))
    ax.set_yticklabels(labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def save_training_curves_png(history: list[dict[str, float]], path: str | os.PathLike[str], *, title: str = "") -> Path:
    """Loss and accuracy per epoch (training and validation), side by side."""
    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2), dpi=90)
    for key, ax in (("train_loss", a1), ("val_loss", a1), ("train_acc", a2), ("val_acc", a2),
                    ("val_balanced_acc", a2)):
        if all(key in h for h in history):
            ax.plot(ep, [h[key] for h in history], marker="o", ms=3, label=key.replace("_", " "))
    a1.set_xlabel("epoch")
    a1.set_ylabel("loss")
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy")
    a2.set_ylim(0, 1.01)
    for ax in (a1, a2):
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def save_roc_png(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike[str], *,
                 title: str = "", max_fpr: float = 0.1) -> Path:
    """ROC curves (name → (abnormal flags, scores)) with their AUC, and the pAUC region shaded."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=90)
    ax.axvspan(0, max_fpr, color="0.92", label=f"pAUC region (FPR <= {max_fpr:g})")
    for name, (y, s) in curves.items():
        y = np.asarray(y, dtype=bool)
        if y.all() or not y.any():
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], ls=":", color="0.5")
    ax.set_xlabel("false-positive rate (normal flagged)")
    ax.set_ylabel("true-positive rate (abnormal flagged)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def save_score_histograms_png(scores_by_label: dict[str, np.ndarray], path: str | os.PathLike[str], *,
                              threshold: float | None = None, title: str = "", xlabel: str = "score") -> Path:
    """Overlaid score histograms, one per label, with the decision threshold."""
    fig, ax = plt.subplots(figsize=(6, 3.4), dpi=90)
    allv = np.concatenate([np.asarray(v, dtype=np.float64) for v in scores_by_label.values()]) if scores_by_label else np.zeros(1)
    lo, hi = np.percentile(allv, [0, 99.5]) if allv.size else (0.0, 1.0)
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    log_x = bool(allv.size) and float(allv.min()) > 0 and hi / max(float(allv.min()), 1e-12) > 30
    if log_x:  # scores over decades: a linear axis squashes the normal ones against zero
        lo = float(allv.min())
        bins = np.geomspace(lo, hi if hi > lo else lo * 10, 40)
        ax.set_xscale("log")
    else:
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 40)
    for name, v in scores_by_label.items():
        ax.hist(np.clip(v, bins[0], bins[-1]), bins=bins, alpha=0.5, label=f"{name} ({len(v)})", density=True)
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.3g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def save_scatter_png(xy: np.ndarray, groups: list[str], path: str | os.PathLike[str], *, title: str = "",
                     xlabel: str = "PC 1", ylabel: str = "PC 2") -> Path:
    """A 2-D scatter, one colour per group (e.g. proposed cluster)."""
    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=90)
    g = np.asarray(groups, dtype=object)
    for name in sorted(set(groups)):
        pts = xy[g == name]
        ax.scatter(pts[:, 0], pts[:, 1], s=14, alpha=0.8, label=f"{name} ({len(pts)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)
