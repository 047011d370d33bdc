"""Message sequence numbers: per output, monotonic, and never reused across restarts.

The counter reserves numbers in blocks and persists only the top of each block (atomically), so a
restart, even after a crash, continues above anything already sent: gaps are possible, repeats
are not. One small JSON file holds all outputs, written with :func:`~audioclassifier.durable.atomic_file`
(the folder is synced too, so the rename survives a power cut).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

from audioclassifier.durable import atomic_file

__all__ = ["SequenceStore"]

log = logging.getLogger(__name__)


class SequenceStore:
    """``next(output)`` → 1, 2, 3, ... for each output, persisted in ``path`` every ``block`` numbers."""

    def __init__(self, path: str | os.PathLike[str] | None, *, block: int = 64) -> None:
        self.path = Path(path) if path is not None else None
        self.block = int(block)
        self._lock = threading.Lock()
        self._next: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        if self.path is not None and self.path.is_file():
            try:
                saved = json.loads(self.path.read_text())
                self._reserved = {str(k): int(v) for k, v in saved.items()}
            except (OSError, ValueError, TypeError, AttributeError) as exc:
                # What was sent before cannot be known any more: say so loudly and restart at 1.
                log.error("sequence state %s unreadable (%s); numbering restarts", self.path, exc)
            self._next = dict(self._reserved)  # continue above every number reserved before

    def next(self, output: str) -> int:
        with self._lock:
            n = self._next.get(output, 0) + 1
            self._next[output] = n
            if n > self._reserved.get(output, 0):
                self._reserved[output] = n + self.block - 1
                self._save()
            return n

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            with atomic_file(self.path) as fh:
                fh.write(json.dumps(self._reserved).encode())
        except OSError as exc:
            log.error("cannot persist message sequence numbers to %s: %s", self.path, exc)
