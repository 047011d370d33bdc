"""One declarative table of what every setting, option and method argument accepts.

The scikit-learn ``_parameter_constraints`` idea: each value the module takes from outside (the
command line, the environment, the module twin, a direct method's payload) is described once, by
a :class:`Param`, and every consumer is rendered from it:

* :meth:`Param.check` takes a JSON value (twin, method payload) and returns it typed, or raises
  :class:`ConstraintError` with the reason: wrong types, ``NaN``, infinities, ``1e400``, booleans
  passed as numbers and over-long strings are refused per field, never with a traceback;
* :meth:`Param.parse` takes text (command line, environment) and applies the same check, as an
  ``argparse`` ``type=`` (it raises ``argparse.ArgumentTypeError``);
* :meth:`Param.accepted` says in words what is accepted, for ``--help``, error messages and the
  twin table of docs/reference.md (a test renders the table and compares).

The tables: :data:`SETTINGS` (the twin's desired properties, live), :data:`METHODS` (direct-method
arguments) and :data:`OPTIONS` (start-up options that are not twin settings).
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audioclassifier.errors import AuscultError

__all__ = ["METHODS", "OPTIONS", "SETTINGS", "ConstraintError", "Param", "check_arguments", "markdown_table"]


class ConstraintError(AuscultError, ValueError):
    """A refused value: ``name`` is the field (dotted when nested), ``reason`` says why."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")


_MAX_TEXT = 4096  # no accepted string is longer; longer input is refused before any other check


