"""``python -m ml cluster``: propose fault types for unlabelled abnormal clips.

Each clip becomes a vector of log-mel statistics (per band: mean and spread over time, the same
front end as the models), standardised and reduced with PCA; KMeans groups them (a reference
system ran PCA + KMeans on abnormal spectrograms the same way). The proposals are a starting point
for a person to listen to and name, not labels.

The number of groups, when not given, is chosen so that it does not over-split
(:func:`choose_k`): picking the k of the highest silhouette made k=6 with a singleton of 20 MIMII
clips that k=2 separates exactly. Now a clip alone is an outlier, not a fault type: partitions
with tiny groups are not considered, and among the others the gap statistic (Tibshirani, Walther
and Hastie 2001) with its one-standard-error rule keeps the smallest k the data support, one
group included.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audioclassifier.audio_io import AudioFileError
from audioclassifier.errors import AuscultError
from audioclassifier.features import LogMelParams, logmel
from ml.dataset import find_audio
from ml.windows import read_signal

__all__ = ["ClusterError", "ClusterResult", "KChoice", "choose_k", "cluster", "clip_features"]

#: below this silhouette (Kaufman and Rousseeuw) the structure is weak: said in the output
WEAK_SILHOUETTE = 0.25
#: reference data sets of the gap statistic
GAP_REFERENCES = 20


class ClusterError(AuscultError, ValueError):
    """Clustering cannot run on this input (too few readable clips, bad options)."""


@dataclass
class KChoice:
    """The chosen k, its assignments, and every candidate's figures (the table printed and saved)."""

    k: int
    labels: np.ndarray
    silhouette: float
    how: str
    table: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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
    how: str = ""
    table: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def clip_features(y: np.ndarray, params: LogMelParams) -> np.ndarray:
    """Per-band mean and standard deviation over time of a clip's log-mel (2 * n_mels values)."""
    s = logmel(y, params=params)
    if s.shape[1] == 0:
        raise ValueError("shorter than one FFT frame")
    return np.concatenate([s.mean(axis=1), s.std(axis=1)])


def _gap(z: np.ndarray, inertia: dict[int, float], ks: list[int], seed: int) -> dict[int, tuple[float, float]]:
    """Gap statistic and its standard error for each k: log within-cluster dispersion of uniform
    reference data in the box of the (PCA-aligned) data, less that of the data."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(seed)
    lo, hi = z.min(axis=0), z.max(axis=0)
    refs = [rng.uniform(lo, hi, size=z.shape) for _ in range(GAP_REFERENCES)]
    out = {}
    for k in ks:
        logs = np.array([np.log(max(KMeans(n_clusters=k, n_init=1, random_state=seed + b).fit(r).inertia_, 1e-12))
                         for b, r in enumerate(refs)])
        out[k] = (float(logs.mean() - np.log(max(inertia[k], 1e-12))),
                  float(logs.std() * math.sqrt(1 + 1 / GAP_REFERENCES)))
    return out


def choose_k(z: np.ndarray, *, max_k: int = 8, seed: int = 0, min_size: int | None = None) -> KChoice:
    """:func:`_choose_k` on one BLAS/OpenMP thread: the many small KMeans fits ran 8x slower with a
    thread per core on a busy 2-core machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _choose_k(z, max_k=max_k, seed=seed, min_size=min_size)


