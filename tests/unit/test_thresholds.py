"""The gamma threshold's own fit (no scipy at run time) against scipy.stats, the reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from audioclassifier.thresholds import gamma_ppf, gamma_shape_mle, gamma_threshold, tail_threshold


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


# ------------------------------------------------------------------------------------------------
# tail_threshold: a rare exceedance extrapolated from the upper tail


def test_tail_threshold_on_an_exponential_tail_brackets_the_true_quantile() -> None:
    """Exponential scores (the tail the method assumes): the point is near the true quantile and,
    the mean excess taken at its upper bound, above it in most samples, never far."""
    p = 1e-5
    true = scipy.stats.expon.ppf(1 - p, scale=2.0) + 1.0
    got = np.array([tail_threshold(1.0 + np.random.default_rng(seed).exponential(2.0, 300), probability=p).threshold
                    for seed in range(40)])
    assert np.mean(got >= true) > 0.8 and np.all(got < 2.0 * true) and np.all(got > 0.6 * true)


def test_tail_threshold_sees_a_heavier_tail_than_a_gamma_fitted_to_the_bulk() -> None:
    """Normal scores with rare loud events (5 % of the windows): the gamma's far quantile is
    exceeded far more often than asked, the tail extrapolation's is not."""
    def sample(n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        s = rng.gamma(20.0, 0.05, n)
        loud = rng.random(n) < 0.05
        s[loud] += rng.exponential(0.8, loud.sum())
        return s

    learn, later = sample(300, 1), sample(2_000_000, 2)
    p = 1e-5
    g = gamma_threshold(learn, percentile=100 * (1 - p)).threshold
    t = tail_threshold(learn, probability=p)
    assert np.mean(later > g) > 20 * p  # the gamma underestimates the tail
    assert np.mean(later > t.threshold) < 3 * p and t.exceedances == 30 and t.n == 300
    assert "tail extrapolation" in t.method


def test_tail_threshold_edges_and_bad_input() -> None:
    s = np.arange(1.0, 101.0)
    assert tail_threshold(s, probability=0.5).threshold == pytest.approx(np.quantile(s, 0.5))  # inside the data
    flat = tail_threshold(np.r_[np.ones(80), np.full(20, 2.0)], probability=1e-6)
    assert flat.threshold > 2.0 and flat.mean_excess == 0.0  # top scores all equal: just above them
    with pytest.raises(ValueError, match="at least 5"):
        tail_threshold([1.0, 2.0, np.nan, np.inf], probability=1e-3)
    for bad in ({"probability": 0.0}, {"probability": 1.0}, {"probability": 0.1, "tail_fraction": 1.5},
                {"probability": 0.1, "confidence": 0.0}):
        with pytest.raises(ValueError, match="must be in"):
            tail_threshold(s, **bad)
