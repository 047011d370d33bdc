"""``python -m ml cluster``: propose fault types for unlabelled abnormal clips.

Each clip becomes a vector of log-mel statistics (per band: mean and spread over time, the same
front end as the models), standardised and reduced with PCA; KMeans groups them, with the number
of clusters chosen by silhouette when not given (a reference system ran PCA + KMeans on abnormal
spectrograms the same way). The proposals are a starting point for a person to listen to and
name, not labels.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audioclassifier.audio_io import AudioFileError, load_audio
from audioclassifier.features import LogMelParams, logmel
from ml.dataset import find_audio

__all__ = ["ClusterResult", "cluster", "clip_features"]


@dataclass
class ClusterResult:
    """Assignments, the chosen k, and the agreement with folder names when there are any."""

    paths: list[Path]
    clusters: np.ndarray
    k: int
    silhouette: float
    xy: np.ndarray
    folder_labels: list[str]
    adjusted_rand: float | None
    failed: dict[str, str]


def clip_features(y: np.ndarray, params: LogMelParams) -> np.ndarray:
    """Per-band mean and standard deviation over time of a clip's log-mel (2 * n_mels values)."""
    s = logmel(y, params=params)
    if s.shape[1] == 0:
        raise ValueError("shorter than one FFT frame")
    return np.concatenate([s.mean(axis=1), s.std(axis=1)])


def cluster(input_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, k: int | None = None,
            max_k: int = 8, seed: int = 0, params: LogMelParams = LogMelParams(),
            channel: int | None = None) -> ClusterResult:
    """Cluster every audio file under ``input_dir``; write ``clusters.csv`` and ``scatter.png``."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score, silhouette_score
    from sklearn.preprocessing import StandardScaler

    root = Path(input_dir)
    files = find_audio(root)
    feats, paths, failed = [], [], {}
    for f in files:
        try:
            feats.append(clip_features(load_audio(f, sample_rate=params.sample_rate, channel=channel), params))
            paths.append(f)
        except (AudioFileError, ValueError) as exc:
            failed[str(f)] = exc.reason if isinstance(exc, AudioFileError) else str(exc)
    if len(paths) < 3:
        raise ValueError(f"{root}: need at least 3 readable clips to cluster, got {len(paths)}")
    x = StandardScaler().fit_transform(np.asarray(feats))
    pca = PCA(n_components=min(10, len(paths) - 1, x.shape[1]), random_state=seed).fit(x)
    z = pca.transform(x)
    candidates = [k] if k else list(range(2, min(max_k, len(paths) - 1) + 1))
    best = None
    for kk in candidates:
        km = KMeans(n_clusters=kk, n_init=10, random_state=seed).fit(z)
        sil = float(silhouette_score(z, km.labels_)) if 1 < kk < len(paths) else 0.0
        if best is None or sil > best[0]:
            best = (sil, kk, km.labels_)
    assert best is not None
    sil, kk, lab = best
    # name clusters by size: fault_A is the largest
    order = np.argsort(-np.bincount(lab, minlength=kk), kind="stable")
    rank = np.empty(kk, dtype=np.int64)
    rank[order] = np.arange(kk)
    lab = rank[lab]
    base = root if root.is_dir() else root.parent
    folder = [p.relative_to(base).parts[0] if len(p.relative_to(base).parts) > 1 else "" for p in paths]
    ari = float(adjusted_rand_score(folder, lab)) if len(set(folder)) > 1 else None
    xy = z[:, :2] if z.shape[1] >= 2 else np.column_stack([z[:, 0], np.zeros(len(z))])
    dest = Path(out_dir)
    dest.mkdir(parents=True, exist_ok=True)
    names = [f"fault_{chr(ord('A') + int(c))}" if c < 26 else f"fault_{int(c)}" for c in lab]
    with open(dest / "clusters.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "cluster", "proposed_label", "folder", "pc1", "pc2"])
        for p, c, n, fo, (a, b) in zip(paths, lab, names, folder, xy):
            w.writerow([str(p), int(c), n, fo, f"{a:.4f}", f"{b:.4f}"])
    from ml.plots import save_scatter_png

    ev = pca.explained_variance_ratio_
    save_scatter_png(xy, names, dest / "scatter.png",
                     title=f"{len(paths)} clips, k={kk} (silhouette {sil:.2f})"
                     + (f", ARI vs folders {ari:.2f}" if ari is not None else ""),
                     xlabel=f"PC 1 ({ev[0]:.0%})", ylabel=f"PC 2 ({ev[1]:.0%})" if len(ev) > 1 else "PC 2")
    return ClusterResult(paths, lab, kk, sil, xy, folder, ari, failed)
