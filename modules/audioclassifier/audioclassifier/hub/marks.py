"""Clip marks: a technician's verdict and label, waiting to be put on the alert's clip in storage.

The ``feedback`` method (:mod:`audioclassifier.feedback`) returns a *mark* for the alert's clip:
``{"clip", "verdict", "label", "machine", "seq", "note", "at", "model", "alert_time"}``. It is kept
here, durably, as ``<root>/<clip name>.json`` (atomic write), until the uploader has put it on the
clip in storage (:meth:`audioclassifier.hub.uploader.Uploader.upload_pending`):

* a clip still in the spool (flagged offline, storage down, uploads paused) gets its mark when it
  is uploaded, in the same request (blob metadata);
* a clip already uploaded gets it at once (blob metadata set, index tags set where the target
  allows), or, through IoT Hub file upload where a device cannot touch an uploaded blob, as a
  sidecar JSON blob ``<clip name>.json`` next to it.

A newer verdict on the same clip replaces the waiting mark. What storage carries (:func:`metadata`,
:func:`tags`, :func:`sidecar`) is what ``python -m ml dataset pull`` reads. At most :data:`MAX_MARKS`
marks wait (the oldest are dropped first, logged): a verdict is a few hundred bytes.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from ..clips import blob_name, safe_part
from ..durable import atomic_file, fsync_dir

__all__ = ["MAX_MARKS", "ClipMarks", "metadata", "sidecar", "sidecar_name", "tags"]

log = logging.getLogger(__name__)

MAX_MARKS = 10000
#: Blob metadata keys (and index tag keys) carry this prefix.
PREFIX = "auscult_"
_TAGGED = ("verdict", "label", "machine")
_META = ("verdict", "label", "machine", "seq", "at", "model", "alert_time", "note")


def metadata(mark: dict[str, Any]) -> dict[str, str]:
    """Blob metadata for ``mark`` (``auscult_verdict``, ``auscult_label``, ...). Values travel as HTTP
    header text, so each is percent-encoded (UTF-8; verdicts, labels, numbers and times come out as
    they are): read them back with :func:`urllib.parse.unquote`."""
    return {PREFIX + key: urllib.parse.quote(str(mark[key]), safe=" -_.:/,;@+=()")
            for key in _META if mark.get(key) is not None}


def tags(mark: dict[str, Any]) -> dict[str, str]:
    """Blob index tags for ``mark``: verdict, label and machine (as its clip folder names it, in the
    tags' character set), so a storage account can find labelled clips (``"auscult_verdict" = 'confirmed'``)."""
    return {PREFIX + k: safe_part(str(mark[k])) for k in _TAGGED if mark.get(k) is not None}


def sidecar(mark: dict[str, Any]) -> bytes:
    """The sidecar JSON for ``mark``: the mark itself, UTF-8."""
    return json.dumps({"auscult": "clip-mark", **mark}, ensure_ascii=False, sort_keys=True).encode()


def sidecar_name(clip: str) -> str:
    """The sidecar's blob name next to ``clip``: ``<clip>.json``."""
    return f"{clip}.json"


class ClipMarks:
    """Marks waiting for their clip (see the module docstring); any thread."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.applied = 0
        self.lost = 0
        self.dropped = 0
        self._lock = threading.Lock()

    def _path(self, clip: str) -> Path:
        return self.root / sidecar_name(blob_name(clip))

    def put(self, mark: dict[str, Any]) -> None:
        """Keep ``mark`` (for ``mark["clip"]``) until it is applied; replaces a waiting one."""
        data = json.dumps(mark, ensure_ascii=False, sort_keys=True).encode()
        with self._lock:
            with atomic_file(self._path(mark["clip"])) as fh:
                fh.write(data)
            self._bound()

    def get(self, clip: str) -> dict[str, Any] | None:
        """The mark waiting for ``clip``, or None."""
        try:
            data = json.loads(self._path(clip).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("clip") == clip else None

    def pending(self) -> list[dict[str, Any]]:
        """Every waiting mark, oldest first."""
        out = []
        for path in sorted(self._files(), key=_mtime):
            try:
                mark = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(mark, dict) and isinstance(mark.get("clip"), str):
                out.append(mark)
        return out

    def done(self, mark: dict[str, Any], *, lost: bool = False) -> None:
        """``mark`` is on its clip (or, ``lost``, can never be: the clip is gone): forget it, unless a
        newer mark replaced it meanwhile."""
        with self._lock:
            if self.get(mark["clip"]) != mark:
                return
            path = self._path(mark["clip"])
            path.unlink(missing_ok=True)
            fsync_dir(path.parent)
            self._prune(path.parent)
            if lost:
                self.lost += 1
            else:
                self.applied += 1

    def stats(self) -> dict[str, int]:
        return {"pending": sum(1 for _ in self._files()), "applied": self.applied, "lost": self.lost,
                "dropped": self.dropped}

    def _files(self) -> list[Path]:
        return [p for p in self.root.rglob("*.json") if not p.name.startswith(".")]

    def _prune(self, folder: Path) -> None:
        while folder != self.root:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def _bound(self) -> None:
        files = self._files()
        if len(files) <= MAX_MARKS:
            return
        for path in sorted(files, key=_mtime)[: len(files) - MAX_MARKS]:
            path.unlink(missing_ok=True)
            self.dropped += 1
            log.warning("marks: more than %d clip marks wait; the oldest, %s, is dropped", MAX_MARKS, path.name)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
