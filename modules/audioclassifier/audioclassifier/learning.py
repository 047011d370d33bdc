"""On-site learning: a per-machine normal model fitted on the device from the machine's own sound.

A model whose card says ``"learning": {"supported": true, ...}`` has a second ONNX output,
``embedding`` ``(batch, D)`` float32: the standardised window statistics its anomaly score works on.
The module collects the embeddings of the machine's first minutes of (presumed healthy) sound,
fits a :class:`NormalModel` with :func:`fit_normal` and from then on scores every window by its
distance to that machine's own normal sound: a model trained on other machines then only has to
provide the features, not know this machine.

Methods:

* ``knn``: the mean squared distance (per dimension) to the ``k`` nearest stored embeddings. At most
  ``max_references`` embeddings are kept (a greedy k-center coreset: the set that covers the learnt
  sound best), so memory is bounded whatever the learning time.
* ``mahalanobis``: one Gaussian with a Ledoit-Wolf shrunk covariance; the score is the mean squared
  Mahalanobis distance per dimension. Memory ``D * (D + 1)`` floats.

The threshold comes from *cross-fitted* scores: the learning windows are cut into ``folds`` contiguous
blocks, each block is scored by a model fitted on the others (consecutive windows overlap, so a
window must not be scored against its neighbours), and the gamma percentile of those scores
(:func:`audioclassifier.thresholds.gamma_threshold`, the one training and site calibration use)
is the threshold.

Few windows: fewer than :data:`MIN_WINDOWS` windows are refused (:class:`LearningError`), fewer
than :data:`WARN_WINDOWS` give a warning (``NormalModel.warning``, also logged): a threshold on
a few dozen scores is a guess. At one window a second, 30 windows are half a minute of sound.

Serialisation (:meth:`NormalModel.to_bytes`/:meth:`NormalModel.from_bytes`) is an ``.npz`` of plain
arrays (no pickle) with a format version. numpy only: this runs in the edge container.
"""

from __future__ import annotations

import io
import json
import logging
import math
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from audioclassifier.errors import AuscultError

