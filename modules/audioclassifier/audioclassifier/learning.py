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

Sustained scores: a machine's own normal sound has short events too (a door, a forklift, a clank), and
a fault persists. With ``sustain`` n > 1 (odd), the score a window gets is the median of the last n
window distances (:func:`sustained` on an array, :class:`Sustained` on a stream; windows before the
first, or before a gap, count as 0): it is over a threshold only when more than half of the last n
windows are. A transient of up to n // 2 windows never raises it, a fault that lasts does, n // 2
windows later.

The threshold comes from *cross-fitted* scores: the learning windows are cut into ``folds`` contiguous
blocks, each block is scored by a model fitted on the others (consecutive windows overlap, so a
window must not be scored against its neighbours), their sustained scores are taken within the
block, and the threshold comes from those: either their gamma ``percentile``
(:func:`audioclassifier.thresholds.gamma_threshold`, the one training and site calibration use),
or, for a target rate of false alerts, ``alerts_per_day`` at one window per ``hop_seconds``, the
score they exceed with probability ``alerts_per_day * hop_seconds / 86400``, extrapolated from
their upper tail (:func:`audioclassifier.thresholds.tail_threshold`; every sustained score over the
threshold is counted as an alert of its own, so the rate is an upper bound).

Accepted sounds (a technician's feedback that an alert was a false alarm, :mod:`audioclassifier.feedback`):
:meth:`NormalModel.accept` adds the alert's windows as a component of the normal model, and a window's
score becomes the lowest of the base model's and the components' scores, against the same threshold:

* ``mahalanobis``: each component is a Gaussian around the accepted windows' mean, with the
  covariance a new window of that sound is expected to have: the windows' own scatter, shrunk
  towards the base model's covariance as if that were D more windows (D: the embedding
  dimension), times ``1 + 1/n`` for the uncertain mean (roughly the predictive covariance under a
  prior centred on the base covariance). Two windows borrow almost all their
  shape from the machine's own normal sound; a few dozen bring their own.
* ``knn``: the accepted windows join the references (a memory bank only grows by what it should cover).

So a sound near an accepted one stops alarming, while sounds away from it (a fault, a fault on top of
the accepted sound) score as before. At most :data:`MAX_ACCEPTED` components of at most
:data:`MAX_ACCEPTED_WINDOWS` windows each: memory stays bounded. :meth:`NormalModel.forget` removes
one (undo).

Few windows: fewer than :data:`MIN_WINDOWS` windows are refused (:class:`LearningError`), fewer
than :data:`WARN_WINDOWS` give a warning (``NormalModel.warning``, also logged): a threshold on
a few dozen scores is a guess. At one window a second, 30 windows are half a minute of sound.

