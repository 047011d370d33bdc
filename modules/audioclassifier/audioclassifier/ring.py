"""The one ring buffer: the most recent samples of a stream, numbered from the stream's start.

:class:`AudioRing` keeps the last ``capacity`` samples (mono, or frames of ``channels``) and
addresses them by their absolute number since the ring was made, so a reader can ask for
"samples 48 000 to 80 000" and get what is still held. The analysis keeps the recent audio in one
(an alert's clip: the flagged window and a few seconds before it). Not thread-safe: one owner.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AudioRing"]


class AudioRing:
    """The most recent ``capacity`` samples (or frames of ``channels``), numbered from 0."""

    def __init__(self, capacity: int, channels: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        shape = (capacity,) if channels is None else (capacity, channels)
        self.buf = np.zeros(shape, dtype=np.float32)
        self.capacity = capacity
        self.end = 0  # total samples ever written

    @property
    def start(self) -> int:
        """The oldest sample still held."""
        return max(0, self.end - self.capacity)

    def write(self, y: np.ndarray) -> None:
        """Append ``y`` (older samples fall out; a block longer than the ring keeps its newest)."""
        n = y.shape[0]
        if n >= self.capacity:
            y = y[-self.capacity :]
            self.end += n - self.capacity
            n = self.capacity
        i = self.end % self.capacity
        k = min(n, self.capacity - i)
        self.buf[i : i + k] = y[:k]
        if k < n:
            self.buf[: n - k] = y[k:]
        self.end += n

    def parts(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples ``[start, end)`` clipped to what is held, as two views (the second may be empty)."""
        start = max(start, self.start)
        end = min(end, self.end)
        if end <= start:
            return self.buf[:0], self.buf[:0]
        i = start % self.capacity
        n = end - start
        k = min(n, self.capacity - i)
        return self.buf[i : i + k], self.buf[: n - k]

    def get(self, start: int, end: int) -> np.ndarray:
        """Samples ``[start, end)`` clipped to what is held (a copy)."""
        a, b = self.parts(start, end)
        return np.concatenate((a, b)) if b.size else a.copy()

    def mean_square(self, start: int, end: int) -> float:
        """Mean of the squared samples in ``[start, end)`` (mono; no copy)."""
        a, b = self.parts(start, end)
        n = a.size + b.size
        if n == 0:
            return 0.0
        return (float(np.dot(a, a)) + float(np.dot(b, b))) / n
