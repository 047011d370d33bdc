"""Reported properties: what leaves the device is plain, redacted JSON, and the status is re-sent
every minute.

:func:`redacted` turns any value into JSON data with every string passed through the secret
redaction (numpy scalars become numbers, paths strings, NaN/inf null). :class:`Reporter` sends
the status (``status``) and the settings in force (``settings``) periodically and on request.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .redact import redact

__all__ = ["MAX_REPORT_BYTES", "REPORT_INTERVAL_SECONDS", "PendingReports", "Reporter", "bounded", "redacted"]

log = logging.getLogger(__name__)

REPORT_INTERVAL_SECONDS = 60.0
#: IoT Hub keeps at most 32 KB of reported properties per twin; a patch is kept well under it.
MAX_REPORT_BYTES = 24 * 1024
_MAX_TEXT, _MAX_ITEMS = 256, 32


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


def _shrink(value: Any) -> Any:
    """Long strings cut, long lists and objects cut to their first items (with a count of the rest)."""
    if isinstance(value, str):
        return value if len(value) <= _MAX_TEXT else value[: _MAX_TEXT - 3] + "..."
    if isinstance(value, list):
        head = [_shrink(v) for v in value[:_MAX_ITEMS]]
        return head + ([f"... {len(value) - _MAX_ITEMS} more"] if len(value) > _MAX_ITEMS else [])
    if isinstance(value, dict):
        items = list(value.items())
        out = {str(k)[:_MAX_TEXT]: _shrink(v) for k, v in items[:_MAX_ITEMS]}
        if len(items) > _MAX_ITEMS:
            out["..."] = f"{len(items) - _MAX_ITEMS} more"
        return out
    return value


def bounded(patch: dict[str, Any], limit: int = MAX_REPORT_BYTES) -> dict[str, Any]:
    """``patch`` within ``limit`` bytes of JSON: as it is when it fits, else with long values cut,
    else with the largest top-level entries replaced by ``{"truncated": true, "bytes": n}``."""
    if _size(patch) <= limit:
        return patch
    out = _shrink(patch)
    for key in sorted(out, key=lambda k: _size(out[k]), reverse=True):
        if _size(out) <= limit:
            break
        out[key] = {"truncated": True, "bytes": _size(out[key])}
    return out


def redacted(value: Any) -> Any:
    """``value`` as plain JSON data with every string redacted (for anything that leaves the
    device): numpy scalars become numbers, paths and other objects strings, NaN/inf null."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redacted(v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        try:
            value = value.item()
        except (TypeError, ValueError):
            return redact(str(value))
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return redacted(value.to_dict())
    return redact(str(value))


class Reporter:
    """Sends ``{"status": status(), "settings": settings(), "health": status()["health"]}`` now (:meth:`report_status`) and every
    ``interval`` seconds from its own thread; ``send`` queues a reported-properties patch."""

    def __init__(self, send: Callable[[dict[str, Any]], None], status: Callable[[], dict[str, Any]],
                 settings: Callable[[], dict[str, Any] | None], *, interval: float = REPORT_INTERVAL_SECONDS) -> None:
        self._send = send
        self._status = status
        self._settings = settings
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, patch: dict[str, Any]) -> None:
        """Queue ``patch`` (redacted) for the reported properties."""
        self._send(redacted(patch))

    def report_status(self) -> None:
        """The status, the settings in force and the machine's health (also a top-level property)."""
        status = self._status()
        self.send({"status": status, "settings": self._settings(), "health": status.get("health")})

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="hub-reporter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.report_status()
            except Exception:
                log.exception("hub: periodic report failed")


def _deep_merge(into: dict, patch: Mapping) -> dict:
    for k, v in patch.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _deep_merge(into[k], v)
        else:
            into[k] = dict(v) if isinstance(v, Mapping) else v
    return into


def _status_code(exc: BaseException | None) -> int | None:
    """The status of a refused twin operation. The SDK says it only in the message of a
    ``ServiceError``, which its sync client wraps in a ``ClientError("Unexpected failure")``."""
    from azure.iot.device.exceptions import ServiceError

    while exc is not None:
        if isinstance(exc, ServiceError):
            m = re.search(r"status (\d{3})", str(exc))
            return int(m.group(1)) if m else None
        exc = exc.__cause__
    return None


class PendingReports:
    """Reported-properties patches merged until the connection sends them (``patch(doc)`` sends).

    :meth:`send` sends what is pending as one patch, bounded (:func:`bounded`). A patch the hub
    refuses (4xx but 429) is dropped, counted and said in :attr:`last_error`: sending it again
    cannot help, and it must not block the reports after it. Any other failure puts it back, under
    what was reported since, and raises (the connection retries).
    """

    def __init__(self, patch: Callable[[dict[str, Any]], Any]) -> None:
        self._patch = patch
        self._lock = threading.Lock()
        self._pending: dict[str, Any] = {}
        self._in_flight = 0  # patches taken but not yet answered: a flush waits for them too
        self.refused = 0
        self.last_error: str | None = None

    @property
    def pending(self) -> bool:
        """Something is waiting or on the wire (a shutdown that flushed before the answer lost it)."""
        return bool(self._pending) or self._in_flight > 0

    def add(self, patch: Mapping[str, Any]) -> None:
        with self._lock:
            _deep_merge(self._pending, patch)

    def send(self) -> None:
        with self._lock:
            patch, self._pending = self._pending, {}
            if not patch:
                return
            self._in_flight += 1
        try:
            self._send(patch)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _send(self, patch: dict[str, Any]) -> None:
        try:
            json.dumps(patch, allow_nan=False)
        except (TypeError, ValueError) as exc:  # retrying cannot help: drop it, loudly
            log.error("hub: dropped a reported-properties patch that is not JSON: %s", exc)
            return
        patch = bounded(patch)  # IoT Hub refuses reported properties over 32 KB
        try:
            self._patch(patch)
        except Exception as exc:
            status = _status_code(exc)
            if status is not None and 400 <= status < 500 and status != 429:
                self.last_error = f"reported properties refused by the hub ({status}); that report was dropped"
                log.error("hub: %s", self.last_error)
                self.refused += 1
                return
            with self._lock:  # under anything reported since
                self._pending = _deep_merge(patch, self._pending)
            raise
