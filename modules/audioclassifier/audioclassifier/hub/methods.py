"""Direct methods: one table of handlers, arguments checked by :data:`constraints.METHODS`.

:func:`dispatch` parses a method payload (an object, ``null``, or a JSON string holding one),
checks its arguments against the method's table, calls the handler and maps errors to answers:
400 for a bad payload or argument (with the reason), 404 for an unknown method (or, for
``feedback``, an alert the module does not keep), 409 when the runtime refuses the request as it
stands (a calibration or learning already running, a model that cannot learn, another verdict
standing on the alert), 500 for a failure.
Handlers are small functions of a :class:`MethodContext` and the checked arguments, testable
without a broker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..constraints import METHODS, ConstraintError, check_arguments
from ..errors import AuscultError
from ..feedback import FeedbackConflictError, UnknownAlertError
from ..onsite import OnsiteError
from ..runtime import CalibrationError, CaptureError
from . import sdkjson
from .reporting import redacted
from .spool import Spool

__all__ = ["MethodContext", "dispatch"]

log = logging.getLogger(__name__)

Answer = tuple[int, Any]


@dataclass
class MethodContext:
    """What the handlers reach: the runtime's control surface and the hub side's parts."""

    control: Any  # RuntimeControl
    status: Callable[[], dict[str, Any]]
    spool: Spool
    clip_queued: Callable[[], None]
    calibration_started: Callable[[dict[str, Any]], None]
    calibration_done: Callable[[dict[str, Any]], None]
    feedback_given: Callable[[dict[str, Any]], str | None] = lambda outcome: None


def parse_payload(payload: Any) -> dict[str, Any]:
    """A method payload as a dict (``{}`` for none); a JSON string is parsed (bounded, as the SDK's
    own parsing is: :mod:`.sdkjson`). ValueError with a short reason otherwise."""
    if payload is None:
        return {}
    if isinstance(payload, str):  # a JSON string the SDK decoded: it may hold a JSON object
        payload = sdkjson.loads(payload) if payload.strip() else {}
        if isinstance(payload, dict) and "not JSON" in str(payload.get(sdkjson.REFUSED, "")):
            raise ValueError("payload must be a JSON object, got str")
    if isinstance(payload, dict) and sdkjson.REFUSED in payload:
        raise ValueError(str(payload[sdkjson.REFUSED]))
    if not isinstance(payload, dict):
        raise ValueError(f"payload must be a JSON object, got {type(payload).__name__}")
    return payload


def _get_status(ctx: MethodContext, args: dict[str, Any]) -> Answer:
    return 200, redacted(ctx.status())


def _reload_model(ctx: MethodContext, args: dict[str, Any]) -> Answer:
    return 200, redacted(dict(ctx.control.reload_model() or {}))


def _self_test(ctx: MethodContext, args: dict[str, Any]) -> Answer:
    result = dict(ctx.control.self_test() or {})
    return (200 if result.get("ok", True) else 500), redacted(result)


def _capture_clip(ctx: MethodContext, args: dict[str, Any]) -> Answer:
    path = Path(ctx.control.capture_clip(args["seconds"], args["label"]))
    try:
        name = path.resolve().relative_to(ctx.spool.root.resolve()).as_posix()
    except ValueError:  # written elsewhere: spool a copy so it is uploaded all the same
        name = ctx.spool.put(f"captures/{path.name}", path.read_bytes()).name
    ctx.clip_queued()
    return 200, {"clip": name, "seconds": args["seconds"], "label": args["label"], "upload": "queued"}


def _calibrate(ctx: MethodContext, args: dict[str, Any]) -> Answer:
    """Start a site calibration and answer 202 at once (a method call would time out); the outcome
    goes to reported ``calibration`` (and the threshold in force to ``settings``)."""
    state = ctx.control.start_calibration(args["seconds"], args["percentile"], on_done=ctx.calibration_done)
    ctx.calibration_started(state)
    return 202, redacted(state)


def _learn(ctx: MethodContext, args: dict[str, Any]) -> Answer:
    """Start on-site learning and answer 202 at once with the running state; every later state
    (learned, failed) goes to reported ``learning``."""
    return 202, redacted(ctx.control.start_learning(args["seconds"]))


def _feedback(ctx: MethodContext, args: dict[str, Any]) -> Answer:
    """A technician's verdict on an alert (:mod:`audioclassifier.feedback`); the clip's mark is kept
    for the uploader (``mark``: ``queued``, or null when the alert has no clip)."""
    outcome = dict(ctx.control.feedback(args["seq"], args["verdict"], args["label"], args["note"]))
    mark = outcome.pop("mark", None)
    outcome["mark"] = ctx.feedback_given({**outcome, "mark": mark})
    return 200, redacted(outcome)


HANDLERS: dict[str, Callable[[MethodContext, dict[str, Any]], Answer]] = {
    "getStatus": _get_status,
    "captureClip": _capture_clip,
    "reloadModel": _reload_model,
    "selfTest": _self_test,
    "calibrate": _calibrate,
    "learn": _learn,
    "feedback": _feedback,
}
assert set(HANDLERS) == set(METHODS), "every method has a handler and an argument table"


def dispatch(name: str, payload: Any, ctx: MethodContext) -> Answer:
    """Answer the direct method ``name`` (see the module docstring)."""
    handler = HANDLERS.get(name)
    if handler is None:
        return 404, {"error": f"unknown method {str(name)[:64]!r}; known: {', '.join(HANDLERS)}"}
    try:
        args = check_arguments(name, parse_payload(payload))
    except ConstraintError as exc:
        return 400, {"error": f"{exc.name}: {exc.reason}"}
    except ValueError as exc:
        return 400, {"error": str(exc)}
    try:
        return handler(ctx, args)
    except UnknownAlertError as exc:
        return 404, {"error": str(exc)}
    except (CalibrationError, OnsiteError, FeedbackConflictError) as exc:
        return 409, {"error": str(exc)}
    except CaptureError as exc:
        return 500, {"error": str(exc)}
    except AuscultError as exc:
        log.warning("hub: method %s failed: %s", name, exc)
        return 500, {"error": redacted(str(exc))}