def _choose_k(z: np.ndarray, *, max_k: int, seed: int, min_size: int | None) -> KChoice:
    """The number of groups of the rows of ``z`` by a rule that does not over-split.

    KMeans for k = 1..``max_k``. A partition with a group of fewer than ``min_size`` clips
    (default: 2, or 5 % of the clips when that is more) is not admissible: a clip alone is an
    outlier, not a fault type. Among the admissible ones, the gap statistic's one-standard-error
    rule (Tibshirani, Walther and Hastie 2001): the smallest k whose gap is at least the next
    admissible k's gap less its standard error. So k = 1 (no group structure) is a possible answer,
    and a larger k must earn its place by more than the noise of the reference draws.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(z)
    if n < 3:
        raise ClusterError(f"need at least 3 clips to choose a number of groups, got {n}")
    min_size = max(2, math.ceil(0.05 * n)) if min_size is None else min_size
    ks = list(range(1, min(max_k, n - 1) + 1))
    fits = {k: KMeans(n_clusters=k, n_init=10, random_state=seed).fit(z) for k in ks}
    smallest = {k: int(np.bincount(fits[k].labels_, minlength=k).min()) for k in ks}
    ok = [k for k in ks if k == 1 or smallest[k] >= min_size]
    gap = _gap(z, {k: float(fits[k].inertia_) for k in ok}, ok, seed)
    table: list[dict[str, Any]] = []
    for k in ks:
        row: dict[str, Any] = {"k": k, "smallest": smallest[k],
                               "silhouette": round(float(silhouette_score(z, fits[k].labels_)), 4) if k > 1 else None,
                               "admissible": k in ok}
        if k in gap:
            row["gap"], row["gap_se"] = round(gap[k][0], 4), round(gap[k][1], 4)
        table.append(row)
    k = ok[-1]
    for a, b in zip(ok, ok[1:]):
        if gap[a][0] >= gap[b][0] - gap[b][1]:
            k = a
            break
    nxt = ok[ok.index(k) + 1] if k != ok[-1] else None
    how = (f"gap statistic, one-standard-error rule: gap({k}) {gap[k][0]:.3f} >= gap({nxt}) - s({nxt}) "
           f"{gap[nxt][0] - gap[nxt][1]:.3f}" if nxt is not None else
           f"gap statistic: the largest k without a group under {min_size} clips")
    how += f"; partitions with a group under {min_size} clips not considered"
    notes: list[str] = []
    if k == 1:
        notes.append("no group structure found: the clips are proposed as one group (--k to force a split)")
    sil = 0.0 if k == 1 else float(silhouette_score(z, fits[k].labels_))
    if k > 1 and sil < WEAK_SILHOUETTE:
        notes.append(f"weak structure: silhouette {sil:.2f} < {WEAK_SILHOUETTE} (the groups overlap)")
    return KChoice(k, np.asarray(fits[k].labels_, dtype=np.int64), sil, how, table, notes)


def cluster(input_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, k: int | None = None,
            max_k: int = 8, seed: int = 0, params: LogMelParams = LogMelParams(),
            channel: int | None = None, sensor: bool = False, min_size: int | None = None) -> ClusterResult:
    """Cluster every audio (with ``sensor``, series) file under ``input_dir``; write ``clusters.csv``,
    ``choice.csv`` (the candidates' figures) and ``scatter.png``."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score, silhouette_score
    from sklearn.preprocessing import StandardScaler

    root = Path(input_dir)
    files = find_audio(root, sensor=sensor)
    feats, paths, failed = [], [], {}
    for f in files:
        try:
            feats.append(clip_features(read_signal(f, params=params, channel=channel, sensor=sensor), params))
            paths.append(f)
        except (AudioFileError, ValueError) as exc:
            failed[str(f)] = exc.reason if isinstance(exc, AudioFileError) else str(exc)
    if len(paths) < 3:
        raise ClusterError(f"{root}: need at least 3 readable clips to cluster, got {len(paths)}")
    if k is not None and not 1 <= k < len(paths):
        raise ClusterError(f"--k {k}: must be between 1 and the number of clips less one ({len(paths) - 1})")
    x = StandardScaler().fit_transform(np.asarray(feats))
    pca = PCA(n_components=min(10, len(paths) - 1, x.shape[1]), random_state=seed).fit(x)
    z = pca.transform(x)
    if k:
        lab = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(z).labels_ if k > 1 else np.zeros(len(z), int)
        sil = float(silhouette_score(z, lab)) if k > 1 else 0.0
        choice = KChoice(k, np.asarray(lab, dtype=np.int64), sil, "given by --k")
    else:
        choice = choose_k(z, max_k=max_k, seed=seed, min_size=min_size)
    kk, lab = choice.k, choice.labels
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
    if choice.table:
        cols = ["k", "silhouette", "smallest", "admissible", "gap", "gap_se"]
        with open(dest / "choice.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols, restval="")
            w.writeheader()
            w.writerows(choice.table)
    from ml.plots import save_scatter_png

    ev = pca.explained_variance_ratio_
    save_scatter_png(xy, names, dest / "scatter.png",
                     title=f"{len(paths)} clips, k={kk} (silhouette {choice.silhouette:.2f})"
                     + (f", ARI vs folders {ari:.2f}" if ari is not None else ""),
                     xlabel=f"PC 1 ({ev[0]:.0%})", ylabel=f"PC 2 ({ev[1]:.0%})" if len(ev) > 1 else "PC 2")
    return ClusterResult(paths, lab, kk, choice.silhouette, xy, folder, ari, failed, choice.how, choice.table,
                         choice.notes)
