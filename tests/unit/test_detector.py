"""The detector: consecutive windows over the threshold, cooldown in audio time, gaps end a run."""

from __future__ import annotations

import math

import pytest

from audioclassifier.detector import Detector


def feed(det: Detector, scores: list[float | None], *, hop: float = 1.0) -> list[float]:
    """Audio times at which alerts fire."""
    return [i * hop for i, s in enumerate(scores) if det.update(s, i * hop)]


def test_needs_consecutive_windows_over_the_threshold() -> None:
    det = Detector(0.5, consecutive=3, cooldown_seconds=0)
    assert feed(det, [0.9, 0.9, 0.1, 0.9, 0.9, 0.9]) == [5.0]


def test_equal_to_threshold_is_not_over_it() -> None:
    det = Detector(0.5, consecutive=1, cooldown_seconds=0)
    assert feed(det, [0.5, 0.5000001]) == [1.0]


def test_cooldown_suppresses_then_a_persisting_fault_alerts_again() -> None:
    det = Detector(0.5, consecutive=2, cooldown_seconds=10)
    alerts = feed(det, [0.9] * 30)
    assert alerts == [1.0, 11.0, 21.0]
    assert det.suppressed == 30 - 1 - 3  # every window after the first, except the three alerts


def test_unscored_and_nan_windows_end_the_run() -> None:
    det = Detector(0.5, consecutive=2, cooldown_seconds=0)
    assert feed(det, [0.9, None, 0.9, math.nan, 0.9, 0.9]) == [5.0]


def test_live_reconfiguration_keeps_the_run() -> None:
    det = Detector(0.5, consecutive=3, cooldown_seconds=0)
    assert not det.update(0.9, 0.0)
    assert not det.update(0.9, 1.0)
    det.configure(0.5, 2, 0)
    assert det.update(0.9, 2.0)
    det.configure(0.95, 2, 0)
    assert not det.update(0.9, 3.0)  # under the new threshold


@pytest.mark.parametrize("args", [(math.inf, 1, 0), (0.5, 0, 0), (0.5, 1, -1), (0.5, 1, math.nan)])
def test_bad_configuration_is_refused(args: tuple[float, int, float]) -> None:
    with pytest.raises(ValueError):
        Detector(*args)


def observe(det: Detector, scores: list[float | None], *, hop: float = 1.0) -> list[float]:
    """Audio times at which an alert was held back."""
    return [i * hop for i, s in enumerate(scores) if det.observe(s, i * hop)]


def test_observe_holds_alerts_back_without_a_cooldown() -> None:
    det = Detector(0.5, consecutive=2, cooldown_seconds=10)
    assert observe(det, [0.9, 0.9, 0.9, 0.1]) == [1.0, 2.0]  # each would-be alert is held back
    assert det.suppressed == 2 and det.last_alert is None  # counted, and no cooldown started
    assert det.update(0.9, 4.0) is False and det.update(0.9, 5.0) is True  # alerts at once afterwards


def test_observe_in_a_cooldown_counts_once() -> None:
    det = Detector(0.5, consecutive=1, cooldown_seconds=10)
    assert det.update(0.9, 0.0)
    assert det.observe(0.9, 1.0) is False  # the cooldown already holds it back
    assert det.suppressed == 1 and det.last_alert == 0.0
