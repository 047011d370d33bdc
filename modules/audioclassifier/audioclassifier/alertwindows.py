"""What feedback needs to remember: each recent alert's windows, and the recent normal windows.

A technician's verdict on an alert comes minutes or days later (``feedback`` direct method,
:mod:`audioclassifier.feedback`). To teach the learned normal model that an alert was a false
alarm, the module needs the embeddings of *that alert's windows*; to mark its clip, the clip's
name. :class:`AlertWindows` keeps both for the last ``keep`` alerts:

* the windows of an alert are the scored windows of the run over the threshold that raised it (the
  ``consecutive`` windows, or more when the run was longer), and the windows that continue that run
  after the alert (the same sound, while it lasts), at most
  :data:`~audioclassifier.learning.MAX_ACCEPTED_WINDOWS`; a window not over the threshold (or not
  scored) ends the run, the next alert starts its own record;
* each record is saved as ``<directory>/a<seq>.npz`` (atomic, no pickle) when the alert is raised
  and again when its run ends, so a verdict given after a restart still finds it; the oldest
  records beyond ``keep`` are deleted, on disk and in memory.

It also keeps the embeddings of the last :data:`RECENT_WINDOWS` scored windows that were *not* over
the threshold (less the windows that overlap the first window of a run over it: the sound that
alarmed had begun in them): the machine's recent normal sound, from which a first false alarm starts a learned
model when none exists (:meth:`audioclassifier.onsite.OnsiteLearning.accept`).

Memory: ``keep`` × 64 × D float32 for the records and :data:`RECENT_WINDOWS` × D for the recent
windows (D = 35 for the shipped model: 0.9 MB at ``keep`` 100). The pipeline's worker owns it.
"""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audioclassifier.durable import atomic_file
from audioclassifier.learning import MAX_ACCEPTED_WINDOWS

__all__ = ["RECENT_WINDOWS", "AlertRecord", "AlertWindows"]

log = logging.getLogger(__name__)

#: Recent normal windows kept (ten minutes at the default one-second hop).
RECENT_WINDOWS = 600
_NAME = re.compile(r"a(\d{1,18})\.npz")


