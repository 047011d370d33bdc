"""Exponential backoff with full jitter, for whatever waits out an unreachable peer or device:
sends and uploads (the hub side), reopening a dead microphone (:mod:`audioclassifier.mic`)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Delays ``initial * factor**n`` capped at ``maximum``, jittered to [delay/2, delay].

    Call :meth:`next` after each failure and :meth:`reset` after a success.
    """

    initial: float = 1.0
    maximum: float = 60.0
    factor: float = 2.0
    failures: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def next(self) -> float:
        """The delay before the next attempt; each call counts one more failure."""
        delay = min(self.maximum, self.initial * self.factor ** self.failures)
        self.failures += 1
        return delay * (0.5 + 0.5 * self._rng.random())

    def reset(self) -> None:
        self.failures = 0