def _short(value: Any) -> str:
    """``repr`` of a refused value, bounded (a 1 MB twin value must not come back in a report)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Param:
    """What one named value accepts.

    ``kind`` is ``float``, ``int``, ``bool`` or ``str``. Numbers may be bounded by ``lo``/``hi``
    (closed unless ``lo_open``/``hi_open``); strings by ``choices`` (matched case-insensitively and
    returned in the table's spelling), a regular expression ``pattern`` (full match) and
    ``max_length``. ``nullable`` admits ``None`` (``threshold``: the model card's).
    """

    name: str
    kind: type
    default: Any
    doc: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    max_length: int = 256
    nullable: bool = False
    strip: bool = False  # surrounding white space is dropped before the checks
    secret: bool = False  # never echoed back in reports or logs
    required: bool = False  # a method argument that must be given (no default)
    accepts: str | None = None  # the accepted values in words, where the rule's own rendering is unclear
    default_text: str | None = None  # the default in words ("from the model card")

    # -- checking ------------------------------------------------------------------------------

    def check(self, value: Any) -> Any:
        """``value`` (a JSON value) typed and checked; raises :class:`ConstraintError`."""
        if value is None:
            if self.nullable:
                return None
            raise ConstraintError(self.name, "must not be null")
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ConstraintError(self.name, f"must be true or false, got {_short(value)}")
            return value
        if self.kind in (int, float):
            return self._number(value)
        if not isinstance(value, str):
            want = f"one of {', '.join(self.choices)}" if self.choices else "a string"
            raise ConstraintError(self.name, f"must be {want}, got {_short(value)}")
        return self._text(value.strip() if self.strip else value)

    def _number(self, value: Any) -> float | int:
        want = "an integer" if self.kind is int else "a finite number"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConstraintError(self.name, f"must be {want}, got {_short(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConstraintError(self.name, f"must be {want}, got {_short(value)}")
        if self.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ConstraintError(self.name, f"must be an integer, got {_short(value)}")
            value = int(value)
        if not self._in_range(value):
            raise ConstraintError(self.name, f"must be in {self._interval()}, got {_short(value)}")
        return value if self.kind is int else float(value)

    def _interval(self) -> str:
        lo = "-inf" if self.lo is None else _num(self.lo)
        hi = "inf" if self.hi is None else _num(self.hi)
        return f"{'(' if self.lo_open or self.lo is None else '['}{lo}, {hi}{')' if self.hi_open or self.hi is None else ']'}"

    def _in_range(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def _text(self, value: str) -> str:
        if not value:
            raise ConstraintError(self.name, "must be non-empty")
        if len(value) > min(self.max_length, _MAX_TEXT):
            raise ConstraintError(self.name, f"must be at most {self.max_length} characters, got {len(value)}")
        if self.choices is not None:
            for c in self.choices:
                if value.strip().lower() == c.lower():
                    return c
            raise ConstraintError(self.name, f"must be one of {', '.join(self.choices)}, got {_short(value)}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ConstraintError(self.name, f"must be {self.accepted()}, got {_short(value)}")
        return value

    def parse(self, text: str) -> Any:
        """Text (command line, environment) → the checked value; an ``argparse`` ``type=``."""
        try:
            return self.check(self._from_text(text))
        except ConstraintError as exc:
            raise argparse.ArgumentTypeError(exc.reason) from None

    def _from_text(self, text: str) -> Any:
        t = text.strip()
        if self.kind is bool:
            low = t.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise ConstraintError(self.name, f"must be true or false, got {_short(text)}")
        if self.kind in (int, float):
            if self.nullable and t == "":
                return None
            try:
                return int(t) if self.kind is int else float(t)
            except ValueError:
                kind = "an integer" if self.kind is int else "a finite number"
                raise ConstraintError(self.name, f"must be {kind}, got {_short(text)}") from None
        return text

    # -- describing ----------------------------------------------------------------------------

    def accepted(self) -> str:
        """What is accepted, in words ("0.05 to 60", "whole number 1 to 100", "`AUTO`, `CPU`")."""
        if self.accepts is not None:
            return self.accepts
        if self.kind is bool:
            return "`true` or `false`"
        if self.choices is not None:
            return ", ".join(f"`{c}`" for c in self.choices)
        if self.kind in (int, float):
            whole = "whole number " if self.kind is int else ""
            if self.lo is None and self.hi is None:
                return "a finite number" if self.kind is float else "a whole number"
            if self.lo is not None and self.hi is not None:
                if not self.lo_open and not self.hi_open:
                    return f"{whole}{_num(self.lo)} to {_num(self.hi)}"
                return (f"{whole}in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}"
                        f"{')' if self.hi_open else ']'}")
            if self.lo is not None:
                return f"{whole}{'>' if self.lo_open else '>='} {_num(self.lo)}"
            assert self.hi is not None
            return f"{whole}{'<' if self.hi_open else '<='} {_num(self.hi)}"
        if self.pattern is not None:
            return f"text matching `{self.pattern}`"
        return f"1 to {self.max_length} characters"


def _num(v: float) -> str:
    return f"{v:g}"


def markdown_table(table: Mapping[str, Param], *, first: str = "Setting") -> str:
    """The table as Markdown (docs/reference.md holds it verbatim; a test compares)."""
    rows = [f"| {first} | Default | Accepted values | Meaning |", "|---|---|---|---|"]
    for p in table.values():
        if p.required:
            default = "required"
        elif p.default_text is not None:
            default = p.default_text
        elif isinstance(p.default, bool):
            default = str(p.default).lower()
        else:
            default = str(p.default)
        rows.append(f"| `{p.name}` | {default} | {p.accepted()} | {p.doc} |")
    return "\n".join(rows)


def check_arguments(method: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """A direct method's arguments checked against :data:`METHODS`: unknown names refused, required
    ones demanded, missing ones given their defaults. Raises :class:`ConstraintError` for the first bad one."""
    table = METHODS[method]
    unknown = sorted(set(payload) - set(table))
    if unknown:
        raise ConstraintError(unknown[0], f"unknown argument; {method} takes {', '.join(table) or 'none'}")
    missing = [name for name, p in table.items() if p.required and name not in payload]
    if missing:
        raise ConstraintError(missing[0], "is required")
    return {name: p.check(payload[name]) if name in payload else p.default for name, p in table.items()}


DEVICES = ("AUTO", "CPU", "GPU", "NPU")
PRECISIONS = ("f32", "bf16", "f16", "device")
_LABEL = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_SHA256 = r"[0-9a-fA-F]{64}"

#: The module twin's desired properties (live settings). Nested ones are dotted.
SETTINGS: dict[str, Param] = {p.name: p for p in (
    Param("threshold", float, None, "anomaly score over which a window counts; the model card's "
          "calibrated threshold when unset", lo=-1e9, hi=1e9, nullable=True,
          accepts="a finite number (-1e9 to 1e9)", default_text="from the model card"),
    Param("hop_seconds", float, 1.0, "seconds between the starts of consecutive scored windows", lo=0.05, hi=60.0),
    Param("consecutive", int, 2, "windows in a row over the threshold before an alert", lo=1, hi=100),
    Param("cooldown_seconds", float, 30.0, "quiet time after an alert before the next one for the machine",
          lo=0.0, hi=86400.0),
    Param("energy_gate_dbfs", float, -70.0, "windows quieter than this are not scored (state `silent`)",
          lo=-200.0, hi=0.0),
    Param("telemetry_interval_seconds", float, 60.0, "seconds between telemetry summaries", lo=1.0, hi=86400.0),
    Param("health_window_seconds", float, 600.0, "seconds of scored audio the health index averages over "
          "(exponentially: older windows weigh less)", lo=10.0, hi=604800.0),
    Param("device", str, "AUTO", "OpenVINO device; AUTO picks the best available", choices=DEVICES),
    Param("precision", str, "f32", "OpenVINO inference precision. f32 gives the scores the model card's "
          "threshold was fitted with, on every CPU; lower precision (or `device`: bf16 on Intel CPUs with "
          "AMX, f16 on GPUs) is faster and moves scores by up to about 0.05. Reported as `precision` (what "
          "the compiled model runs at)", choices=PRECISIONS),
    Param("upload.enabled", bool, True, "upload alert clips (off: clips stay in the spool, alerts still go out)"),
    Param("upload.max_per_hour", int, 60, "clip uploads per hour at most (a flapping machine cannot flood "
          "storage; the rest stay in the spool)", lo=0, hi=3600),
    Param("model.url", str, "", "a new model to download (over-the-air update)",
          pattern=r"(https|file)://\S+", max_length=2048, secret=True, accepts="`https://` or `file://` URL",
          default_text="none"),
    Param("model.sha256", str, "", "its SHA-256; the model is used only if it matches", pattern=_SHA256,
          accepts="64 hexadecimal characters", default_text="none"),
    Param("model.version", str, "", "the version to report; the old model stays on any failure", max_length=128,
          accepts="1 to 128 characters", default_text="none"),
    Param("machine", str, "machine", "the machine's name in messages (the deployment sets it from "
          "`AUSCULT_MACHINE_NAME`)", max_length=128, strip=True),
)}

#: Direct-method arguments, per method (methods with no arguments have an empty table).
METHODS: dict[str, dict[str, Param]] = {
    "getStatus": {},
    "reloadModel": {},
    "selfTest": {},
    "captureClip": {p.name: p for p in (
        # The call blocks until the clip is written, and IoT Hub waits at most 300 s for an answer.
        Param("seconds", float, 10.0, "seconds of audio to record", lo=0.0, hi=60.0, lo_open=True),
        Param("label", str, "field", "the clip's label (in its name)", pattern=_LABEL,
              accepts="1-64 letters, digits, `-` or `_`, starting with a letter or digit"),
    )},
    "calibrate": {p.name: p for p in (
        Param("seconds", float, 300.0, "seconds of the machine's healthy sound to fit the threshold to",
              lo=1.0, hi=3600.0),
        Param("percentile", float, 99.5, "percentile of the gamma fit that becomes the threshold",
              lo=50.0, hi=100.0, lo_open=True, hi_open=True),
    )},
    "learn": {p.name: p for p in (
        Param("seconds", float, 300.0, "seconds of the machine's healthy sound to learn (on-site learning: "
              "its own normal model and threshold)", lo=5.0, hi=3600.0),
    )},
    "feedback": {p.name: p for p in (
        Param("seq", int, None, "the alert's `seq` (in its message and its clip's name, `-a<seq>`)", lo=1,
              required=True),
        Param("verdict", str, None, "`false_alarm`: the alert's sound is normal for this machine (it joins the "
              "learned normal model and stops alarming); `confirmed`: the alert was right; `undo`: withdraw the "
              "verdict given on that alert", choices=("false_alarm", "confirmed", "undo"), required=True),
        Param("label", str, None, "what the clip is, for the training tree `ROOT/<label>/<machine>/` (`bearing`); "
              "default `normal` for a false alarm, the alert's own label when confirmed", pattern=_LABEL,
              max_length=64, nullable=True, accepts="1-64 letters, digits, `-` or `_`, starting with a letter or digit",
              default_text="see meaning"),
        Param("note", str, None, "free text kept with the verdict and on the clip", max_length=500, nullable=True,
              strip=True, accepts="1 to 500 characters", default_text="none"),
    )},
}

#: Start-up options that are not twin settings (command line and environment only).
OPTIONS: dict[str, Param] = {p.name: p for p in (
    Param("calibrate_seconds", float, 0.0, "site calibration at start: seconds of audio (0 = off)",
          lo=0.0, hi=3600.0),
    Param("calibrate_percentile", float, 99.5, "percentile of the calibration's gamma fit",
          lo=50.0, hi=100.0, lo_open=True, hi_open=True),
    Param("learn_seconds", float, 0.0, "on-site learning at start: seconds of audio to learn the machine's "
          "normal sound from when no learned state exists for it (0 = off; needs a model whose card "
          "supports learning)", lo=0.0, hi=3600.0),
    Param("learn_alerts_per_day", float, 1.0, "on-site learning: the learned threshold is set for at most this "
          "many false alerts per day of the machine's normal sound (a learned model's score is sustained over "
          "9 s: more than half the windows must be over it). Lower: fewer false alerts, later and fewer "
          "detections of faint faults", lo=0.0, lo_open=True, hi=1440.0),
    Param("relearn", bool, False, "learn again at start (`learn_seconds`, else 300 s) even if a learned "
          "state exists"),
    Param("feedback_alerts", int, 100, "alerts whose windows and clip name are kept (on disk, in the state "
          "folder) for the `feedback` method; a verdict on an older alert is answered 404", lo=1, hi=10000),
    Param("spool_quota_mb", float, 500.0, "megabytes of clips the spool keeps (oldest go first)",
          lo=0.0, lo_open=True, hi=1e7),
    Param("outbox_quota_mb", float, 20.0, "megabytes of queued messages the outbox keeps (oldest telemetry "
          "goes first)", lo=0.0, lo_open=True, hi=1e6),
    Param("hub_reconnect_seconds", float, 10.0, "first wait before reconnecting to edgeHub (it doubles "
          "during an outage)", lo=1.0, hi=3600.0),
    Param("http_port", int, 0, "serve the live page, the REST API (`/api/status`, `/api/alerts`, `/api/clips/...`, "
          "`POST /api/score`) and `/metrics` on this TCP port (0 = off)", lo=0, hi=65535),
    Param("http_bind", str, "127.0.0.1", "address the page and API listen on. Loopback by default; any other "
          "address (`0.0.0.0` in a container whose port is published) requires `AUSCULT_HTTP_TOKEN` on every "
          "request", pattern=r"[A-Za-z0-9.:_-]+", max_length=253, strip=True,
          accepts="an IP address or host name"),
    Param("http_max_upload_mb", float, 20.0, "largest recording `POST /api/score` accepts, in megabytes "
          "(larger: 413)", lo=0.0, lo_open=True, hi=1024.0),
    Param("twin_wait_seconds", float, 5.0, "at start, seconds to wait for the module twin's desired properties "
          "before the first window is scored (then it starts from the last desired properties kept on disk)",
          lo=0.0, hi=300.0),
)}
