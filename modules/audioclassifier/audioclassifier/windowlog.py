"""The window log: one JSON line per analysed window (``--window-log``), for plots and troubleshooting.

Each line holds the window's place in the audio, its level, its score and label (null when it was
under the energy gate) and the threshold then in force. Every window also goes to the debug log.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from audioclassifier.analysis import Window

__all__ = ["WindowLog"]

log = logging.getLogger(__name__)


class WindowLog:
    """Writes to ``path`` (line-buffered) if given; only the debug log otherwise."""

    def __init__(self, path: Path | None) -> None:
        self._file = open(path, "w", encoding="utf-8", buffering=1) if path is not None else None

    def write(self, w: Window, score: float | None, label: str | None, threshold: float) -> None:
        if self._file is not None:
            self._file.write(json.dumps({
                "start_offset": round(w.start_offset, 4), "end_offset": round(w.end_offset, 4),
                "level_dbfs": round(w.level_dbfs, 2), "score": score, "label": label,
                "threshold": threshold}) + "\n")
        if score is None:
            log.debug("window %d at %.2f s: %.1f dBFS, silent", w.index, w.start_offset, w.level_dbfs)
        else:
            log.debug("window %d at %.2f s: %.1f dBFS, score %.4f (%s)", w.index, w.start_offset, w.level_dbfs,
                      score, label)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
