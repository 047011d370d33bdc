"""Model windows of a file of any length in bounded memory, as the module cuts them.

:class:`StreamWindows` takes mono blocks at the front end's rate (``audio_io.iter_blocks``),
computes the log-mel with :class:`~audioclassifier.features.LogMelStream`, and returns each
window with its level in dBFS (the module's energy gate compares it with ``energy_gate_dbfs``).
Windows start every ``hop_frames`` columns; :meth:`finish` adds one aligned to the end of the
file when the hops do not reach it. At most one window of columns and samples is kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from audioclassifier.analysis import level_dbfs
from audioclassifier.audio_io import iter_blocks
from audioclassifier.features import LogMelParams, LogMelStream

__all__ = ["StreamWindow", "StreamWindows", "signal_blocks"]


@dataclass(frozen=True)
class StreamWindow:
    """One window: its log-mel ``(n_mels, frames)``, first column, and level in dBFS."""

    logmel: np.ndarray
    start_frame: int
    level_dbfs: float


class StreamWindows:
    """Push blocks, get windows; see the module docstring."""

    def __init__(self, params: LogMelParams, *, window_frames: int, window_samples: int, hop_frames: int) -> None:
        self.params = params
        self.frames = window_frames
        self.window_samples = window_samples
        self.hop_frames = max(1, hop_frames)
        self._stream = LogMelStream(params)
        self._cols = np.empty((params.n_mels, 0), dtype=np.float32)
        self._col0 = 0  # global index of _cols[:, 0]
        self._samples = np.empty(0, dtype=np.float32)
        self._s0 = 0  # global index of _samples[0]
        self._next = 0  # first column of the next window
        self._last: int | None = None  # first column of the last window given
        self.samples_seen = 0

    @property
    def total_frames(self) -> int:
        return self._col0 + self._cols.shape[1]

    def _level(self, start_frame: int) -> float:
        a = start_frame * self.params.hop_length - self._s0
        seg = self._samples[max(0, a) : max(0, a) + self.window_samples]
        return level_dbfs(float(np.mean(np.square(seg, dtype=np.float64)))) if seg.size else level_dbfs(0.0)

    def _window(self, start: int) -> StreamWindow:
        a = start - self._col0
        return StreamWindow(self._cols[:, a : a + self.frames].copy(), start, self._level(start))

    def _trim(self) -> None:
        keep_from = min(self._next, max(0, self.total_frames - self.frames))
        if keep_from > self._col0:
            self._cols = self._cols[:, keep_from - self._col0 :]
            self._col0 = keep_from
        s_from = keep_from * self.params.hop_length
        if s_from > self._s0:
            self._samples = self._samples[s_from - self._s0 :]
            self._s0 = s_from

    def push(self, y: np.ndarray) -> list[StreamWindow]:
        """Add mono samples; return the windows they complete."""
        y = np.asarray(y, dtype=np.float32)
        self.samples_seen += y.shape[0]
        self._samples = np.concatenate((self._samples, y))
        cols = self._stream.push(y)
        if cols.shape[1]:
            self._cols = np.concatenate((self._cols, cols), axis=1)
        out = []
        while self._next + self.frames <= self.total_frames:
            out.append(self._window(self._next))
            self._last = self._next
            self._next += self.hop_frames
        self._trim()
        return out

    def finish(self) -> list[StreamWindow]:
        """The window aligned to the end, if the hops did not reach the end (and a window fits)."""
        end_start = self.total_frames - self.frames
        if end_start < 0 or end_start == self._last:
            return []
        self._last = end_start
        return [self._window(end_start)]


def signal_blocks(path: str | os.PathLike[str], *, params: LogMelParams, channel: int | None, sensor: bool = False,
                  block_seconds: float = 10.0) -> Iterator[np.ndarray]:
    """Mono blocks at the front end's rate: audio streamed with ``iter_blocks``; a series file
    (CSV/NPY, small by nature) read whole and given as one block."""
    from ml.series import is_series, load_series

    if is_series(path):
        yield load_series(path, sample_rate=params.sample_rate, channel=channel)
        return
    yield from iter_blocks(path, block_frames=max(1, int(block_seconds * params.sample_rate)),
                           sample_rate=params.sample_rate, channel=channel, sensor=sensor)
