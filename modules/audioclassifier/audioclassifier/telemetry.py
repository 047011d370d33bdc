"""Telemetry accumulation: windows, scores, levels, alerts and overflows summed per interval.

The worker feeds a :class:`TelemetryAccumulator` every window (:meth:`~TelemetryAccumulator.window`),
every alert and every chunk's end (:meth:`~TelemetryAccumulator.advance`); once an interval spans
``interval_seconds`` of audio (audio time: replaying a file fast gives the same intervals),
``advance`` returns it closed and a new one begins where it ended. :meth:`Interval.fields` gives
the :class:`~audioclassifier.events.Telemetry` fields the interval decides (the caller adds the
machine, the state, the model and the sequence number). Pure bookkeeping: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from audioclassifier.analysis import level_dbfs

__all__ = ["Interval", "TelemetryAccumulator"]


@dataclass
class Interval:
    """The sums of one telemetry interval, from ``start_time`` (UTC) / ``start_offset`` (audio)."""

    start_time: float
    start_offset: float
    overflows_at_start: int = 0
    end_time: float | None = None
    overflows_at_end: int = 0
    windows: int = 0
    scored: int = 0
    score_sum: float = 0.0
    score_max: float | None = None
    power_sum: float = 0.0
    alerts: int = 0

    def fields(self) -> dict[str, Any]:
        """The Telemetry fields this interval decides (it must be closed: ``end_time`` set)."""
        return {"interval_start": self.start_time, "interval_end": self.end_time, "windows": self.windows,
                "scored": self.scored, "mean_score": self.score_sum / self.scored if self.scored else None,
                "max_score": self.score_max, "alerts": self.alerts,
                "level_dbfs": level_dbfs(self.power_sum / self.windows) if self.windows else None,
                "overflows": self.overflows_at_end - self.overflows_at_start}


class TelemetryAccumulator:
    """Intervals of ``interval_seconds`` of audio; ``overflows()`` reads the source's counter."""

    def __init__(self, overflows: Callable[[], int]) -> None:
        self._overflows = overflows
        self._current: Interval | None = None
        self._last_end: float | None = None  # UTC after the last chunk

    def _interval(self, start_time: float, start_offset: float) -> Interval:
        if self._current is None:
            self._current = Interval(start_time, start_offset, overflows_at_start=self._overflows())
        return self._current

    def window(self, start_time: float, start_offset: float, level: float, score: float | None) -> None:
        """Count a window at ``level`` dBFS; ``score`` None: not scored (silent)."""
        iv = self._interval(start_time, start_offset)
        iv.windows += 1
        iv.power_sum += 10.0 ** (level / 10.0)
        if score is None:
            return
        iv.scored += 1
        if math.isfinite(score):
            iv.score_sum += score
            iv.score_max = score if iv.score_max is None else max(iv.score_max, score)

    def alert(self) -> None:
        if self._current is not None:
            self._current.alerts += 1

    def advance(self, start_time: float, start_offset: float, seconds: float, *,
                interval_seconds: float) -> Interval | None:
        """A chunk of ``seconds`` from ``start_time``/``start_offset`` went by; returns the
        interval it closed, if any (the next one starts where that one ended)."""
        end_time, end_offset = start_time + seconds, start_offset + seconds
        iv = self._interval(start_time, start_offset)
        self._last_end = end_time
        if end_offset - iv.start_offset < interval_seconds:
            return None
        self._current = Interval(end_time, end_offset, overflows_at_start=self._overflows())
        return self._close(iv, end_time)

    def finish(self) -> Interval | None:
        """Close the interval in progress (at the end), if it holds anything."""
        iv, self._current = self._current, None
        if iv is None:
            return None
        end_time = self._last_end if self._last_end is not None else iv.start_time
        return self._close(iv, end_time) if iv.windows or end_time > iv.start_time else None

    def _close(self, iv: Interval, end_time: float) -> Interval:
        iv.end_time = end_time
        iv.overflows_at_end = self._overflows()
        return iv
