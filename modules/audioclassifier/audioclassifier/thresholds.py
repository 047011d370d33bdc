"""The anomaly threshold from scores of normal sound: a gamma fit and its percentile point.

One implementation for both places that set a threshold: training (``ml/train.py``, on normal
validation windows of other machines) and site calibration on the device
(:mod:`audioclassifier.calibration`, on a few minutes of the machine's own healthy sound).
``scipy.stats`` is imported only when a fit runs, so the module's start does not pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GammaThreshold", "gamma_threshold"]


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
    import scipy.stats  # lazily: a second of import the module's start should not pay

    shape, _, scale = scipy.stats.gamma.fit(z, floc=0.0)
    t = float(scipy.stats.gamma.ppf(percentile / 100.0, shape, loc=0.0, scale=scale)) + shift
    return GammaThreshold(t, percentile, float(shape), float(scale), shift, int(s.size))
