"""The clip spool: flagged WAVs wait here, durably, until an upload is confirmed.

Clips arrive complete (written to a hidden temporary file, fsynced, atomically renamed, as
:func:`audioclassifier.audio_io.write_wav` does), so every visible ``*.wav`` is whole. A clip's
name is its path relative to the spool, which is also
its blob name (:func:`audioclassifier.clips.clip_name`). A disk quota bounds the folder: the oldest clips go first, and each drop is
counted and logged.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from audioclassifier.clips import blob_name
from audioclassifier.durable import atomic_file, fsync_dir

__all__ = ["Clip", "Spool"]

log = logging.getLogger(__name__)

#: Free space kept on the spool's file system for the outbox and other small writes (at most a
#: tenth of a small file system).
RESERVE_BYTES = 32 * 2**20

@dataclass(frozen=True)
class Clip:
    """A spooled clip: ``name`` relative to the spool (POSIX separators)."""

    name: str
    path: Path
    size: int
    mtime: float


class Spool:
    """A folder of clips waiting for upload, bounded by ``quota_bytes``."""

    def __init__(self, root: str | os.PathLike[str], *, quota_bytes: int = 500 * 1024 * 1024) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.quota_bytes = int(quota_bytes)
        self.dropped = 0
        self._lock = threading.Lock()

    def pending(self) -> list[Clip]:
        """Whole clips waiting, oldest first (temporary ``.``-files are skipped)."""
        clips = []
        for p in self.root.rglob("*.wav"):
            rel = p.relative_to(self.root)
            if any(part.startswith(".") for part in rel.parts):
                continue
            try:
                st = p.stat()
            except FileNotFoundError:  # uploaded and removed meanwhile
                continue
            clips.append(Clip(rel.as_posix(), p, st.st_size, st.st_mtime))
        clips.sort(key=lambda c: (c.mtime, c.name))
        return clips

    def usage(self) -> int:
        return sum(c.size for c in self.pending())

    def put(self, name: str, data: bytes) -> Clip:
        """Spool ``data`` as ``name``: temporary file, fsync, atomic rename, fsync of the folder."""
        dest = self.root / blob_name(name)
        with atomic_file(dest) as fh:
            fh.write(data)
        st = dest.stat()
        self.enforce_quota()
        return Clip(dest.relative_to(self.root).as_posix(), dest, st.st_size, st.st_mtime)

    def remove(self, clip: Clip) -> None:
        """The upload is confirmed: delete the clip (and folders left empty)."""
        clip.path.unlink(missing_ok=True)
        fsync_dir(clip.path.parent)
        parent = clip.path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def effective_quota(self, used: int) -> int:
        """The quota in force: the configured one, or less when the file system is nearly full,
        keeping a reserve free for the outbox and the other small writes (``used``: the clips' bytes)."""
        try:
            disk = shutil.disk_usage(self.root)
        except OSError:
            return self.quota_bytes
        reserve = min(RESERVE_BYTES, disk.total // 10)
        return max(0, min(self.quota_bytes, used + disk.free - reserve))

    def enforce_quota(self) -> list[str]:
        """Delete the oldest clips until the spool fits its quota (see :meth:`effective_quota`);
        returns the names dropped."""
        with self._lock:
            clips = self.pending()
            total = sum(c.size for c in clips)
            quota = self.effective_quota(total)
            dropped = []
            for clip in clips:
                if total <= quota:
                    break
                self.remove(clip)
                total -= clip.size
                dropped.append(clip.name)
            if dropped:
                self.dropped += len(dropped)
                log.warning("spool: over its quota of %d bytes (configured %d, bounded by the free space); "
                            "dropped %d oldest clip(s): %s", quota, self.quota_bytes, len(dropped), ", ".join(dropped))
            return dropped
