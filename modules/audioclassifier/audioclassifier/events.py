"""The messages the module emits (DESIGN.md, messages to IoT Hub): alerts and telemetry.

Both sinks (local JSONL and IoT Hub) take the same dictionaries from :meth:`Alert.to_message`
and :meth:`Telemetry.to_message`, so what a technician sees does not depend on the transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

__all__ = ["Alert", "Telemetry", "iso_utc", "message_properties"]


def iso_utc(t: datetime | float) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z`` (a datetime or POSIX seconds)."""
    if not isinstance(t, datetime):
        t = datetime.fromtimestamp(t, tz=timezone.utc)
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Alert:
    """One alert: a window (or run of windows) that scored over the threshold."""

    machine: str
    label: str
    score: float
    threshold: float
    window_start: float  # POSIX seconds, UTC
    window_end: float
    audio_offset_seconds: float  # seconds since the source began
    model: str
    seq: int
    clip: str | None = None
    type: str = "anomaly"
    health: dict[str, Any] | None = None  # the machine's health after this window (health.py)
    explanation: dict[str, Any] | None = None  # the bands that departed from normal (bands.py)

    def to_message(self) -> dict[str, Any]:
        """The ``alerts`` output body."""
        return {
            "type": self.type,
            "machine": self.machine,
            "label": self.label,
            "score": round(float(self.score), 6),
            "threshold": round(float(self.threshold), 6),
            "window_start": iso_utc(self.window_start),
            "window_end": iso_utc(self.window_end),
            "audio_offset_seconds": round(float(self.audio_offset_seconds), 3),
            "clip": self.clip,
            "model": self.model,
            "seq": self.seq,
            "health": self.health,
            "explanation": self.explanation,
        }


@dataclass(frozen=True)
class Telemetry:
    """A summary of one telemetry interval."""

    machine: str
    interval_start: float
    interval_end: float
    windows: int
    scored: int
    mean_score: float | None
    max_score: float | None
    level_dbfs: float | None
    state: str  # running | silent | no-audio
    model: str
    seq: int
    alerts: int = 0
    overflows: int = 0
    health: dict[str, Any] | None = None

    def to_message(self) -> dict[str, Any]:
        """The ``telemetry`` output body."""
        def r(x: float | None) -> float | None:
            return None if x is None else round(float(x), 6)

        return {
            "type": "telemetry",
            "machine": self.machine,
            "interval_start": iso_utc(self.interval_start),
            "interval_end": iso_utc(self.interval_end),
            "windows": self.windows,
            "scored": self.scored,
            "mean_score": r(self.mean_score),
            "max_score": r(self.max_score),
            "level_dbfs": None if self.level_dbfs is None else round(float(self.level_dbfs), 2),
            "state": self.state,
            "alerts": self.alerts,
            "overflows": self.overflows,
            "model": self.model,
            "seq": self.seq,
            "health": self.health,
        }


def message_properties(message: dict[str, Any]) -> dict[str, str]:
    """Application properties for IoT Hub routing: ``alert=true`` and ``label`` on alerts."""
    if message.get("type") == "telemetry":
        return {"alert": "false", "machine": str(message.get("machine", ""))}
    return {"alert": "true", "label": str(message.get("label", "")), "machine": str(message.get("machine", ""))}
