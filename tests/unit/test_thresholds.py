"""The gamma threshold's own fit (no scipy at run time) against scipy.stats, the reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from audioclassifier.thresholds import gamma_ppf, gamma_shape_mle, gamma_threshold


@pytest.mark.parametrize("shape", [0.05, 0.3, 1.0, 2.5, 10.0, 100.0, 1e3, 1e4, 1e5, 3e5, 5e6])
@pytest.mark.parametrize("p", [0.01, 0.5, 0.9, 0.99, 0.995, 0.999, 0.99999])
def test_ppf_equals_scipy(shape: float, p: float) -> None:
    assert gamma_ppf(p, shape) == pytest.approx(scipy.stats.gamma.ppf(p, shape), rel=1e-9)


@pytest.mark.parametrize("shape", [0.2, 1.0, 3.0, 30.0, 300.0])
@pytest.mark.parametrize("n", [5, 50, 5000])
def test_shape_mle_equals_scipy_fit(shape: float, n: int) -> None:
    z = np.random.default_rng(n).gamma(shape, 2.0, n)
    want, _, scale = scipy.stats.gamma.fit(z, floc=0.0)
    assert gamma_shape_mle(z) == pytest.approx(want, rel=1e-6)


def test_threshold_equals_scipy_on_shifted_log_likelihood_scores() -> None:
    """Scores that go negative (a GMM's negative log-likelihood) are shifted first, as before."""
    s = np.random.default_rng(3).normal(-20.0, 3.0, 400)
    g = gamma_threshold(s, percentile=99.5)
    z = s - g.shift
    a, _, scale = scipy.stats.gamma.fit(z, floc=0.0)
    assert g.threshold == pytest.approx(scipy.stats.gamma.ppf(0.995, a, scale=scale) + g.shift, rel=1e-6)
    assert g.shape == pytest.approx(a, rel=1e-6) and g.scale == pytest.approx(scale, rel=1e-6)


def test_ppf_refuses_probabilities_outside_zero_one() -> None:
    for p in (0.0, 1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="p must be in"):
            gamma_ppf(p, 2.0)
