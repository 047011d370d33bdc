"""Audio sources: what the runtime listens to. A WAV/FLAC file, a folder of them, or the microphone.

Every source yields :class:`Chunk` objects: mono float32 samples at the model's sample rate, the
UTC time of their first sample and their offset in seconds since the source began. A chunk with
no samples is a heartbeat (the microphone has nothing yet) that lets the worker react to stop
requests and settings changes. ``discontinuity`` marks the first chunk after a gap (the next file
of a folder, a reopened microphone): the analysis starts afresh there, so no window straddles it.

File replay is paced in real time (``speed=1``), faster (``speed=N``) or as fast as possible
(``speed=None``). The microphone lives in :mod:`audioclassifier.mic` (it imports sounddevice,
which only the microphone needs).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from audioclassifier.audio_io import (
    AUDIO_SUFFIXES,
    AudioFileError,
    audio_info,
    iter_blocks,
)
from audioclassifier.errors import AuscultError

__all__ = ["AudioSource", "Chunk", "FileSource", "SourceError", "audio_files", "parse_speed"]

log = logging.getLogger(__name__)


class SourceError(AuscultError):
    """A source that cannot be used at all (no such file, an empty folder, nothing readable)."""


@dataclass(frozen=True)
class Chunk:
    """Consecutive mono samples at the analysis rate, and where they sit in time."""

    samples: np.ndarray
    start_time: float  # POSIX seconds (UTC) of the first sample
    offset: float  # seconds since the source began, of the first sample
    discontinuity: bool = False
    name: str = ""  # what the audio is (a file name, "mic"), for logs


class AudioSource(Protocol):
    """What the runtime needs from a source."""

    name: str
    state: str  # "running" or "no-audio"
    overflows: int
    reopens: int
    last_error: str | None

    def chunks(self) -> Iterator[Chunk]:
        """Chunks until the source ends (files) or :meth:`close` is called."""
        ...

    def close(self) -> None:
        """Stop; a running :meth:`chunks` returns soon after."""
        ...


def parse_speed(text: str | float | None) -> float | None:
    """``realtime`` → 1.0, ``max`` → None (as fast as possible), a number → that multiple."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        t = text.strip().lower()
        if t in ("max", "fast", "asap"):
            return None
        if t in ("realtime", "real-time", "rt"):
            return 1.0
        try:
            value = float(t.rstrip("x"))
        except ValueError:
            raise ValueError(f"speed must be 'realtime', 'max' or a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"speed must be a positive number, got {text!r}")
    return value


def audio_files(path: Path) -> list[Path]:
    """A file itself, or every audio file under a folder in sorted order."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    raise SourceError(f"{path}: no such file or folder")


class FileSource:
    """Replay of a file or a folder of files (of any length), paced or as fast as possible.

    A folder's files play one after another in sorted order; offsets run on across them (the
    folder is one source). An unreadable file in a folder is logged and skipped; a single file
    that cannot be read raises :class:`SourceError`, as does a folder without one usable file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        sample_rate: int,
        channel: int | None = None,
        speed: float | None = 1.0,
        block_seconds: float | None = None,
        start_time: float | None = None,
        window_seconds: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.files = audio_files(self.path)
        if not self.files:
            raise SourceError(f"{self.path}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder")
        if len(self.files) == 1 and self.path.is_file():
            try:  # fail now with a clear reason rather than in the worker
                audio_info(self.files[0])
            except AudioFileError as exc:
                raise SourceError(str(exc)) from exc
        self.sample_rate = int(sample_rate)
        self.channel = channel
        self.speed = speed
        # Paced replay behaves like a microphone (short blocks); fast replay reads big blocks.
        self.block_seconds = block_seconds or (0.1 if speed is not None else 1.0)
        self.start_time = start_time
        self.window_seconds = window_seconds  # a file shorter than this cannot be scored: warned
        self.files_short = 0
        self.name = str(self.path)
        self.state = "running"
        self.overflows = 0
        self.reopens = 0
        self.last_error: str | None = None
        self.files_done = 0
        self.files_failed = 0
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()

    def chunks(self) -> Iterator[Chunk]:
        t0 = time.time() if self.start_time is None else self.start_time
        clock0 = time.monotonic()
        produced = 0  # samples at the analysis rate, over all files
        for i, f in enumerate(self.files):
            if self._stop.is_set():
                return
            try:
                info = audio_info(f)
                block = max(1, int(round(self.block_seconds * info.sample_rate)))
                first = True
                got = 0
                for y in iter_blocks(f, block_frames=block, sample_rate=self.sample_rate, channel=self.channel):
                    if self._stop.is_set():
                        return
                    offset = produced / self.sample_rate
                    if self.speed is not None:
                        self._pace(clock0, offset)
                    yield Chunk(y, t0 + offset, offset, discontinuity=first and i > 0, name=f.name)
                    first = False
                    produced += y.shape[0]
                    got += y.shape[0]
                self.files_done += 1
                if self.window_seconds and got < self.window_seconds * self.sample_rate:
                    self.files_short += 1
                    log.warning("%s: %.3g s is shorter than one model window (%g s): it cannot be scored (no window "
                                "of it is analysed)", f, got / self.sample_rate, self.window_seconds)
            except AudioFileError as exc:
                self.files_failed += 1
                self.last_error = str(exc)
                if len(self.files) == 1:
                    raise SourceError(str(exc)) from exc
                log.error("skipping %s", exc)
        if self.files_done == 0:
            raise SourceError(f"{self.path}: none of {len(self.files)} file(s) could be read ({self.last_error})")

    def _pace(self, clock0: float, offset: float) -> None:
        """Wait until ``offset`` seconds of audio are due (a block is released once captured)."""
        assert self.speed is not None
        due = clock0 + (offset + self.block_seconds) / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            self._stop.wait(delay)
