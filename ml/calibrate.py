"""Decision thresholds set from validation data: the anomaly threshold and a classifier's
``unknown`` confidence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GammaThreshold", "confidence_threshold", "gamma_threshold"]


@dataclass(frozen=True)
class GammaThreshold:
    """A threshold at ``percentile`` of a gamma distribution fitted to normal validation scores.

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
    """Fit a gamma (location fixed) to normal scores and return its ``percentile`` point."""
    import scipy.stats

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
    shape, _, scale = scipy.stats.gamma.fit(z, floc=0.0)
    t = float(scipy.stats.gamma.ppf(percentile / 100.0, shape, loc=0.0, scale=scale)) + shift
    return GammaThreshold(t, percentile, float(shape), float(scale), shift, int(s.size))


def confidence_threshold(top_prob: np.ndarray, correct: np.ndarray, *, keep: float = 0.95) -> float:
    """The ``unknown`` cut for a classifier: the top probability that ``keep`` of the correctly
    classified validation windows reach (below it, the module reports ``unknown``).

    With no correct validation windows the cut is the uniform probability: never ``unknown``
    beyond what chance gives.
    """
    p = np.asarray(top_prob, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if not ok.any():
        return 0.0
    return float(np.quantile(p[ok], 1.0 - keep))
