"""The anomaly threshold from scores of normal sound: a gamma fit and its percentile point, or,
for a rare exceedance (a target of false alerts per day), its upper tail extrapolated.

One implementation for both places that set a threshold: training (``ml/train.py``, on normal
validation windows of other machines) and site calibration on the device
(:mod:`audioclassifier.calibration`, on a few minutes of the machine's own healthy sound).
The fit needs no scipy (the edge runtime does without it): the location-fixed maximum-likelihood
shape solves ``log(a) - digamma(a) = log(mean) - mean(log)`` (what ``scipy.stats.gamma.fit(...,
floc=0)`` solves), and the percentile point inverts the regularised incomplete gamma function by
Newton's method. Both agree with scipy to 1e-9 (``tests/unit/test_thresholds.py``).

:func:`tail_threshold` is for probabilities far below 1/n, where a gamma fitted to the bulk says
little: normal sound with short loud events has a heavier upper tail than one gamma (measured on
sustained learning scores, the gamma's p99.9988 was exceeded 6 to 20 times too often). It is the
peaks-over-threshold method with exponential excesses (the Gumbel domain the gamma belongs to):
above the scores' upper ``tail_fraction`` quantile ``u``, ``P(S > u + x) = tail_fraction *
exp(-x / m)``, with ``m`` the excesses' mean taken at its upper ``confidence`` bound (their sum
over the gamma quantile of their count), so a short learning errs towards fewer false alerts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

__all__ = ["GammaThreshold", "TailThreshold", "gamma_threshold", "tail_threshold"]


@dataclass(frozen=True)
class GammaThreshold:
    """A threshold at ``percentile`` of a gamma distribution fitted to normal scores.

    As the DCASE 2023 Task 2 baseline does: scores of normal sound are positive and right-skewed,
    a gamma fits them well, and its percentile is steadier than the empirical one on a few
    hundred windows. Scores that can be negative (a log-likelihood) are shifted to start just
    below zero first (``shift``).
    """

    threshold: float
    percentile: float
    shape: float
    scale: float
    shift: float
    n: int

    @property
    def method(self) -> str:
        """What the card's ``threshold_method`` says."""
        return (f"gamma-p{self.percentile:g} on {self.n} normal validation window scores "
                f"(shape {self.shape:.3g}, scale {self.scale:.3g}, shift {self.shift:.3g})")


def gamma_threshold(scores: np.ndarray, *, percentile: float = 90.0) -> GammaThreshold:
    """Fit a gamma (location fixed) to normal scores and return its ``percentile`` point.

    Non-finite scores are dropped; fewer than 3 left or a percentile outside (0, 100) raise
    ValueError.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    s = s[np.isfinite(s)]
    if s.size < 3:
        raise ValueError(f"need at least 3 finite normal validation scores to fit a threshold, got {s.size}")
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    spread = float(s.max() - s.min()) or 1.0
    shift = 0.0 if s.min() > 0 else float(s.min() - 1e-3 * spread)
    z = s - shift
    if np.ptp(z) <= 1e-12 * max(1.0, float(z.mean())):
        # constant scores: no spread to fit; put the threshold just above them
        return GammaThreshold(float(s.max() + 1e-6 * max(1.0, abs(s.max()))), percentile, float("inf"), 0.0, shift, s.size)
    shape = gamma_shape_mle(z)
    scale = float(z.mean()) / shape
    t = gamma_ppf(percentile / 100.0, shape) * scale + shift
    return GammaThreshold(t, percentile, shape, scale, shift, int(s.size))


@dataclass(frozen=True)
class TailThreshold:
    """The score exceeded with ``probability``, extrapolated from the scores' upper tail (see the module docstring)."""

    threshold: float
    probability: float
    base: float  # u: the scores' upper tail_fraction quantile
    mean_excess: float  # m: the excesses' mean at its upper confidence bound
    exceedances: int  # scores over u
    n: int

    @property
    def method(self) -> str:
        return (f"tail extrapolation to P = {self.probability:.3g} of {self.n} scores ({self.exceedances} over "
                f"{self.base:.4g}, mean excess bound {self.mean_excess:.3g})")