__all__ = [
    "FORMAT_VERSION",
    "METHODS",
    "MIN_WINDOWS",
    "WARN_WINDOWS",
    "LearningError",
    "NormalModel",
    "check_window_count",
    "coreset",
    "fit_normal",
    "ledoit_wolf",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
METHODS = ("knn", "mahalanobis")
#: Fewer windows than this: no threshold is fitted (refused).
MIN_WINDOWS = 5
#: Fewer windows than this: the threshold is fitted, with a warning.
WARN_WINDOWS = 30
_MAGIC = "auscult-normal-model"


class LearningError(AuscultError, ValueError):
    """Bad embeddings, options or serialised bytes: the message says which."""


def check_window_count(n: int, *, what: str = "windows") -> str | None:
    """Refuse (LearningError) fewer than :data:`MIN_WINDOWS`; a warning text under :data:`WARN_WINDOWS`."""
    if n < MIN_WINDOWS:
        raise LearningError(f"a threshold needs at least {MIN_WINDOWS} {what}, got {n}: record more normal sound")
    if n < WARN_WINDOWS:
        return (f"the threshold rests on only {n} {what} (fewer than {WARN_WINDOWS}): "
                "expect false alarms or misses until more normal sound is learnt")
    return None


def _as_embeddings(x: Any, *, dim: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] < 1:
        raise LearningError(f"embeddings must be a (n, D) array, got shape {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise LearningError(f"embeddings have {a.shape[1]} dimensions, the normal model {dim}")
    if not np.isfinite(a).all():
        raise LearningError("embeddings contain NaN or infinity")
    return a


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``(len(a), len(b))``, never negative."""
    d = (a * a).sum(1)[:, None] - 2.0 * a @ b.T + (b * b).sum(1)[None, :]
    return np.maximum(d, 0.0)


def coreset(x: np.ndarray, *, size: int) -> np.ndarray:
    """Indices of a greedy k-center coreset of ``x`` (at most ``size`` rows), deterministic.

    Starts at the row nearest the mean, then repeatedly adds the row farthest from those chosen:
    every row of ``x`` ends up close to a kept one (PatchCore's memory-bank subsampling).
    """
    n = len(x)
    if size >= n:
        return np.arange(n)
    if size < 1:
        raise LearningError(f"coreset size must be >= 1, got {size}")
    first = int(np.argmin(((x - x.mean(0)) ** 2).sum(1)))
    chosen = [first]
    nearest = _sq_dists(x, x[first : first + 1])[:, 0]
    for _ in range(size - 1):
        i = int(np.argmax(nearest))
        chosen.append(i)
        nearest = np.minimum(nearest, _sq_dists(x, x[i : i + 1])[:, 0])
    return np.sort(np.array(chosen, dtype=np.int64))


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(mean, covariance, shrinkage)``: the Ledoit-Wolf estimate (as sklearn's ``LedoitWolf``)."""
    n, p = x.shape
    mu = x.mean(0)
    xc = x - mu
    s = xc.T @ xc / n
    m = float(np.trace(s)) / p
    delta = float(((s - m * np.eye(p)) ** 2).sum()) / p
    beta = (float(((xc * xc).sum(1) ** 2).sum()) - n * float((s * s).sum())) / (n * n * p)
    shrink = 0.0 if delta <= 0 else min(max(beta, 0.0), delta) / delta
    return mu, shrink * m * np.eye(p) + (1.0 - shrink) * s, shrink


@dataclass(frozen=True)
class NormalModel:
    """A machine's fitted normal sound; :meth:`score` is higher for less normal windows."""

    method: str
    refs: np.ndarray  # knn: (M, D) reference embeddings; mahalanobis: (1, D) mean
    precision: np.ndarray  # mahalanobis: (D, D); knn: (0, 0)
    k: int
    n_fitted: int
    threshold: float
    threshold_method: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Embedding dimension D."""
        return int(self.refs.shape[1])

    @property
    def warning(self) -> str | None:
        """Why the threshold is uncertain (too few windows), or None."""
        return self.meta.get("warning")

    def score(self, embeddings: Any) -> np.ndarray:
        """Scores ``(n,)`` of ``(n, D)`` embeddings (float64)."""
        return _score(self.method, self.refs, self.precision, self.k, _as_embeddings(embeddings, dim=self.dim))

    def is_anomalous(self, embeddings: Any) -> np.ndarray:
        """``score > threshold`` per window."""
        return self.score(embeddings) > self.threshold

    def to_bytes(self) -> bytes:
        """An ``.npz`` (no pickle) with the arrays and a JSON header carrying the format version."""
        header = {"magic": _MAGIC, "format": FORMAT_VERSION, "method": self.method, "k": self.k,
                  "n_fitted": self.n_fitted, "threshold": self.threshold,
                  "threshold_method": self.threshold_method, "meta": self.meta}
        buf = io.BytesIO()
        np.savez_compressed(buf, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                            refs=self.refs.astype(np.float32), precision=self.precision.astype(np.float64))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> NormalModel:
        """Read :meth:`to_bytes` output; anything else raises :class:`LearningError` saying why."""
        if not isinstance(data, (bytes, bytearray, memoryview)) or not len(data):
            raise LearningError("not a learnt normal model: no bytes")
        try:
            with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("header", "refs", "precision")}
            header = json.loads(arrays["header"].tobytes().decode())
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
            raise LearningError(f"not a learnt normal model ({type(exc).__name__}: {str(exc)[:120]})") from None
        if not isinstance(header, dict) or header.get("magic") != _MAGIC:
            raise LearningError("not a learnt normal model: wrong header")
        if header.get("format") != FORMAT_VERSION:
            raise LearningError(f"normal model format {header.get('format')!r} is not supported "
                                f"(this module reads format {FORMAT_VERSION}): learn again")
        method, k = header.get("method"), header.get("k")
        refs = arrays["refs"].astype(np.float64)
        prec = arrays["precision"]
        ok = (method in METHODS and isinstance(k, int) and k >= 1 and refs.ndim == 2 and len(refs) >= 1
              and np.isfinite(refs).all() and np.isfinite(prec).all()
              and isinstance(header.get("threshold"), (int, float)) and math.isfinite(header["threshold"]))
        if ok and method == "mahalanobis":
            ok = prec.shape == (refs.shape[1], refs.shape[1]) and len(refs) == 1
        if not ok:
            raise LearningError("not a learnt normal model: inconsistent contents")
        return cls(method=str(method), refs=refs, precision=prec, k=int(k or 1), n_fitted=int(header.get("n_fitted", 0)),
                   threshold=float(header["threshold"]), threshold_method=str(header.get("threshold_method", "")),
                   meta=dict(header.get("meta") or {}))


def _score(method: str, refs: np.ndarray, precision: np.ndarray, k: int, x: np.ndarray) -> np.ndarray:
    d = x.shape[1]
    if method == "mahalanobis":
        z = x - refs[0]
        return np.einsum("ij,jk,ik->i", z, precision, z) / d
    kk = min(k, len(refs))
    out = np.empty(len(x))
    for i in range(0, len(x), 1024):  # bounded memory: (1024, M) distances at a time
        dist = _sq_dists(x[i : i + 1024], refs)
        out[i : i + 1024] = np.partition(dist, kk - 1, axis=1)[:, :kk].mean(1) / d
    return out


def _fit_arrays(method: str, x: np.ndarray, *, k: int, max_references: int) -> tuple[np.ndarray, np.ndarray]:
    if method == "mahalanobis":
        mu, cov, _ = ledoit_wolf(x)
        return mu[None, :], np.linalg.pinv(cov, hermitian=True)
    return x[coreset(x, size=max_references)], np.zeros((0, 0))


def fit_normal(
    embeddings: Any,
    *,
    method: str = "knn",
    k: int = 1,
    max_references: int = 1024,
    folds: int = 5,
    percentile: float = 99.5,
) -> NormalModel:
    """Fit a machine's normal model on its embeddings (time order: row i before row i + 1).

    The threshold is the gamma ``percentile`` of cross-fitted scores (see the module docstring).
    Raises :class:`LearningError` for bad input or fewer than :data:`MIN_WINDOWS` windows.
    """
    from audioclassifier.thresholds import gamma_threshold

    if method not in METHODS:
        raise LearningError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise LearningError(f"k must be an integer >= 1, got {k!r}")
    if isinstance(max_references, bool) or not isinstance(max_references, int) or max_references < k:
        raise LearningError(f"max_references must be an integer >= k ({k}), got {max_references!r}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise LearningError(f"folds must be an integer >= 2, got {folds!r}")
    if not 0 < percentile < 100:
        raise LearningError(f"percentile must be in (0, 100), got {percentile!r}")
    x = _as_embeddings(embeddings)
    n = len(x)
    warning = check_window_count(n, what="learning windows")
    if warning:
        log.warning("%s", warning)
    folds = min(folds, n)
    edges = np.linspace(0, n, folds + 1).round().astype(int)
    held_scores = []
    for a, b in zip(edges[:-1], edges[1:]):
        rest = np.concatenate([x[:a], x[b:]])
        refs, prec = _fit_arrays(method, rest, k=k, max_references=max_references)
        held_scores.append(_score(method, refs, prec, k, x[a:b]))
    scores = np.concatenate(held_scores)
    g = gamma_threshold(scores, percentile=percentile)
    refs, prec = _fit_arrays(method, x, k=k, max_references=max_references)
    how = (f"gamma-p{percentile:g} of {n} cross-fitted learning-window scores ({folds} contiguous folds; "
           f"shape {g.shape:.3g}, scale {g.scale:.3g}, shift {g.shift:.3g})")
    meta: dict[str, Any] = {"folds": folds, "percentile": percentile, "max_references": max_references}
    if warning:
        meta["warning"] = warning
    return NormalModel(method=method, refs=refs, precision=prec, k=k, n_fitted=n, threshold=float(g.threshold),
                       threshold_method=how, meta=meta)
