"""Clip files: where a flagged window (or a requested capture) is saved, and under what name.

Names are ``<machine>/<YYYY-MM-DD>/<HHMMSS>-<label>.wav`` (UTC, from the clip's first sample),
each path part reduced to ``[A-Za-z0-9._-]``, relative to the sink's ``clip_dir``; a name already
taken gets ``-1``, ``-2``, ... The WAV is written atomically and fsynced
(:func:`audioclassifier.audio_io.write_wav`), so an uploader never sees half a file.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import numpy as np

from audioclassifier.audio_io import write_wav

__all__ = ["clip_name", "sanitize", "write_clip"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize(part: str, *, fallback: str = "x") -> str:
    """One path part in ``[A-Za-z0-9._-]`` (runs of anything else become ``_``), never ``.``/``..``."""
    s = _UNSAFE.sub("_", str(part)).strip("_")[:100]
    return fallback if s.strip(".") == "" else s


def clip_name(machine: str, start_time: float, label: str, suffix: int = 0) -> PurePosixPath:
    """The relative clip name for audio starting at POSIX ``start_time``."""
    t = datetime.fromtimestamp(start_time, tz=timezone.utc)
    stem = f"{t:%H%M%S}-{sanitize(label, fallback='clip')}" + (f"-{suffix}" if suffix else "")
    return PurePosixPath(sanitize(machine, fallback="machine"), f"{t:%Y-%m-%d}", f"{stem}.wav")


def write_clip(clip_dir: Path, machine: str, start_time: float, label: str, audio: np.ndarray,
               *, sample_rate: int) -> str:
    """Write ``audio`` under a fresh name; return the name (posix separators, relative)."""
    for suffix in range(10000):
        name = clip_name(machine, start_time, label, suffix)
        path = clip_dir / name
        if not path.exists():
            write_wav(path, audio, sample_rate=sample_rate)
            return name.as_posix()
    raise FileExistsError(f"no free clip name for {clip_name(machine, start_time, label)} in {clip_dir}")