def tail_threshold(scores: np.ndarray, *, probability: float, tail_fraction: float = 0.1,
                   confidence: float = 0.95) -> TailThreshold:
    """The threshold normal scores exceed with ``probability`` (see the module docstring).

    At least 5 scores of the tail are used (more than ``tail_fraction`` of few scores); a
    ``probability`` at or above the tail's is the empirical quantile. Non-finite scores are
    dropped; fewer than 5 left, or a probability, tail fraction or confidence outside (0, 1),
    raise ValueError.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    s = s[np.isfinite(s)]
    if s.size < 5:
        raise ValueError(f"need at least 5 finite normal scores to extrapolate a tail, got {s.size}")
    for name, v in (("probability", probability), ("tail_fraction", tail_fraction), ("confidence", confidence)):
        if not 0 < v < 1:
            raise ValueError(f"{name} must be in (0, 1), got {v}")
    k = min(s.size - 1, max(5, math.ceil(tail_fraction * s.size)))  # the tail: the k highest scores
    tail = k / s.size
    base = float(s[-k - 1])
    if probability >= tail:
        t = float(np.quantile(s, 1.0 - probability))
        return TailThreshold(t, probability, base, 0.0, k, int(s.size))
    excess = float((s[-k:] - base).sum())
    m = excess / (gamma_ppf(1.0 - confidence, k)) if excess > 0 else 0.0  # the sum of k exponentials is gamma(k)
    if m <= 0:  # a flat tail: no spread to extrapolate; just above the highest score
        return TailThreshold(float(s[-1] + 1e-6 * max(1.0, abs(s[-1]))), probability, base, 0.0, k, int(s.size))
    return TailThreshold(base + m * math.log(tail / probability), probability, base, m, k, int(s.size))


def gamma_shape_mle(z: np.ndarray) -> float:
    """Maximum-likelihood shape of a gamma with location 0 fitted to positive ``z``."""
    target = math.log(float(z.mean())) - float(np.log(z).mean())  # > 0 unless z is constant
    if not target > 0:
        raise ValueError("scores have no spread to fit a gamma to")
    # Minka's closed-form start, then Newton on log(a) - digamma(a) = target (decreasing, convex)
    a = (3.0 - target + math.sqrt((target - 3.0) ** 2 + 24.0 * target)) / (12.0 * target)
    for _ in range(100):
        step = (math.log(a) - _digamma(a) - target) / (1.0 / a - _trigamma(a))
        a_next = a - step
        a = a_next if a_next > 0 else a / 2.0
        if abs(step) <= 1e-13 * a:
            break
    return a


def gamma_ppf(p: float, shape: float) -> float:
    """The ``p`` quantile of a gamma with ``shape`` and scale 1."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    # Wilson-Hilferty's cube-root normal approximation as the start (and, for huge shapes where
    # it is exact to 1e-9 and the series would be long, the answer)
    z = NormalDist().inv_cdf(p)
    c = 1.0 / (9.0 * shape)
    x = shape * max(1.0 - c + z * math.sqrt(c), 1e-3) ** 3
    if shape > 1e6:
        return x
    lo, hi = 0.0, math.inf
    log_norm = math.lgamma(shape)
    for _ in range(200):
        err = _regularized_lower_gamma(shape, x) - p
        if err > 0:
            hi = x
        else:
            lo = x
        pdf = math.exp((shape - 1.0) * math.log(x) - x - log_norm) if x > 0 else 0.0
        x_next = x - err / pdf if pdf > 0 else math.nan
        if not (lo < x_next < hi):  # Newton left the bracket: bisect (or grow it)
            x_next = (lo + hi) / 2.0 if math.isfinite(hi) else 2.0 * x
        if abs(x_next - x) <= 1e-14 * x:
            return x_next
        x = x_next
    return x


def _digamma(x: float) -> float:
    """psi(x) for x > 0: recurrence up to 6, then the asymptotic series (error < 1e-14)."""
    acc = 0.0
    while x < 6.0:
        acc -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    return acc + math.log(x) - 0.5 / x - f * (1 / 12 - f * (1 / 120 - f * (1 / 252 - f * (1 / 240 - f / 132))))


def _trigamma(x: float) -> float:
    """psi'(x) for x > 0, the same way."""
    acc = 0.0
    while x < 6.0:
        acc += 1.0 / (x * x)
        x += 1.0
    f = 1.0 / (x * x)
    return acc + 1.0 / x + f / 2.0 + f / x * (1 / 6 - f * (1 / 30 - f * (1 / 42 - f / 30)))


def _regularized_lower_gamma(a: float, x: float) -> float:
    """P(a, x): its power series below ``a + 1``, else 1 - Q(a, x) by Lentz's continued fraction."""
    if x <= 0.0:
        return 0.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        n = a
        while abs(term) > 1e-17 * abs(total):
            n += 1.0
            term *= x / n
            total += term
        return min(1.0, total * math.exp(log_front))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    i = 0
    while True:
        i += 1
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16 or i > 100000:
            break
    return max(0.0, 1.0 - math.exp(log_front) * h)
