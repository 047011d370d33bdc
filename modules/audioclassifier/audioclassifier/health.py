"""The graded health index of a machine: 0-100, ``ok`` / ``watch`` / ``alarm``, and its trend.

Alerts answer "is this window abnormal?"; the health index answers "how is this machine doing
lately?". Each scored window gets a *load* from its score relative to the threshold in force:

* 1 for a window over the threshold;
* between 0 and 0.5 for a window between half the threshold and the threshold (linear), so a
  machine whose scores creep up towards the threshold loses health before it alerts;
* 0 for a window at or under half the threshold (and for any window under a threshold that is
  not positive, where a ratio means nothing: there only over / not over counts).

The index is ``100 * (1 - load)``, where ``load`` is the exponentially weighted mean of the
windows' loads over ``window_seconds`` of scored audio (the setting ``health_window_seconds``;
a window's weight halves every ``0.69 * window_seconds``): 100 when every recent window scored
well under the threshold, 0 when every one scored over it. Silent windows and windows heard
while a site calibration or on-site learning runs are not counted.

The state follows the index with hysteresis, so it does not flap around a boundary:

=========  ===================  ===========================
state      entered when index   left when index
=========  ===================  ===========================
``ok``     >= 80 (from watch)   < 70 (to watch, or alarm)
``watch``  < 70, or >= 40       >= 80 (ok) or < 30 (alarm)
           from alarm
``alarm``  < 30                 >= 40 (to watch)
=========  ===================  ===========================

and a new state takes effect only once its condition has held for a quarter of
``window_seconds`` of audio (a dwell), so a short excursion of a noisy index changes nothing.

``trend_per_day`` is the least-squares slope of the index (points per day) over the samples
kept (one a minute, the last 24 h), once they span at least an hour and twice
``window_seconds`` (up to 12 h): shorter spans measure the index's noise, not a trend; else None.

Time is the audio's UTC time (:attr:`~audioclassifier.analysis.Window.end_time`), so a replay at
any speed grades the same. Pure bookkeeping, no I/O; one worker owns a tracker.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from audioclassifier.events import iso_utc

__all__ = ["ALARM_BELOW", "OK_FROM", "STATES", "HealthTracker", "window_load"]

STATES = ("ok", "watch", "alarm")
#: Hysteresis bands of the index: (enter below, leave at or above).
WATCH_BELOW, OK_FROM = 70.0, 80.0
ALARM_BELOW, ALARM_LEAVE = 30.0, 40.0
SAMPLE_SECONDS = 60.0  #: one trend sample a minute of audio
TREND_SPAN_SECONDS = 86400.0  #: trend samples kept (a day)
SECONDS_PER_DAY = 86400.0


def window_load(score: float, threshold: float) -> float:
    """A window's load in [0, 1] from its score and the threshold (see the module docstring)."""
    if not math.isfinite(score):
        return 0.0 if score != math.inf else 1.0
    if score > threshold:
        return 1.0
    if threshold <= 0:
        return 0.0
    ratio = score / threshold
    return 0.0 if ratio <= 0.5 else ratio - 0.5  # 0 at half the threshold, 0.5 at it


@dataclass
class _Sample:
    time: float
    index: float


class HealthTracker:
    """One machine's health (see the module docstring). ``window_seconds`` may change live."""

    def __init__(self, window_seconds: float = 600.0) -> None:
        if not window_seconds > 0:
            raise ValueError(f"window_seconds must be > 0, got {window_seconds!r}")
        self.window_seconds = float(window_seconds)
        self.reset()

    def reset(self) -> None:
        """Start afresh (another machine, a new normal model): no windows, state ``ok``."""
        self.load = 0.0
        self.windows = 0
        self.state = "ok"
        self.since: float | None = None  # UTC of the last state change (or of the first window)
        self._pending: tuple[str, float] | None = None  # a state whose condition holds, since when
        self._last: float | None = None
        self._samples: deque[_Sample] = deque()
        self._trend: tuple[int, float | None] = (-1, None)  # (samples appended, trend) cache
        self._appended = 0

    @property
    def index(self) -> int | None:
        """0-100, None before the first scored window."""
        return None if self.windows == 0 else int(round(100.0 * (1.0 - self.load)))

    def update(self, score: float, threshold: float, t: float) -> bool:
        """Count a scored window ending at UTC ``t``; True when the state changed."""
        load = window_load(score, threshold)
        if self.windows == 0 or self._last is None:
            self.load = load
            self.since = t
        else:
            dt = max(0.0, t - self._last)
            alpha = 1.0 - math.exp(-dt / self.window_seconds) if dt > 0 else 0.0
            alpha = max(alpha, 1.0 / (self.windows + 1))  # the first windows weigh equally
            self.load += alpha * (load - self.load)
        self.windows += 1
        self._last = t
        self._sample(t)
        return self._grade(t)

    def _grade(self, t: float) -> bool:
        value = 100.0 * (1.0 - self.load)
        state = self.state
        if value < ALARM_BELOW:
            state = "alarm"
        elif state == "alarm":
            state = "watch" if value >= ALARM_LEAVE else "alarm"
        if state == "watch" and value >= OK_FROM:
            state = "ok"
        elif state == "ok" and value < WATCH_BELOW:
            state = "watch"
        if state == self.state:
            self._pending = None
            return False
        if self._pending is None or self._pending[0] != state:
            self._pending = (state, t)
        if t - self._pending[1] < self.window_seconds / 4:
            return False
        self.state, self.since, self._pending = state, t, None
        return True

    def _sample(self, t: float) -> None:
        value = 100.0 * (1.0 - self.load)
        if self._samples and t - self._samples[-1].time < SAMPLE_SECONDS:
            self._samples[-1].index = value  # the minute's latest value
            return
        self._samples.append(_Sample(t, value))
        self._appended += 1
        while self._samples and t - self._samples[0].time > TREND_SPAN_SECONDS:
            self._samples.popleft()

    @property
    def trend_per_day(self) -> float | None:
        """Index points per day (least squares over the samples), None until they span ``window_seconds``.
        Computed once per new sample (a minute), so reading it costs nothing per window."""
        if self._trend[0] != self._appended:
            self._trend = (self._appended, self._fit_trend())
        return self._trend[1]

    def _fit_trend(self) -> float | None:
        s = self._samples
        if len(s) < 2 or s[-1].time - s[0].time < min(max(2 * self.window_seconds, 3600.0), TREND_SPAN_SECONDS / 2):
            return None
        t = np.fromiter((x.time for x in s), dtype=np.float64, count=len(s))
        y = np.fromiter((x.index for x in s), dtype=np.float64, count=len(s))
        t -= t.mean()
        var = float(t @ t)
        if var <= 0:
            return None
        slope = float(t @ (y - y.mean())) / var
        return round(slope * SECONDS_PER_DAY, 2)

    def status(self) -> dict[str, Any]:
        """``{"index", "state", "trend_per_day", "since", "windows"}`` (JSON-ready)."""
        return {"index": self.index, "state": self.state, "trend_per_day": self.trend_per_day,
                "since": None if self.since is None else iso_utc(self.since), "windows": self.windows}
