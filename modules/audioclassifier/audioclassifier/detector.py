"""The detector: when a run of window scores becomes an alert.

An alert fires when ``consecutive`` scored windows in a row are over the threshold (strictly
greater) and at least ``cooldown_seconds`` of audio have passed since the previous alert. A window
that is not scored (silent, or no audio) ends the run. During the cooldown the run keeps counting,
so a fault that persists alerts again as soon as the cooldown is over. Time is audio time (the
windows' source offsets), so replaying a file as fast as possible behaves as it would live.

:meth:`Detector.observe` feeds a window whose alert must be held back (a site calibration hears
the machine's normal sound by definition): a would-be alert is counted as suppressed and starts no
cooldown. The fields are the detector's own: callers use the methods and read, never write.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Detector"]


@dataclass
class Detector:
    """Threshold, hysteresis (``consecutive``) and cooldown over a stream of window scores."""

    threshold: float
    consecutive: int = 2
    cooldown_seconds: float = 30.0
    run: int = 0  # scored windows over the threshold in a row
    last_alert: float | None = None  # audio time of the last alert
    suppressed: int = 0  # windows that would have alerted but fell in a cooldown

    def __post_init__(self) -> None:
        self.configure(self.threshold, self.consecutive, self.cooldown_seconds)

    def configure(self, threshold: float, consecutive: int, cooldown_seconds: float) -> None:
        """Change the rules live; the current run and cooldown carry on."""
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold!r}")
        if consecutive < 1:
            raise ValueError(f"consecutive must be >= 1, got {consecutive!r}")
        if not cooldown_seconds >= 0:
            raise ValueError(f"cooldown_seconds must be >= 0, got {cooldown_seconds!r}")
        self.threshold = float(threshold)
        self.consecutive = int(consecutive)
        self.cooldown_seconds = float(cooldown_seconds)

    def update(self, score: float | None, t: float) -> bool:
        """Feed one window (``score`` None: not scored) ending at audio time ``t``; True = alert."""
        if not self._due(score, t):
            return False
        self.last_alert = t
        return True

    def observe(self, score: float | None, t: float) -> bool:
        """Feed one window as :meth:`update` does, but hold any alert back: it counts as
        suppressed and starts no cooldown. True when an alert was held back."""
        if not self._due(score, t):
            return False
        self.suppressed += 1
        return True

    def _due(self, score: float | None, t: float) -> bool:
        """Count the run; True when this window would alert (a cooldown hit counts as suppressed)."""
        if score is None or not score > self.threshold:  # NaN never alerts
            self.run = 0
            return False
        self.run += 1
        if self.run < self.consecutive:
            return False
        if self.last_alert is not None and t - self.last_alert < self.cooldown_seconds:
            self.suppressed += 1
            return False
        return True

    def reset(self) -> None:
        """Forget the current run (after a gap in the audio); the cooldown is kept."""
        self.run = 0
