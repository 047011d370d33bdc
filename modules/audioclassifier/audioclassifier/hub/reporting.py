"""Reported properties: what leaves the device is plain, redacted JSON, and the status is re-sent
every minute.

:func:`redacted` turns any value into JSON data with every string passed through the secret
redaction (numpy scalars become numbers, paths strings, NaN/inf null). :class:`Reporter` sends
the status (``status``) and the settings in force (``settings``) periodically and on request.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .redact import redact

__all__ = ["REPORT_INTERVAL_SECONDS", "Reporter", "redacted"]

log = logging.getLogger(__name__)

REPORT_INTERVAL_SECONDS = 60.0


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
    """Sends ``{"status": status(), "settings": settings()}`` now (:meth:`report_status`) and every
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
        self.send({"status": self._status(), "settings": self._settings()})

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
