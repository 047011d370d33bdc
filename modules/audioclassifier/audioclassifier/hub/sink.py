"""The runtime's outlet in hub mode: every message is committed to the durable outbox.

:meth:`OutboxSink.emit` is a quick local SQLite write (the audio worker never waits on the
network) followed by a wake-up of the sender and, for an alert with a clip, of the uploader. It
never raises: a message the outbox refuses is counted and logged. Clips are written by the runtime
straight into the spool (:attr:`clip_dir`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ..events import message_properties
from .outbox import Outbox, OutboxError
from .spool import Spool

__all__ = ["OutboxSink"]

log = logging.getLogger(__name__)


class OutboxSink:
    """Alerts and telemetry into ``outbox``; ``wake_sender``/``wake_uploader`` are nudged after."""

    def __init__(self, outbox: Outbox, spool: Spool, *, wake_sender: Callable[[], None] = lambda: None,
                 wake_uploader: Callable[[], None] = lambda: None) -> None:
        self.outbox = outbox
        self.spool = spool
        self.wake_sender = wake_sender
        self.wake_uploader = wake_uploader
        self.errors = 0
        self.last_error: str | None = None

    @property
    def clip_dir(self) -> Path:
        """Where the runtime writes flagged clips: the spool itself."""
        return self.spool.root

    def emit(self, output: str, message: dict) -> None:
        """Commit ``message`` to the outbox for ``output`` and wake the sender; never raises."""
        try:
            entry = self.outbox.put(output, message, message_properties(message))
        except (OutboxError, ValueError, TypeError) as exc:
            self.errors += 1
            self.last_error = f"outbox: {exc}"
            log.error("hub: could not queue a %s message: %s", output, exc)
            return
        if output == "alerts":
            log.info("alert %s: %s score %.3f (clip %s)", entry.seq, message.get("label"),
                     float(message.get("score") or 0.0), message.get("clip"))
        self.wake_sender()
        if message.get("clip"):
            self.wake_uploader()

    def close(self) -> None:
        """Nothing of its own to release: the outbox belongs to the hub application."""
