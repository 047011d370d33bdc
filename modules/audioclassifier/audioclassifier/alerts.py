"""Alert building: a flagged window becomes an :class:`~audioclassifier.events.Alert` and a clip.

The clip (the window with a few seconds of context before it) is written first, so the alert
names it; a clip that cannot be written does not stop the alert (it goes out without a clip, and
the caller learns why).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audioclassifier.analysis import Window
from audioclassifier.clips import clip_name, write_clip
from audioclassifier.events import Alert

__all__ = ["FlaggedWindow", "build_alert"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlaggedWindow:
    """A window the detector flagged, its score and label, and the audio its clip holds."""

    window: Window
    score: float
    label: str
    audio: np.ndarray
    sample_rate: int


def build_alert(flagged: FlaggedWindow, *, clip_dir: Path, machine: str, threshold: float, model: str,
                seq: int, health: dict[str, Any] | None = None,
                explanation: dict[str, Any] | None = None) -> tuple[Alert, str | None]:
    """The alert (number ``seq``) for ``flagged`` with its clip written under ``clip_dir``; and
    the reason the clip could not be written (the alert then has no clip), or None. ``health`` and
    ``explanation`` go in the alert as they are."""
    w = flagged.window
    clip, error = None, None
    try:
        clip = write_clip(clip_dir, clip_name(machine, w.start_time, flagged.label, seq=seq), flagged.audio,
                          sample_rate=flagged.sample_rate)
    except (OSError, ValueError, RuntimeError) as exc:
        error = f"clip not written: {exc}"
        log.error("%s", error)
    alert = Alert(machine=machine, label=flagged.label, score=flagged.score, threshold=threshold,
                  window_start=w.start_time, window_end=w.end_time, audio_offset_seconds=w.start_offset,
                  model=model, seq=seq, clip=clip, health=health, explanation=explanation)
    return alert, error
