"""The graded health index (health.py): 0-100 from the recent scores against the threshold, a state
that does not flap, and a trend in points per day."""

from __future__ import annotations

import numpy as np
import pytest

from audioclassifier.health import HealthTracker, window_load

T0 = 1_763_700_000.0


@pytest.mark.parametrize(("score", "threshold", "load"), [
    (0.2, 1.0, 0.0), (0.5, 1.0, 0.0), (0.75, 1.0, 0.25), (1.0, 1.0, 0.5), (1.01, 1.0, 1.0), (50.0, 1.0, 1.0),
    (-3.0, -2.0, 0.0), (-1.0, -2.0, 1.0), (float("nan"), 1.0, 0.0), (float("inf"), 1.0, 1.0)])
def test_window_load(score: float, threshold: float, load: float) -> None:
    assert window_load(score, threshold) == pytest.approx(load)


def _feed(h: HealthTracker, scores, *, t0: float = T0, hop: float = 1.0, threshold: float = 1.0) -> list[str]:
    """Feed ``scores`` a hop apart; the states the tracker went through (changes only)."""
    changes = []
    for i, s in enumerate(scores):
        if h.update(float(s), threshold, t0 + i * hop):
            changes.append(h.state)
    return changes


def test_a_healthy_machine_is_ok_and_a_developing_fault_goes_watch_then_alarm_with_a_falling_trend() -> None:
    rng = np.random.default_rng(0)
    h = HealthTracker(window_seconds=300)
    assert h.status() == {"index": None, "state": "ok", "trend_per_day": None, "since": None, "windows": 0}
    healthy = rng.gamma(4.0, 0.1, 7200)  # p99.5 about 1.0: the threshold's place
    assert _feed(h, healthy[:1800]) == [] and h.trend_per_day is None  # half an hour: too short for a trend
    assert _feed(h, healthy[1800:], t0=T0 + 1800) == [] and h.index >= 90 and h.state == "ok"
    assert h.trend_per_day is not None and abs(h.trend_per_day) < 60  # flat, give or take noise
    fault = healthy[:1800] * np.linspace(1.0, 6.0, 1800)  # scores grow over 30 minutes
    changes = _feed(h, fault, t0=T0 + 7200)
    assert changes == ["watch", "alarm"] and h.index < 30
    assert h.trend_per_day < -300  # falling fast: about 90 points in half an hour
    status = h.status()
    assert status["state"] == "alarm" and status["since"].endswith("Z") and status["windows"] == 9000


def test_the_state_does_not_flap_around_a_boundary() -> None:
    """Scores that hold the index around 70 (the ok/watch boundary) change the state once at most."""
    rng = np.random.default_rng(1)
    h = HealthTracker(window_seconds=120)
    # about 30 % of the windows over the threshold: load ~0.3, the index hovers around 70
    scores = np.where(rng.random(7200) < 0.3, 1.5, 0.2)
    changes = _feed(h, scores)
    assert 60 <= h.index <= 80
    assert len(changes) <= 1, changes


def test_the_index_is_a_matter_of_audio_time_not_of_window_count() -> None:
    """The same sound at a hop of 1 s and of 0.25 s gives the same index after the same audio."""
    a, b = HealthTracker(window_seconds=120), HealthTracker(window_seconds=120)
    _feed(a, [0.2] * 300 + [1.5] * 60, hop=1.0)
    _feed(b, [0.2] * 1200 + [1.5] * 240, hop=0.25)
    assert abs(a.index - b.index) <= 2 and 30 < a.index < 80


def test_a_recovery_goes_back_through_watch_and_reset_starts_afresh() -> None:
    h = HealthTracker(window_seconds=30)
    assert _feed(h, [2.0] * 120) == ["alarm"] and h.since == T0 + 8  # after the dwell (7.5 s)
    assert _feed(h, [0.1] * 300, t0=T0 + 120) == ["watch", "ok"] and h.index == 100
    h.reset()
    assert h.index is None and h.state == "ok" and h.windows == 0


def test_window_seconds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        HealthTracker(window_seconds=0)
