"""Clip files: where a flagged window (or a requested capture) is saved, and under what name.

One naming function, :func:`clip_name`, for every clip: ``<machine>/<YYYY-MM-DD>/<HHMMSSmmm>-<label>-<tag>.wav``
(UTC, from the clip's first sample), where ``tag`` is ``a<seq>`` for an alert (the alert's durable
sequence number) or ``c<seq>`` for a requested capture. The name is unique per clip whatever the
hop, cooldown or timing, so no clip is ever written over another and an alert's ``clip`` field
always names its own audio.

The same name is the clip's path under the spool and its blob name: every part is reduced by
:func:`safe_part` to ``[A-Za-z0-9._-]``, never empty, never starting or ending with ``.``, ``-``
or ``_``, so :func:`blob_name` returns a clip's name unchanged (a property test checks it for
any machine and label). The WAV is written atomically and fsynced
(:func:`audioclassifier.audio_io.write_wav`), so an uploader never sees half a file.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import numpy as np

from audioclassifier.audio_io import write_wav

__all__ = ["blob_name", "clip_name", "safe_part", "write_clip"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_PART = 100


def safe_part(part: str, *, fallback: str = "x") -> str:
    """One path part in ``[A-Za-z0-9._-]`` (runs of anything else become ``-``), trimmed of
    ``.``, ``-``, ``_`` at both ends (so never ``.``/``..``), at most 100 characters."""
    s = _UNSAFE.sub("-", str(part))[:MAX_PART].strip("._-")
    return s or fallback


def clip_name(machine: str, start_time: float, label: str, *, seq: int, kind: str = "alert") -> PurePosixPath:
    """The relative name of the clip of alert (``kind="alert"``) or capture (``"capture"``) ``seq``,
    for audio starting at POSIX ``start_time``."""
    if kind not in ("alert", "capture"):
        raise ValueError(f"kind must be 'alert' or 'capture', got {kind!r}")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError(f"seq must be a whole number >= 0, got {seq!r}")
    t = datetime.fromtimestamp(start_time, tz=timezone.utc)
    stem = f"{t:%H%M%S}{t.microsecond // 1000:03d}-{safe_part(label, fallback='clip')}-{kind[0]}{seq}"
    return PurePosixPath(safe_part(machine, fallback="machine"), f"{t:%Y-%m-%d}", f"{stem}.wav")


def blob_name(name: str) -> str:
    """A safe blob name for any relative name: each ``/`` part through :func:`safe_part`, empty
    and dot parts dropped. Clip names come back unchanged. Raises ValueError if nothing is left."""
    parts = [safe_part(p, fallback="") for p in name.replace("\\", "/").split("/")]
    parts = [p for p in parts if p]
    if not parts:
        raise ValueError(f"no usable blob name in {name!r}")
    return "/".join(parts)


def write_clip(clip_dir: Path, name: PurePosixPath, audio: np.ndarray, *, sample_rate: int) -> str:
    """Write ``audio`` as ``clip_dir/name`` (atomically); return the name (posix, relative)."""
    write_wav(clip_dir / name, audio, sample_rate=sample_rate)
    return name.as_posix()
