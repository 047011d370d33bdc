"""Feedback: a technician's verdict on an alert teaches the device and labels the clip.

The ``feedback`` direct method (arguments in :data:`audioclassifier.constraints.METHODS`) reaches
:meth:`Feedback.give` on the runtime's worker:

* ``false_alarm``: the alert's windows (:class:`~audioclassifier.alertwindows.AlertWindows`) become an
  accepted sound of the machine's learned normal model
  (:meth:`audioclassifier.onsite.OnsiteLearning.accept`), saved at once: the same sound stops
  alarming. Without a learned model, the first false alarm starts one from the recent normal
  windows (see :mod:`audioclassifier.onsite`). The clip's label defaults to ``normal``.
* ``confirmed``: the alert was right; ``label`` (default: the alert's own, e.g. ``anomaly``) says
  what it was (``bearing``). Nothing changes in detection.
* ``undo``: the verdict given on that alert is withdrawn (a false alarm's sound alarms again).

Either way the verdict is kept in the module's history (``<directory>/verdicts.json``: the last
:data:`HISTORY` verdicts with label and note, and counters) and returned with the clip's name, so
the hub side marks the clip (blob metadata and index tags, or a sidecar JSON: :mod:`.hub.marks`)
for ``python -m ml dataset pull``.

A verdict on an alert that already has another one is refused (undo it first); the same verdict
again changes nothing. Errors: :class:`UnknownAlertError` (the alert is not among those kept: 404),
:class:`FeedbackConflictError` (the verdict cannot apply as things stand: 409).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from audioclassifier.alertwindows import AlertWindows
from audioclassifier.durable import atomic_file
from audioclassifier.errors import AuscultError
from audioclassifier.events import iso_utc
from audioclassifier.onsite import OnsiteError, OnsiteLearning

__all__ = ["HISTORY", "VERDICTS", "Feedback", "FeedbackConflictError", "FeedbackError", "UnknownAlertError"]

log = logging.getLogger(__name__)

VERDICTS = ("false_alarm", "confirmed", "undo")
#: Verdicts kept in the history file (the oldest go first).
HISTORY = 1000
#: The label a false alarm's clip gets when the technician gives none.
NORMAL_LABEL = "normal"


class FeedbackError(AuscultError):
    """A verdict that could not be applied; the message says why."""


class UnknownAlertError(FeedbackError):
    """No such alert among those the module keeps (404)."""


class FeedbackConflictError(FeedbackError):
    """The verdict cannot apply as things stand (409): another verdict stands, the model cannot learn, ..."""


class Feedback:
    """Verdicts, their history and counters; :meth:`give` applies one (the worker calls it)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.verdicts: dict[int, dict[str, Any]] = {}  # seq -> the verdict standing (or undone) on that alert
        self.counts = {"false_alarm": 0, "confirmed": 0, "undo": 0}
        self.last: dict[str, Any] | None = None
        self.last_error: str | None = None
        self._load()

    def give(self, seq: int, verdict: str, *, label: str | None, note: str | None, alerts: AlertWindows,
             onsite: OnsiteLearning, hop_seconds: float) -> dict[str, Any]:
        """Apply ``verdict`` on alert ``seq``; returns what was done, with the clip's mark (``mark``)."""
        if verdict not in VERDICTS:
            raise FeedbackConflictError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
        standing = self.verdicts.get(seq)
        if standing is not None and standing["verdict"] == "undone":
            standing = None
        if verdict == "undo":
            return self._undo(seq, standing, onsite)
        record = alerts.get(seq)
        if record is None:
            oldest = alerts.oldest
            kept = f"the module keeps the last {alerts.keep} alerts" + (f" (from {oldest} on)" if oldest else " (none yet)")
            raise UnknownAlertError(f"alert {seq} is unknown: {kept}")
        label = label or (NORMAL_LABEL if verdict == "false_alarm" else record.label or "anomaly")
        if standing is not None:
            if (standing["verdict"], standing["label"]) == (verdict, label):
                return {**self._answer(standing), "changed": False}
            raise FeedbackConflictError(f"alert {seq} is already marked {standing['verdict']} "
                                        f"(label {standing['label']}): undo it first")
        entry = {"seq": seq, "verdict": verdict, "label": label, "note": note, "at": iso_utc(time.time()),
                 "machine": record.machine, "clip": record.clip, "model": record.model,
                 "alert_time": iso_utc(record.time), "score": record.score}
        if verdict == "false_alarm":
            entry["normal_model"] = self._teach(seq, record, entry, alerts, onsite, hop_seconds)
        self.counts[verdict] += 1
        self._keep(entry)
        log.info("feedback: alert %d (%s, clip %s) marked %s, label %s", seq, record.machine, record.clip, verdict,
                 label)
        return {**self._answer(entry), "changed": True}

    def status(self, onsite: OnsiteLearning, alerts: AlertWindows) -> dict[str, Any]:
        """Counters, what stands now, the last verdict; the same keys always (the twin merges)."""
        standing = [v for v in list(self.verdicts.values()) if v["verdict"] != "undone"]
        model = onsite.model
        return {"given": dict(self.counts),
                "false_alarms": sum(v["verdict"] == "false_alarm" for v in standing),
                "confirmed": sum(v["verdict"] == "confirmed" for v in standing),
                "accepted_sounds": 0 if model is None else len(model.accepted),
                "last": self.last, "error": self.last_error, **alerts.status()}

    # -- the verdicts -----------------------------------------------------------------------------

    def _teach(self, seq: int, record: Any, entry: dict[str, Any], alerts: AlertWindows, onsite: OnsiteLearning,
               hop_seconds: float) -> dict[str, Any]:
        if not onsite.can_learn:
            raise FeedbackConflictError("the model cannot learn (its card has no embedding output): a false alarm "
                                        "cannot teach it; set a higher threshold, or deploy a model that can learn")
        if record.fingerprint != onsite.fingerprint or not record.windows:
            raise FeedbackConflictError(f"alert {seq} was scored with another model's features (model "
                                        f"{record.model}): its windows cannot teach the model in use")
        if record.machine != onsite.machine:
            raise FeedbackConflictError(f"alert {seq} was for machine {record.machine!r}; the module now listens to "
                                        f"{onsite.machine!r}: its windows cannot teach that machine's model")
        recent = alerts.recent()
        try:
            return onsite.accept(seq, record.embeddings(), recent=recent, recent_seconds=len(recent) * hop_seconds,
                                 hop_seconds=hop_seconds,
                                 meta={"label": entry["label"], "note": entry["note"], "at": entry["at"],
                                       "clip": record.clip})
        except OnsiteError as exc:
            raise FeedbackConflictError(str(exc)) from None

    def _undo(self, seq: int, standing: dict[str, Any] | None, onsite: OnsiteLearning) -> dict[str, Any]:
        if standing is None:
            raise FeedbackConflictError(f"alert {seq} has no verdict to undo")
        undone = {**standing, "verdict": "undone", "undid": standing["verdict"], "at": iso_utc(time.time())}
        if standing["verdict"] == "false_alarm":
            undone["normal_model"] = onsite.forget(seq)
        self.counts["undo"] += 1
        self._keep(undone)
        log.info("feedback: the %s verdict on alert %d is undone", standing["verdict"], seq)
        return {**self._answer(undone), "changed": True}

    @staticmethod
    def _answer(entry: dict[str, Any]) -> dict[str, Any]:
        """The method's answer and the clip's mark, from a history entry."""
        mark = None
        if entry.get("clip"):
            mark = {k: entry.get(k) for k in ("clip", "verdict", "label", "machine", "seq", "note", "at", "model",
                                               "alert_time")}
        return {**{k: v for k, v in entry.items() if k != "note" or v is not None}, "mark": mark}

    # -- history ----------------------------------------------------------------------------------

    def _keep(self, entry: dict[str, Any]) -> None:
        self.verdicts[entry["seq"]] = entry
        while len(self.verdicts) > HISTORY:
            del self.verdicts[min(self.verdicts)]
        self.last = {k: entry.get(k) for k in ("seq", "verdict", "label", "at", "machine", "clip")}
        self._save()

    def _path(self) -> Path | None:
        return None if self.directory is None else self.directory / "verdicts.json"

    def _save(self) -> None:
        path = self._path()
        if path is None:
            return
        data = {"counts": self.counts, "verdicts": list(self.verdicts.values())}
        try:
            with atomic_file(path) as fh:
                fh.write(json.dumps(data, allow_nan=False).encode())
            self.last_error = None
        except (OSError, ValueError) as exc:
            self.last_error = f"verdicts not saved: {exc}"
            log.error("feedback: %s", self.last_error)

    def _load(self) -> None:
        path = self._path()
        if path is None or not path.is_file():
            return
        try:
            data = json.loads(path.read_text())
            verdicts = [v for v in data["verdicts"] if isinstance(v, dict) and isinstance(v.get("seq"), int)]
            counts = {k: int(data["counts"].get(k, 0)) for k in self.counts}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self.last_error = f"verdict history {path.name} unreadable ({exc}): starting a new one"
            log.error("feedback: %s", self.last_error)
            return
        self.verdicts = {v["seq"]: v for v in sorted(verdicts, key=lambda v: v["seq"])[-HISTORY:]}
        self.counts = counts
        if self.verdicts:
            last = max(self.verdicts.values(), key=lambda v: str(v.get("at")))
            self.last = {k: last.get(k) for k in ("seq", "verdict", "label", "at", "machine", "clip")}
