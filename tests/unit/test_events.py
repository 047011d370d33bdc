"""Alert and telemetry messages carry DESIGN.md's fields, in UTC ISO-8601, JSON-serialisable."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from audioclassifier.events import Alert, Telemetry, iso_utc, message_properties


def test_alert_message_has_design_fields() -> None:
    t0 = datetime(2026, 11, 21, 3, 0, 0, tzinfo=timezone.utc).timestamp()
    a = Alert(machine="fan-1", label="anomaly", score=0.91234567, threshold=0.7, window_start=t0,
              window_end=t0 + 2, audio_offset_seconds=92.0, model="anomaly-2026", seq=5,
              clip="fan-1/2026-11-21/030000-anomaly.wav")
    m = json.loads(json.dumps(a.to_message()))
    assert set(m) == {"type", "machine", "label", "score", "threshold", "window_start", "window_end",
                      "audio_offset_seconds", "clip", "model", "seq", "health", "explanation"}
    assert m["type"] == "anomaly" and m["window_start"] == "2026-11-21T03:00:00.000Z"
    assert m["window_end"] == "2026-11-21T03:00:02.000Z" and m["score"] == 0.912346
    assert message_properties(m) == {"alert": "true", "label": "anomaly", "machine": "fan-1"}


def test_telemetry_message_and_properties() -> None:
    t = Telemetry(machine="m", interval_start=0.0, interval_end=60.0, windows=60, scored=55, mean_score=0.2,
                  max_score=0.4, level_dbfs=-31.234, state="running", model="v", seq=1)
    m = json.loads(json.dumps(t.to_message()))
    assert m["state"] == "running" and m["level_dbfs"] == -31.23 and m["interval_start"] == "1970-01-01T00:00:00.000Z"
    assert message_properties(m)["alert"] == "false"
    empty = Telemetry(machine="m", interval_start=0.0, interval_end=60.0, windows=0, scored=0, mean_score=None,
                      max_score=None, level_dbfs=None, state="no-audio", model="v", seq=2).to_message()
    assert empty["mean_score"] is None and empty["level_dbfs"] is None


def test_iso_utc_from_aware_datetime_in_other_zone() -> None:
    from datetime import timedelta
    t = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(t) == "2026-01-01T10:00:00.000Z"
