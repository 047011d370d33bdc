"""Status assembly: what ``getStatus`` and the twin's reported ``status`` say about the runtime.

:func:`runtime_status` reads a :class:`Observed` (the runtime's public state) and the process
(uptime, peak memory) and returns one JSON-ready dict. Its keys are an interface: the hub reports
them and operators read them (docs/reference.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

from audioclassifier import __version__
from audioclassifier.backends import LoadedModel
from audioclassifier.procinfo import peak_rss_mb
from audioclassifier.settings import Settings
from audioclassifier.sources import AudioSource

__all__ = ["Observed", "runtime_status"]


class Observed(Protocol):
    """The runtime state a status reads."""

    state: str
    source: AudioSource
    model: LoadedModel
    last_score: float | None
    audio_seconds: float
    first_score_seconds: float | None
    last_error: str | None
    started: float

    @property
    def counters(self) -> Mapping[str, int]: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def threshold(self) -> float: ...

    @property
    def hop_seconds(self) -> float: ...

    @property
    def suppressed(self) -> int: ...

    def calibration_status(self) -> dict[str, Any]: ...

    def learning_status(self) -> dict[str, Any]: ...

    def feedback_status(self) -> dict[str, Any]: ...

    def health_status(self) -> dict[str, Any]: ...


def runtime_status(rt: Observed) -> dict[str, Any]:
    """State, source, backend and device, model card summary, threshold, settings, counters,
    calibration, on-site learning, feedback, the machine's health and the last error."""
    model, source = rt.model, rt.source
    return {
        "state": rt.state,
        "source": source.name,
        "backend": model.backend.name,
        "device": model.backend.device,
        "precision": model.backend.precision,
        "backend_note": model.note,
        "model": {"path": str(model.path), **model.card.summary()},
        "threshold": rt.threshold,
        "hop_seconds": rt.hop_seconds,
        "settings": rt.settings.to_dict(),
        "counters": {**rt.counters, "suppressed": rt.suppressed, "overflows": source.overflows,
                     "reopens": source.reopens},
        "last_score": rt.last_score,
        "audio_seconds": round(rt.audio_seconds, 3),
        "first_score_seconds": rt.first_score_seconds,
        "uptime_seconds": round(time.time() - rt.started, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "last_error": rt.last_error or source.last_error,
        "calibration": rt.calibration_status(),
        "learning": rt.learning_status(),
        "verdicts": rt.feedback_status(),
        "health": rt.health_status(),
        "version": __version__,
    }