Serialisation (:meth:`NormalModel.to_bytes`/:meth:`NormalModel.from_bytes`) is an ``.npz`` of plain
arrays (no pickle) with a format version; the accepted sounds are two optional arrays (``accepted``,
the windows, and ``accepted_seq``, the alert each row came from) and their list in the header. numpy only: this runs in the edge container.
"""

from __future__ import annotations

import io
import json
import logging
import math
import zipfile
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from audioclassifier.errors import AuscultError

__all__ = [
    "FORMAT_VERSION",
    "MAX_ACCEPTED",
    "MAX_ACCEPTED_WINDOWS",
    "METHODS",
    "MIN_WINDOWS",
    "WARN_WINDOWS",
    "Accepted",
    "LearningError",
    "NormalModel",
    "Sustained",
    "check_window_count",
    "coreset",
    "fit_normal",
    "ledoit_wolf",
    "sustained",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
METHODS = ("knn", "mahalanobis")
#: Fewer windows than this: no threshold is fitted (refused).
MIN_WINDOWS = 5
#: Fewer windows than this: the threshold is fitted, with a warning.
WARN_WINDOWS = 30
#: Accepted sounds (false alarms) a normal model keeps at most, and windows per accepted sound.
MAX_ACCEPTED = 64
MAX_ACCEPTED_WINDOWS = 64
#: Fewer cross-fitted scores than this: a threshold set for a rate of false alerts warns that it errs high
#: (its tail rests on few scores; at one window a second, a 5-minute learning gives about 260).
RATE_SCORES = 200
#: Largest ``sustain`` (windows in a sustained score's median).
MAX_SUSTAIN = 301
_DAY_SECONDS = 86400.0
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


def _check_sustain(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_SUSTAIN or n % 2 == 0:
        raise LearningError(f"sustain must be an odd integer in 1..{MAX_SUSTAIN}, got {n!r}")
    return int(n)


def sustained(scores: Any, n: int) -> np.ndarray:
    """Each window's sustained score: the median of the last ``n`` (odd) scores of ``scores`` (time
    order), the windows before the first counting as 0. ``n`` = 1 returns the scores."""
    n = _check_sustain(n)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if n == 1 or not s.size:
        return s.copy()
    padded = np.concatenate([np.zeros(n - 1), s])
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, n), axis=1)


class Sustained:
    """:func:`sustained` on a stream: :meth:`push` each window's score, :meth:`reset` after a gap
    (a silent window, lost audio: what came before is not this run of sound)."""

    def __init__(self, n: int) -> None:
        self.n = _check_sustain(n)
        self._last: deque[float] = deque(maxlen=self.n)

    def push(self, score: float) -> float:
        """The sustained score with ``score`` as the newest window."""
        self._last.append(float(score))
        if self.n == 1:
            return float(score)
        vals = sorted(self._last)
        k = self.n // 2 - (self.n - len(vals))  # the median of n values, the missing ones 0 (lowest)
        return vals[k] if k >= 0 else 0.0

    def reset(self) -> None:
        self._last.clear()


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
class Accepted:
    """A sound marked normal by a technician (a false alarm): the windows of alert ``seq``, and
    what the feedback said (``meta``: label, note, time, machine)."""

    seq: int
    windows: np.ndarray  # (n, D) float64
    meta: dict[str, Any] = field(default_factory=dict)


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
    accepted: tuple[Accepted, ...] = ()
    sustain: int = 1  # windows in the median of a sustained score (see the module docstring)
    _parts: tuple[tuple[np.ndarray, np.ndarray], ...] = field(init=False, repr=False, compare=False, default=())
    _stacked: tuple[np.ndarray, np.ndarray] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        parts = tuple(self._component(a.windows) for a in self.accepted)
        object.__setattr__(self, "_parts", parts)
        if parts and self.method == "mahalanobis":  # the means (K, D) and precisions (K, D, D), stacked once
            stacked = (np.concatenate([mu for mu, _ in parts]), np.stack([prec for _, prec in parts]))
            object.__setattr__(self, "_stacked", stacked)

    @property
    def dim(self) -> int:
        """Embedding dimension D."""
        return int(self.refs.shape[1])

    @property
    def warning(self) -> str | None:
        """Why the threshold is uncertain (too few windows), or None."""
        return self.meta.get("warning")

    def score(self, embeddings: Any) -> np.ndarray:
        """Scores ``(n,)`` of ``(n, D)`` embeddings (float64): the base model's, or an accepted
        sound's where that is lower."""
        x = _as_embeddings(embeddings, dim=self.dim)
        out = _score(self.method, self.refs, self.precision, self.k, x)
        if self._stacked is not None:  # all the accepted Gaussians at once, in bounded blocks
            mus, precs = self._stacked
            for i in range(0, len(x), 256):
                z = x[None, i : i + 256, :] - mus[:, None, :]  # (K, n, D)
                near = ((z @ precs) * z).sum(-1).min(0) / self.dim
                np.minimum(out[i : i + 256], near, out=out[i : i + 256])
        else:
            for refs, prec in self._parts:
                np.minimum(out, _score(self.method, refs, prec, self.k, x), out=out)
        return out

    # -- accepted sounds (feedback) ---------------------------------------------------------------

    @property
    def accepted_seqs(self) -> list[int]:
        """The alerts whose sound is accepted as normal, oldest first."""
        return [a.seq for a in self.accepted]

    def accept(self, seq: int, windows: Any, meta: dict[str, Any] | None = None) -> NormalModel:
        """This model with alert ``seq``'s windows ``(n, D)`` accepted as normal (replacing an earlier
        acceptance of the same alert). LearningError for bad windows or when :data:`MAX_ACCEPTED`
        sounds are accepted already."""
        x = _as_embeddings(windows, dim=self.dim)
        if not 1 <= len(x) <= MAX_ACCEPTED_WINDOWS:
            raise LearningError(f"an accepted sound has 1 to {MAX_ACCEPTED_WINDOWS} windows, got {len(x)}")
        kept = tuple(a for a in self.accepted if a.seq != seq)
        if len(kept) >= MAX_ACCEPTED:
            raise LearningError(f"{MAX_ACCEPTED} sounds are accepted as normal already: undo one, or learn again")
        return replace(self, accepted=(*kept, Accepted(int(seq), x, dict(meta or {}))))

    def forget(self, seq: int) -> NormalModel:
        """This model without the accepted sound of alert ``seq`` (unchanged if it has none)."""
        return replace(self, accepted=tuple(a for a in self.accepted if a.seq != seq))

    def with_accepted(self, accepted: tuple[Accepted, ...]) -> NormalModel:
        """This model with ``accepted`` (another fit's accepted sounds, after a relearn)."""
        return replace(self, accepted=tuple(a for a in accepted if a.windows.shape[1] == self.dim))

    def _component(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(refs, precision)`` scoring windows against accepted windows ``x`` (see the module docstring)."""
        if self.method != "mahalanobis":
            return x, np.zeros((0, 0))
        n, d = x.shape
        prior = np.linalg.pinv(self.precision, hermitian=True)  # the base model's covariance
        mu = x.mean(0)
        scatter = (x - mu).T @ (x - mu) / n
        cov = (n * scatter + d * prior) / (n + d) * (1.0 + 1.0 / n)  # the prior counts as d windows
        return mu[None, :], np.linalg.pinv(cov, hermitian=True)

    def is_anomalous(self, embeddings: Any) -> np.ndarray:
        """``score > threshold`` per window."""
        return self.score(embeddings) > self.threshold

    def to_bytes(self) -> bytes:
        """An ``.npz`` (no pickle) with the arrays and a JSON header carrying the format version."""
        header = {"magic": _MAGIC, "format": FORMAT_VERSION, "method": self.method, "k": self.k,
                  "n_fitted": self.n_fitted, "threshold": self.threshold,
                  "threshold_method": self.threshold_method, "meta": self.meta, "sustain": self.sustain,
                  "accepted": [{"seq": a.seq, "n": len(a.windows), "meta": a.meta} for a in self.accepted]}
        arrays: dict[str, Any] = {}
        if self.accepted:
            arrays["accepted"] = np.concatenate([a.windows for a in self.accepted]).astype(np.float32)
            arrays["accepted_seq"] = np.concatenate([np.full(len(a.windows), a.seq, np.int64) for a in self.accepted])
        buf = io.BytesIO()
        np.savez_compressed(buf, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                            refs=self.refs.astype(np.float32), precision=self.precision.astype(np.float64), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> NormalModel:
        """Read :meth:`to_bytes` output; anything else raises :class:`LearningError` saying why."""
        if not isinstance(data, (bytes, bytearray, memoryview)) or not len(data):
            raise LearningError("not a learnt normal model: no bytes")
        try:
            with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("header", "refs", "precision")}
                arrays.update({k: z[k] for k in ("accepted", "accepted_seq") if k in z.files})
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
        sustain = header.get("sustain", 1)  # absent: a model learnt before sustained scores
        try:
            sustain = _check_sustain(sustain) if isinstance(sustain, int) else None
        except LearningError:
            sustain = None
        ok = ok and sustain is not None
        if ok and method == "mahalanobis":
            ok = prec.shape == (refs.shape[1], refs.shape[1]) and len(refs) == 1
        accepted = _read_accepted(header.get("accepted") or [], arrays, refs.shape[1]) if ok else None
        if not ok or accepted is None:
            raise LearningError("not a learnt normal model: inconsistent contents")
        return cls(method=str(method), refs=refs, precision=prec, k=int(k or 1), n_fitted=int(header.get("n_fitted", 0)),
                   threshold=float(header["threshold"]), threshold_method=str(header.get("threshold_method", "")),
                   meta=dict(header.get("meta") or {}), accepted=accepted, sustain=int(sustain or 1))


def _read_accepted(listed: Any, arrays: dict[str, np.ndarray], dim: int) -> tuple[Accepted, ...] | None:
    """The accepted sounds of a serialised model, or None when the arrays and the header disagree."""
    rows, seqs = arrays.get("accepted"), arrays.get("accepted_seq")
    if not listed:
        return () if rows is None else None
    if (rows is None or seqs is None or not isinstance(listed, list) or rows.ndim != 2 or rows.shape[1] != dim
            or seqs.shape != (len(rows),) or not np.isfinite(rows).all()):
        return None
    out, start = [], 0
    for item in listed:
        n = item.get("n") if isinstance(item, dict) else None
        seq = item.get("seq") if isinstance(item, dict) else None
        if not (isinstance(n, int) and 1 <= n <= MAX_ACCEPTED_WINDOWS and isinstance(seq, int)) \
                or start + n > len(rows) or not (seqs[start:start + n] == seq).all():
            return None
        out.append(Accepted(seq, rows[start:start + n].astype(np.float64), dict(item.get("meta") or {})))
        start += n
    return tuple(out) if start == len(rows) and len(out) <= MAX_ACCEPTED else None


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
    percentile: float | None = 99.5,
    alerts_per_day: float | None = None,
    hop_seconds: float = 1.0,
    sustain: int = 1,
) -> NormalModel:
    """Fit a machine's normal model on its embeddings (time order: row i before row i + 1).

    The threshold comes from cross-fitted sustained scores (see the module docstring): their gamma
    ``percentile``, or, when ``alerts_per_day`` is given, their tail extrapolated to the exceedance
    that rate implies at one window per ``hop_seconds``. ``sustain`` (odd) is lowered, to the largest odd number that
    fits, when the folds are shorter than twice it (said in ``meta["sustain_note"]``).
    Raises :class:`LearningError` for bad input or fewer than :data:`MIN_WINDOWS` windows.
    """
    from audioclassifier.thresholds import gamma_threshold, tail_threshold

    if method not in METHODS:
        raise LearningError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise LearningError(f"k must be an integer >= 1, got {k!r}")
    if isinstance(max_references, bool) or not isinstance(max_references, int) or max_references < k:
        raise LearningError(f"max_references must be an integer >= k ({k}), got {max_references!r}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise LearningError(f"folds must be an integer >= 2, got {folds!r}")
    sustain = _check_sustain(sustain)
    if alerts_per_day is not None:
        if not (isinstance(hop_seconds, (int, float)) and 0 < hop_seconds <= 3600):
            raise LearningError(f"hop_seconds must be in (0, 3600], got {hop_seconds!r}")
        if not (isinstance(alerts_per_day, (int, float)) and 0 < alerts_per_day < _DAY_SECONDS / hop_seconds):
            raise LearningError(f"alerts_per_day must be > 0 and under one per window, got {alerts_per_day!r}")
        percentile = 100.0 * (1.0 - alerts_per_day * hop_seconds / _DAY_SECONDS)
    if percentile is None or not 0 < percentile < 100:
        raise LearningError(f"percentile must be in (0, 100), got {percentile!r}")
    x = _as_embeddings(embeddings)
    n = len(x)
    warning = check_window_count(n, what="learning windows")
    if warning:
        log.warning("%s", warning)
    folds = min(folds, n)
    edges = np.linspace(0, n, folds + 1).round().astype(int)
    shortest = int(np.diff(edges).min())
    fitted_sustain = sustain if shortest >= 2 * sustain else max(1, (shortest // 2 - 1) | 1)
    held_scores = []
    for a, b in zip(edges[:-1], edges[1:]):
        rest = np.concatenate([x[:a], x[b:]])
        refs, prec = _fit_arrays(method, rest, k=k, max_references=max_references)
        block = _score(method, refs, prec, k, x[a:b])
        held_scores.append(sustained(block, fitted_sustain)[fitted_sustain - 1:])  # full medians only
    scores = np.concatenate(held_scores)
    refs, prec = _fit_arrays(method, x, k=k, max_references=max_references)
    what = "scores" if fitted_sustain == 1 else f"sustained scores (median of {fitted_sustain} windows)"
    if alerts_per_day is None:
        g = gamma_threshold(scores, percentile=percentile)
        threshold = g.threshold
        how = (f"gamma-p{percentile:.6g} of {len(scores)} cross-fitted learning-window {what} from {n} windows "
               f"({folds} contiguous folds; shape {g.shape:.3g}, scale {g.scale:.3g}, shift {g.shift:.3g})")
    else:
        t = tail_threshold(scores, probability=alerts_per_day * hop_seconds / _DAY_SECONDS)
        threshold = t.threshold
        how = (f"at most {alerts_per_day:g} false alerts a day at a {hop_seconds:g} s hop: exceeded with P = "
               f"{t.probability:.3g} by {len(scores)} cross-fitted learning-window {what} from {n} windows "
               f"({folds} contiguous folds), extrapolated from their {t.exceedances} highest over {t.base:.4g} "
               f"(mean excess bound {t.mean_excess:.3g})")
    meta: dict[str, Any] = {"folds": folds, "percentile": percentile, "max_references": max_references}
    if alerts_per_day is not None:
        meta.update(alerts_per_day=alerts_per_day, hop_seconds=hop_seconds)
    if alerts_per_day is not None and len(scores) < RATE_SCORES:
        short = (f"the threshold for {alerts_per_day:g} false alerts a day rests on {n} learning windows, so it is "
                 f"set high to be safe (faint faults are found later): learn for {RATE_SCORES // 60 + 1} minutes or more")
        warning = f"{warning}; {short}" if warning else short
        log.warning("%s", short)
    if fitted_sustain != sustain:
        meta["sustain_note"] = (f"sustained over {fitted_sustain} windows, not {sustain}: {n} learning windows "
                                f"make folds of {shortest}")
    if warning:
        meta["warning"] = warning
    return NormalModel(method=method, refs=refs, precision=prec, k=k, n_fitted=n, threshold=float(threshold),
                       threshold_method=how, meta=meta, sustain=fitted_sustain)
