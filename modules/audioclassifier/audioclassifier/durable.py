"""Durable, atomic file writes: a reader sees the old file or the whole new one, never half.

Used for clips (audio_io.write_wav), the upload spool and other state the module must not lose
to a crash or a power cut: write a temporary file in the same folder, fsync it, rename it over
the destination, fsync the folder so the rename itself is on disk.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "fsync_dir"]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a folder's entries (a rename, an unlink) durable; a no-op where folders can't be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a binary file to write ``path`` atomically and durably; on error nothing is left."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)
