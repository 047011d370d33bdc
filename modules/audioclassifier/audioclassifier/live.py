"""The live feed: what the worker hears and decides, kept for the live page (``--http-port``).

The worker publishes every window (:meth:`LiveFeed.window`: its time, level, score, label,
threshold, state and the spectrogram columns it added) and every alert with its clip
(:meth:`LiveFeed.alert`); readers on other threads (the web server) take copies. Publishing is
O(1) work on small arrays under a lock held for microseconds, and everything is bounded: the
window events, the spectrogram columns, the alerts and the clip audio kept in memory (so the
page can play an alert's clip after the uploader has removed it from the spool). Nothing here
blocks the worker or grows with time.

Spectrogram columns travel as 8-bit levels: dB in [:data:`DB_LO`, :data:`DB_HI`] mapped to 0..255,
one column of ``n_mels`` bytes (lowest band first) after the other.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DB_HI", "DB_LO", "LiveFeed", "WindowEvent", "quantize_columns"]

#: The dB range the 8-bit spectrogram columns cover (silence is -100 dB: features.AMIN).
DB_LO, DB_HI = -100.0, 40.0


def quantize_columns(logmel: np.ndarray) -> bytes:
    """``(n_mels, k)`` dB columns → ``k * n_mels`` bytes, column after column (0 = DB_LO, 255 = DB_HI)."""
    scaled = (np.asarray(logmel, dtype=np.float32) - DB_LO) * (255.0 / (DB_HI - DB_LO))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8).T.tobytes()


@dataclass(frozen=True)
class WindowEvent:
    """One analysed window as the page shows it (``score`` None: under the energy gate)."""

    seq: int
    time: float  # POSIX seconds at the window's end
    offset: float  # source seconds at the window's end
    level_dbfs: float
    score: float | None
    label: str | None
    threshold: float
    state: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "time": round(self.time, 3), "offset": round(self.offset, 3),
                "level_dbfs": round(self.level_dbfs, 2), "score": self.score, "label": self.label,
                "threshold": self.threshold, "state": self.state}


@dataclass(frozen=True)
class _Clip:
    samples: np.ndarray  # int16 mono
    sample_rate: int


class LiveFeed:
    """Bounded, thread-safe record of the recent windows, spectrogram and alerts (module docstring).

    ``windows``: window events kept (the score chart's history); ``spectrogram_columns``: columns
    kept; ``alerts``: alerts kept; ``clip_bytes``: clip audio kept in memory at most (oldest go first).
    """

    def __init__(self, *, windows: int = 1800, spectrogram_columns: int = 2048, alerts: int = 20,
                 clip_bytes: int = 4 * 2**20) -> None:
        self._lock = threading.Lock()
        self._events: deque[WindowEvent] = deque(maxlen=windows)
        self._columns: deque[tuple[int, bytes]] = deque()  # (seq of the window that added them, bytes)
        self._column_count = 0
        self._max_columns = spectrogram_columns
        self._alerts: deque[dict[str, Any]] = deque(maxlen=alerts)
        self._clips: dict[str, _Clip] = {}  # insertion order: oldest first
        self._clip_bytes = 0
        self._max_clip_bytes = clip_bytes
        self.n_mels = 0
        self.frame_seconds = 0.0
        self.seq = 0
        self.alert_seq = 0
        self.scored = 0
        self.score_sum = 0.0
        self.over_threshold = 0
        self.errors = 0

    # -- the worker's side ------------------------------------------------------------------------

    def window(self, *, time: float, offset: float, level_dbfs: float, score: float | None, label: str | None,
               threshold: float, state: str, columns: np.ndarray, frame_seconds: float) -> None:
        """Publish one window: ``columns`` are the ``(n_mels, k)`` dB columns it added to the spectrogram."""
        data = quantize_columns(columns)
        n_mels, k = columns.shape
        with self._lock:
            self.seq += 1
            if n_mels != self.n_mels:  # another front end: the old columns no longer line up
                self._columns.clear()
                self._column_count = 0
                self.n_mels = n_mels
            self.frame_seconds = frame_seconds
            self._events.append(WindowEvent(self.seq, time, offset, level_dbfs, score, label, threshold, state))
            self._columns.append((self.seq, data))
            self._column_count += k
            while self._column_count > self._max_columns and len(self._columns) > 1:
                self._column_count -= len(self._columns.popleft()[1]) // n_mels
            if score is not None:
                self.scored += 1
                self.score_sum += score
                self.over_threshold += score > threshold

    def alert(self, message: Mapping[str, Any], audio: np.ndarray | None, sample_rate: int) -> None:
        """Publish an alert (its message) and keep its clip's audio (when it has a clip)."""
        clip = message.get("clip")
        samples = None
        if clip and audio is not None and audio.size:
            samples = np.clip(np.rint(np.asarray(audio, dtype=np.float32) * 32767.0), -32768, 32767).astype(np.int16)
        with self._lock:
            self.alert_seq += 1
            self._alerts.append(dict(message))
            if samples is not None and samples.nbytes <= self._max_clip_bytes:
                self._clips[str(clip)] = _Clip(samples, int(sample_rate))
                self._clip_bytes += samples.nbytes
                while self._clip_bytes > self._max_clip_bytes:
                    oldest = next(iter(self._clips))
                    self._clip_bytes -= self._clips.pop(oldest).samples.nbytes

    # -- readers ----------------------------------------------------------------------------------

    def since(self, seq: int, *, limit: int | None = None) -> tuple[list[WindowEvent], list[bytes], int]:
        """The window events after ``seq`` (at most the last ``limit``), the spectrogram columns
        they added that are still kept, and the feed's last seq."""
        with self._lock:
            events = [e for e in self._events if e.seq > seq]
            columns = [c for s, c in self._columns if s > seq]
            last = self.seq
        if limit is not None and len(events) > limit:
            events = events[-limit:]
        return events, columns, last

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts kept, newest first, each with ``clip_held`` (its audio is in memory)."""
        with self._lock:
            return [{**a, "clip_held": bool(a.get("clip")) and a["clip"] in self._clips} for a in reversed(self._alerts)]

    def clip(self, name: str) -> tuple[np.ndarray, int] | None:
        """A kept clip's int16 samples and sample rate, or None."""
        with self._lock:
            c = self._clips.get(name)
        return None if c is None else (c.samples, c.sample_rate)

    def stats(self) -> dict[str, Any]:
        """Counters for /metrics."""
        with self._lock:
            return {"windows": self.seq, "scored": self.scored, "score_sum": self.score_sum,
                    "over_threshold": self.over_threshold, "alerts": self.alert_seq, "clips_held": len(self._clips),
                    "clip_bytes_held": self._clip_bytes, "errors": self.errors}
