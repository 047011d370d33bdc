"""Decision thresholds set from validation data: the anomaly threshold and a classifier's
``unknown`` confidence."""

from __future__ import annotations

import numpy as np

# One implementation of the gamma threshold, shared with the module's site calibration.
from audioclassifier.thresholds import GammaThreshold, gamma_threshold

__all__ = ["GammaThreshold", "confidence_threshold", "gamma_threshold"]


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
