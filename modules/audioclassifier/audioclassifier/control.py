"""The runtime's control surface, as the IoT Hub side (twin, direct methods) and the CLI use it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from audioclassifier.settings import Settings

__all__ = ["RuntimeControl"]


class RuntimeControl(Protocol):
    """Implemented by :class:`audioclassifier.runtime.Runtime`; safe to call from any thread."""

    @property
    def settings(self) -> Settings:
        """The settings in force."""
        ...

    def apply_settings(self, new: Settings) -> None:
        """Apply live (threshold, hop, consecutive, cooldown, gate, telemetry interval, machine);
        a device change recompiles the model first. Raises (and keeps the old) on failure."""
        ...

    def status(self) -> dict[str, Any]:
        """State (running, silent, no-audio), backend and device, model card summary, counters,
        calibration state, last error."""
        ...

    def capture_clip(self, seconds: float, label: str) -> Path:
        """Record the next ``seconds`` of audio into ``clip_dir``; blocks until written."""
        ...

    def reload_model(self) -> dict[str, Any]:
        """Load the current model file again (e.g. replaced on disk) and swap it in."""
        ...

    def swap_model(self, path: Path) -> dict[str, Any]:
        """Load, compile and check ``path``, then swap it in between windows; keeps the old
        model and raises :class:`audioclassifier.backends.ModelError` on any failure."""
        ...

    def calibrate(self, seconds: float, percentile: float = 99.5) -> dict[str, Any]:
        """Site calibration: score the next ``seconds`` of audio as this machine's normal sound
        (alerts held back), fit the gamma threshold at ``percentile`` and apply it as the
        settings' threshold; blocks until done. Returns ``{"threshold", "method", "windows",
        "percentile"}``; raises CalibrationError (old threshold kept) on failure."""
        ...

    def start_calibration(self, seconds: float, percentile: float = 99.5,
                          on_done: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """:meth:`calibrate` in the background: returns the running state at once and calls
        ``on_done`` with the final state (``status()["calibration"]``)."""
        ...

    def start_learning(self, seconds: float) -> dict[str, Any]:
        """On-site learning: learn the next ``seconds`` of audio as this machine's normal sound (no
        alerts meanwhile), then score with the learned model; returns the running state at once
        (``status()["learning"]``). Raises OnsiteError while a learning or calibration runs, or
        when the model cannot learn."""
        ...

    def feedback(self, seq: int, verdict: str, label: str | None = None, note: str | None = None) -> dict[str, Any]:
        """A technician's verdict on alert ``seq``: ``false_alarm`` teaches the learned normal model,
        ``confirmed`` labels it, ``undo`` withdraws the verdict; returns what was done and the mark
        for the alert's clip. Raises :class:`audioclassifier.feedback.UnknownAlertError` (not among the
        kept alerts) or :class:`~audioclassifier.feedback.FeedbackConflictError` (cannot apply now)."""
        ...

    def self_test(self) -> dict[str, Any]:
        """Model loads and scores a synthetic window, front end sane: ``{"ok": bool, ...}``."""
        ...