@dataclass
class AlertRecord:
    """One alert as feedback sees it: where its clip is, what raised it, and its windows' embeddings."""

    seq: int = -1  # -1 until the alert is emitted
    machine: str = ""
    clip: str | None = None
    label: str = ""
    score: float = 0.0
    threshold: float = 0.0
    time: float = 0.0  # POSIX seconds of the flagged window's start
    model: str = ""
    fingerprint: str | None = None  # of the front end and embedding the windows come from
    windows: list[np.ndarray] = field(default_factory=list)
    saved: int = 0  # windows already on disk

    def embeddings(self) -> np.ndarray:
        """The windows ``(n, D)`` (``(0, 0)`` without embeddings)."""
        return np.stack(self.windows) if self.windows else np.zeros((0, 0))

    def header(self) -> dict[str, Any]:
        return {"seq": self.seq, "machine": self.machine, "clip": self.clip, "label": self.label,
                "score": self.score, "threshold": self.threshold, "time": self.time, "model": self.model,
                "fingerprint": self.fingerprint}

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        emb = self.embeddings().astype(np.float32)
        np.savez(buf, header=np.frombuffer(json.dumps(self.header()).encode(), np.uint8), windows=emb)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> AlertRecord:
        """A saved record; ValueError when the bytes are not one."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                header = json.loads(z["header"].tobytes().decode())
                windows = z["windows"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
            raise ValueError(f"not an alert record ({type(exc).__name__})") from None
        if not isinstance(header, dict) or not isinstance(header.get("seq"), int) or windows.ndim != 2:
            raise ValueError("not an alert record")
        rows = [np.asarray(w, dtype=np.float32) for w in windows[:MAX_ACCEPTED_WINDOWS]] if windows.size else []
        return cls(seq=header["seq"], machine=str(header.get("machine", "")), clip=header.get("clip"),
                   label=str(header.get("label", "")), score=float(header.get("score", 0.0)),
                   threshold=float(header.get("threshold", 0.0)), time=float(header.get("time", 0.0)),
                   model=str(header.get("model", "")), fingerprint=header.get("fingerprint"), windows=rows,
                   saved=len(rows))


class AlertWindows:
    """The last ``keep`` alerts' records and the recent normal windows (see the module docstring)."""

    def __init__(self, directory: Path | None = None, *, keep: int = 100) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory, self.keep = directory, int(keep)
        self._records: OrderedDict[int, AlertRecord] = OrderedDict()  # by seq, oldest first
        self._run: deque[np.ndarray] = deque(maxlen=MAX_ACCEPTED_WINDOWS)  # the current run's windows
        self._open: AlertRecord | None = None  # the record whose run goes on
        self._recent: deque[np.ndarray] = deque(maxlen=RECENT_WINDOWS)
        self._load()

    # -- the worker feeds it ----------------------------------------------------------------------

    def window(self, embedding: np.ndarray | None, *, over: bool, overlap: int = 0) -> None:
        """A scored window (``over``: over the threshold); a window without embedding ends the run.
        ``overlap``: how many windows before this one share audio with it (window length over hop, less one)."""
        if embedding is None or not over:
            self.end_run()
            if embedding is not None:
                self._recent.append(np.asarray(embedding, dtype=np.float32).reshape(-1))
            return
        if not self._run:  # a run begins: the windows it overlaps heard its start
            for _ in range(min(overlap, len(self._recent))):
                self._recent.pop()
        e = np.asarray(embedding, dtype=np.float32).reshape(-1)
        self._run.append(e)
        if self._open is not None and len(self._open.windows) < MAX_ACCEPTED_WINDOWS:
            self._open.windows.append(e)

    def end_run(self) -> None:
        """The run over the threshold ended (a window under it, a silent one, a gap): close its record."""
        self._run.clear()
        if self._open is not None:
            record, self._open = self._open, None
            if record.seq in self._records and len(record.windows) > record.saved:  # not pruned meanwhile
                self._save(record)

    def flagged(self, fingerprint: str | None) -> AlertRecord:
        """The detector flagged the last window: a record with the run's windows (embeddings of the
        front end and embedding ``fingerprint`` names), open while the run goes on."""
        if self._open is not None and self._open.seq in self._records and len(self._open.windows) > self._open.saved:
            self._save(self._open)
        self._open = AlertRecord(windows=list(self._run), fingerprint=fingerprint)
        return self._open

    def alerted(self, record: AlertRecord, **fields: Any) -> None:
        """The alert of ``record`` was emitted with ``fields`` (seq, machine, clip, ...): keep and save it."""
        for k, v in fields.items():
            setattr(record, k, v)
        self._records[record.seq] = record
        self._records.move_to_end(record.seq)
        self._save(record)
        while len(self._records) > self.keep:
            old, _ = self._records.popitem(last=False)
            self._delete(old)

    def forget_recent(self) -> None:
        """Another front end, embedding or machine: the recent windows and the run no longer apply."""
        self._recent.clear()
        self.end_run()

    # -- feedback reads it ------------------------------------------------------------------------

    def get(self, seq: int) -> AlertRecord | None:
        return self._records.get(seq)

    def recent(self) -> np.ndarray:
        """The recent normal windows ``(n, D)`` float64, oldest first."""
        return np.stack(self._recent).astype(np.float64) if self._recent else np.zeros((0, 0))

    def status(self) -> dict[str, Any]:
        seqs = list(self._records)
        return {"kept_alerts": len(seqs), "oldest_kept": seqs[0] if seqs else None,
                "recent_normal_windows": len(self._recent)}

    @property
    def oldest(self) -> int | None:
        return next(iter(self._records), None)

    # -- disk -------------------------------------------------------------------------------------

    def _path(self, seq: int) -> Path | None:
        return None if self.directory is None else self.directory / f"a{seq}.npz"

    def _save(self, record: AlertRecord) -> None:
        path = self._path(record.seq)
        if path is None:
            record.saved = len(record.windows)
            return
        try:
            with atomic_file(path) as fh:
                fh.write(record.to_bytes())
            record.saved = len(record.windows)
        except OSError as exc:  # feedback on it needs this process to live on; alerts go on regardless
            log.warning("feedback: alert %d's windows not saved (%s): a verdict after a restart will not find them",
                        record.seq, exc)

    def _delete(self, seq: int) -> None:
        path = self._path(seq)
        if path is not None:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("feedback: %s not deleted: %s", path, exc)

    def _load(self) -> None:
        if self.directory is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            names = sorted((int(m.group(1)), p) for p in self.directory.iterdir() if (m := _NAME.fullmatch(p.name)))
        except OSError as exc:
            log.warning("feedback: alert records in %s unreadable: %s", self.directory, exc)
            return
        for seq, _ in names[:-self.keep]:
            self._delete(seq)
        for seq, path in names[-self.keep:]:
            try:
                record = AlertRecord.from_bytes(path.read_bytes())
            except (OSError, ValueError) as exc:
                log.warning("feedback: %s skipped: %s", path.name, exc)
                continue
            if record.seq == seq:
                self._records[seq] = record
