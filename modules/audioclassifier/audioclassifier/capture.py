"""Clip capture on request: the next ``seconds`` of audio, written as a clip.

A caller (the ``captureClip`` method, any thread) makes a :class:`Capture` and hands it to the
worker; the worker's :class:`Captures` feeds every chunk to the captures in progress and, when
one has enough audio, :func:`write_capture` writes it with :func:`audioclassifier.clips.write_clip`
and resolves its future with the path (or a :class:`CaptureError`). A caller that stopped waiting
resolves the future itself, and the worker then drops the capture.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audioclassifier.clips import clip_name, write_clip
from audioclassifier.constraints import METHODS, ConstraintError
from audioclassifier.errors import AuscultError
from audioclassifier.sources import Chunk

__all__ = ["Capture", "CaptureError", "Captures", "write_capture"]

log = logging.getLogger(__name__)


class CaptureError(AuscultError):
    """A requested clip could not be recorded (bad request, the source ended, a write failed)."""


@dataclass
class Capture:
    """One requested recording of ``needed`` samples, labelled ``label``."""

    seconds: float
    label: str
    needed: int
    result: Future[Path] = field(default_factory=Future)
    parts: list[np.ndarray] = field(default_factory=list)
    have: int = 0
    start_time: float | None = None

    @classmethod
    def request(cls, seconds: Any, label: Any, *, sample_rate: int) -> Capture:
        """A capture of ``seconds`` (checked against ``METHODS["captureClip"]``) labelled
        ``label`` (any non-empty text: the clip name makes it safe); CaptureError if refused."""
        try:
            seconds = METHODS["captureClip"]["seconds"].check(seconds)
        except ConstraintError as exc:
            raise CaptureError(str(exc)) from exc
        if not isinstance(label, str) or not label.strip():
            raise CaptureError(f"label must be a non-empty string, got {label!r}")
        return cls(seconds, label, needed=max(1, round(seconds * sample_rate)))

    def feed(self, chunk: Chunk) -> bool:
        """Keep what is still needed of ``chunk``; True when the capture has all its audio."""
        if self.start_time is None:
            self.start_time = chunk.start_time
        take = chunk.samples[: self.needed - self.have]
        self.parts.append(take.copy())
        self.have += take.shape[0]
        return self.have >= self.needed

    def fail(self, why: str) -> None:
        """Resolve with a CaptureError (a no-op if the caller already gave up)."""
        try:
            self.result.set_exception(CaptureError(why))
        except InvalidStateError:
            pass


class Captures:
    """The captures in progress (the worker's; not thread-safe)."""

    def __init__(self) -> None:
        self._active: list[Capture] = []

    def add(self, capture: Capture) -> None:
        self._active.append(capture)

    def feed(self, chunk: Chunk) -> list[Capture]:
        """Feed ``chunk`` to every capture; returns those now complete (no longer in progress)."""
        self._active = [c for c in self._active if not c.result.done()]  # dropped by their callers
        if not chunk.samples.size or not self._active:
            return []
        complete = [c for c in self._active if c.feed(chunk)]
        self._active = [c for c in self._active if c not in complete]
        return complete

    def fail_all(self, why: str, sample_rate: int) -> None:
        """End every capture in progress with ``why`` (the source ended)."""
        active, self._active = self._active, []
        for c in active:
            c.fail(f"{why} after {c.have / sample_rate:.1f} of {c.seconds:g} s")


def write_capture(capture: Capture, *, clip_dir: Path, machine: str, seq: int, sample_rate: int,
                  fallback_time: float) -> str | None:
    """Write a complete capture under ``clip_dir`` and resolve its future; the error text if the
    write failed (the future then holds a CaptureError), else None."""
    try:
        name = write_clip(clip_dir, clip_name(machine, capture.start_time or fallback_time, capture.label,
                                              seq=seq, kind="capture"),
                          np.concatenate(capture.parts), sample_rate=sample_rate)
    except (OSError, ValueError, RuntimeError) as exc:
        error = f"writing the clip failed: {exc}"
        log.error("%s", error)
        capture.fail(error)
        return error
    log.info("captured %.1f s as %s", capture.seconds, name)
    try:
        capture.result.set_result(clip_dir / name)
    except InvalidStateError:
        pass
    return None
