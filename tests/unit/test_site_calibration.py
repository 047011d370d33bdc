"""The site calibration state machine: idle → running → done | failed, its futures and callbacks."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from audioclassifier.calibration import (
    MIN_CALIBRATION_WINDOWS,
    CalibrationError,
    SiteCalibration,
)
from audioclassifier.errors import AuscultError
from audioclassifier.thresholds import gamma_threshold


def feed(cal: SiteCalibration, scores: list[float | None], *, seconds_per_window: float = 1.0) -> bool:
    """One window and one chunk per score; whether the calibration became due."""
    due = False
    for s in scores:
        cal.window(s)
        due = cal.advance(seconds_per_window) or due
    return due


def test_a_calibration_runs_fits_and_is_done() -> None:
    cal = SiteCalibration()
    assert cal.status() == {"state": "idle"} and not cal.running
    done: list[dict] = []
    finished = cal.start(20.0, 99.0, on_done=done.append)
    scores = list(np.random.default_rng(0).gamma(4.0, 0.5, size=19))
    assert not feed(cal, scores[:10])
    st = cal.status()
    assert st["state"] == "running" and st["progress"] == 0.5 and st["windows"] == 10
    cal.window(scores[10], held_back=True)
    assert not feed(cal, [None] * 8 + [0.0])  # silent windows count, add no score; 19 s heard
    assert cal.advance(2.0)  # 20 s heard: due
    result = cal.fit()
    assert result["threshold"] == pytest.approx(gamma_threshold(np.array(scores[:11] + [0.0]), percentile=99.0).threshold)
    assert result["method"].startswith("site gamma-p99") and result["percentile"] == 99.0
    state = cal.finish(result)
    assert state is not None and state["state"] == "done" and state["suppressed"] == 1
    assert state["windows"] == 12 and state["progress"] == 1.0
    assert finished.result(0) == state == done[0] == cal.status()
    assert not cal.running and cal.finish(error="late") is None  # nothing to end any more


def test_too_few_scored_windows_fail_and_a_new_one_can_start() -> None:
    cal = SiteCalibration()
    finished = cal.start(5.0, 99.5)
    assert feed(cal, [1.0] * (MIN_CALIBRATION_WINDOWS - 2) + [math.nan, None])
    with pytest.raises(CalibrationError, match=f"too few scored windows: {MIN_CALIBRATION_WINDOWS - 2} of "):
        cal.fit()
    state = cal.finish(error="too few")
    assert state is not None and state["state"] == "failed" and finished.result(0)["error"] == "too few"
    second = cal.start(1.0, 90.0)
    assert cal.is_current(second) and not cal.is_current(finished)


def test_one_at_a_time_and_requests_are_checked() -> None:
    cal = SiteCalibration()
    cal.start(10.0, 99.5)
    with pytest.raises(CalibrationError, match="already running"):
        cal.start(10.0, 99.5)
    assert SiteCalibration.check_request(300, 99) == (300.0, 99.0)
    for seconds, percentile in ((0.5, 99.0), (math.nan, 99.0), (True, 99.0), (60, 100), (60, "99")):
        with pytest.raises(CalibrationError) as info:
            SiteCalibration.check_request(seconds, percentile)
        assert isinstance(info.value, AuscultError)


def test_a_failing_on_done_does_not_escape(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_state: dict) -> None:
        raise RuntimeError("report failed")

    cal = SiteCalibration()
    finished = cal.start(1.0, 99.5, on_done=broken)
    with caplog.at_level(logging.ERROR):
        state = cal.finish(error="the source ended")
    assert state is not None and finished.result(0)["state"] == "failed"
    assert "on_done failed" in caplog.text
