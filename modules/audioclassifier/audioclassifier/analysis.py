"""Streaming analysis: audio chunks → log-mel columns → model windows every hop, with their level.

:class:`Windower` feeds each chunk to one :class:`~audioclassifier.features.LogMelStream`, which
computes only the columns the new audio completes, and keeps the last window's columns in a
ring. Every ``hop`` it hands out a :class:`Window`: exactly ``logmel`` of the window's samples
(window starts fall on multiples of the front end's hop length, so streaming and batch agree
bit for bit in framing), its level in dBFS, and where it sits in time. Per-hop work is the new
columns plus a copy of the window; nothing is recomputed.

It also keeps the recent audio (:class:`~audioclassifier.ring.AudioRing`) so an alert can save
the flagged window with a few seconds of context before it.

:class:`StreamWindows` cuts a whole file the same way, in bounded memory, and adds one window
aligned to its end when the hops do not reach it: what ``ml predict`` and the module's
``POST /api/score`` (:mod:`audioclassifier.scoring`) score.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from audioclassifier.card import ModelCard
from audioclassifier.features import LogMelParams, LogMelStream
from audioclassifier.ring import AudioRing
from audioclassifier.sources import Chunk

__all__ = ["StreamWindow", "StreamWindows", "Window", "Windower", "level_dbfs"]

#: Level reported for digital silence.
SILENCE_DBFS = -200.0


def level_dbfs(mean_square: float) -> float:
    """Mean power of full-scale-relative samples in dB (a full-scale square wave is 0 dBFS)."""
    return 10.0 * math.log10(mean_square) if mean_square > 1e-20 else SILENCE_DBFS


@dataclass(frozen=True)
class Window:
    """One model window: ``logmel`` (n_mels, window_frames) and its place in time."""

    logmel: np.ndarray
    index: int  # windows since the analysis (re)started
    start_sample: int  # in the AudioRing's numbering (samples since the runtime began)
    end_sample: int
    start_time: float  # POSIX seconds, UTC
    end_time: float
    start_offset: float  # seconds since the source began
    end_offset: float
    level_dbfs: float


class _Anchors:
    """Sample number → (UTC time, source offset), from the chunks that delivered the samples."""

    def __init__(self, sample_rate: int, keep: int) -> None:
        self.sr = sample_rate
        self.index: deque[int] = deque()
        self.times: deque[tuple[float, float]] = deque()
        self.keep = keep

    def add(self, sample: int, start_time: float, offset: float) -> None:
        self.index.append(sample)
        self.times.append((start_time, offset))
        while len(self.index) > 2 and self.index[1] < sample - self.keep:
            self.index.popleft()
            self.times.popleft()

    def at(self, sample: int) -> tuple[float, float]:
        i = max(0, bisect.bisect_right(self.index, sample) - 1)
        t, off = self.times[i]
        dt = (sample - self.index[i]) / self.sr
        return t + dt, off + dt


class Windower:
    """Chunks in, windows out (see the module docstring). ``hop_seconds`` may change live."""

    def __init__(self, card: ModelCard, *, hop_seconds: float, context_seconds: float = 3.0,
                 slack_seconds: float = 8.0) -> None:
        self.card = card
        p = card.features
        self.sample_rate = p.sample_rate
        self.n_mels = p.n_mels
        self.hop_length = p.hop_length
        self.window_frames = card.window_frames
        self.window_samples = card.window_samples
        # A window's samples: [first column * hop_length, that + window_samples).
        self.hop_frames = p.hop_frames(hop_seconds)
        self.context_seconds = context_seconds
        cap = self.window_samples + int((context_seconds + slack_seconds) * self.sample_rate)
        self.ring = AudioRing(cap)
        self._anchors = _Anchors(self.sample_rate, keep=cap)
        self._stream = LogMelStream(p)
        # Columns, each written twice (at c % w_frames and c % w_frames + w_frames) so any window is one contiguous slice.
        self._cols = np.zeros((self.n_mels, 2 * self.window_frames), dtype=np.float32)
        self._segment_start = 0  # ring sample number where the current segment began
        self._frames = 0  # columns in the current segment
        self._next_end = self.window_frames  # column count at which the next window is complete
        self.windows = 0  # windows in the current segment

    @property
    def hop_seconds(self) -> float:
        """The hop actually used (a whole number of columns)."""
        return self.hop_frames * self.hop_length / self.sample_rate

    def set_hop(self, hop_seconds: float) -> None:
        """Change the hop; the next window is due one new hop after the last one."""
        new = self.card.features.hop_frames(hop_seconds)
        if self.windows:
            self._next_end += new - self.hop_frames
            self._next_end = max(self._next_end, self._frames + 1)
        self.hop_frames = new

    def reset(self) -> None:
        """Start a new segment: no window will include audio from before this point."""
        self._stream.reset()
        self._segment_start = self.ring.end
        self._frames = 0
        self._next_end = self.window_frames
        self.windows = 0

    def push(self, chunk: Chunk) -> list[Window]:
        """Add a chunk; return the windows it completes (usually none or one)."""
        y = chunk.samples
        if chunk.discontinuity:
            self.reset()
        if y.size == 0:
            return []
        self._anchors.add(self.ring.end, chunk.start_time, chunk.offset)
        self.ring.write(y)
        cols = self._stream.push(y)
        out: list[Window] = []
        k = cols.shape[1]
        done = 0
        while done < k:
            # write columns up to the next window end (or all of them), then cut the window
            take = min(k - done, self._next_end - self._frames)
            self._store(cols[:, done : done + take])
            done += take
            self._frames += take
            if self._frames == self._next_end:
                out.append(self._cut())
                self._next_end += self.hop_frames
        return out

    def _store(self, block: np.ndarray) -> None:
        """Write consecutive columns at their two ring positions (at most two slices each)."""
        w_frames = self.window_frames
        n = block.shape[1]
        first = self._frames
        if n > w_frames:  # a hop longer than the window: only the last w_frames columns can be in one
            first += n - w_frames
            block, n = block[:, n - w_frames :], w_frames
        c = first % w_frames
        k = min(n, w_frames - c)
        for at in (c, c + w_frames):
            self._cols[:, at : at + k] = block[:, :k]
        if k < n:
            for at in (0, w_frames):
                self._cols[:, at : at + n - k] = block[:, k:]

    def _cut(self) -> Window:
        w_frames = self.window_frames
        first = self._frames - w_frames
        s = first % w_frames
        logmel = self._cols[:, s : s + w_frames].copy()
        start = self._segment_start + first * self.hop_length
        end = start + self.window_samples
        t0, off0 = self._anchors.at(start)
        dur = self.window_samples / self.sample_rate
        level = level_dbfs(self.ring.mean_square(start, end))
        w = Window(logmel, self.windows, start, end, t0, t0 + dur, off0, off0 + dur, level)
        self.windows += 1
        return w

    def clip(self, window: Window, *, context_seconds: float | None = None) -> np.ndarray:
        """The window's audio with up to ``context_seconds`` before it (not before the segment)."""
        ctx = self.context_seconds if context_seconds is None else context_seconds
        start = max(self._segment_start, window.start_sample - int(ctx * self.sample_rate))
        return self.ring.get(start, window.end_sample)


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
