"""Telemetry accumulation: intervals of audio time, their sums, and the interval left at the end."""

from __future__ import annotations

import pytest

from audioclassifier.analysis import level_dbfs
from audioclassifier.telemetry import TelemetryAccumulator


class Overflows:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        return self.n


def test_intervals_close_on_audio_time_and_sum_their_windows() -> None:
    overflows = Overflows()
    acc = TelemetryAccumulator(overflows)
    closed = []
    for i in range(25):  # 25 chunks of 1 s from t=1000, offset 0; a window per chunk
        score = None if i % 5 == 0 else float(i)
        acc.window(1000.0 + i, float(i), -20.0, score)
        if i == 7:
            acc.alert()
            overflows.n += 2
        iv = acc.advance(1000.0 + i, float(i), 1.0, interval_seconds=10.0)
        if iv is not None:
            closed.append(iv.fields())
    assert [(f["interval_start"], f["interval_end"]) for f in closed] == [(1000.0, 1010.0), (1010.0, 1020.0)]
    first = closed[0]
    assert first["windows"] == 10 and first["scored"] == 8 and first["alerts"] == 1 and first["overflows"] == 2
    assert first["mean_score"] == pytest.approx(sum(i for i in range(10) if i % 5) / 8)
    assert first["max_score"] == 9.0 and first["level_dbfs"] == pytest.approx(-20.0)
    assert closed[1]["overflows"] == 0 and closed[1]["alerts"] == 0
    rest = acc.finish()
    assert rest is not None and rest.fields()["interval_start"] == 1020.0 and rest.fields()["windows"] == 5
    assert acc.finish() is None  # nothing left


def test_silence_and_nan_scores() -> None:
    acc = TelemetryAccumulator(lambda: 0)
    acc.window(0.0, 0.0, -90.0, None)
    acc.window(1.0, 1.0, -30.0, float("nan"))
    acc.advance(0.0, 0.0, 2.0, interval_seconds=60.0)
    f = acc.finish()
    assert f is not None
    fields = f.fields()
    assert fields["scored"] == 1 and fields["max_score"] is None and fields["mean_score"] == 0.0
    assert fields["level_dbfs"] == pytest.approx(level_dbfs((10 ** -9 + 10 ** -3) / 2))


def test_an_empty_interval_is_not_sent() -> None:
    acc = TelemetryAccumulator(lambda: 0)
    assert acc.finish() is None
    acc.advance(5.0, 0.0, 0.0, interval_seconds=60.0)  # a heartbeat: no audio, no window
    assert acc.finish() is None
