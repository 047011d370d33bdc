"""The runtime's outlet in hub mode: every message is committed to the durable outbox.

:meth:`OutboxSink.emit` is a quick local SQLite write (the audio worker never waits on the
network) followed by a wake-up of the sender and, for an alert with a clip, of the uploader. It
never raises. A message the outbox cannot store now (the disk is full, the database is locked)
waits in memory, in order, and is stored at the next emit, once space returns: nothing accepted
is lost while the process lives (at most :data:`MAX_WAITING` messages wait; past that the oldest
telemetry goes first, as in the outbox). Clips are written by the runtime straight into the spool
(:attr:`clip_dir`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..events import message_properties
from .outbox import MessageTooLargeError, Outbox, OutboxError
from .spool import Spool

__all__ = ["MAX_WAITING", "OutboxSink"]

log = logging.getLogger(__name__)

MAX_WAITING = 1000


class OutboxSink:
    """Alerts and telemetry into ``outbox``; ``wake_sender``/``wake_uploader`` are nudged after."""

    def __init__(self, outbox: Outbox, spool: Spool, *, wake_sender: Callable[[], None] = lambda: None,
                 wake_uploader: Callable[[], None] = lambda: None) -> None:
        self.outbox = outbox
        self.spool = spool
        self.wake_sender = wake_sender
        self.wake_uploader = wake_uploader
        self.errors = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._waiting: deque[tuple[str, dict]] = deque()

    @property
    def clip_dir(self) -> Path:
        """Where the runtime writes flagged clips: the spool itself."""
        return self.spool.root

    @property
    def waiting(self) -> int:
        """Messages held in memory until the outbox can store them."""
        return len(self._waiting)

    def emit(self, output: str, message: dict) -> None:
        """Commit ``message`` to the outbox for ``output`` and wake the sender; never raises."""
        self._waiting.append((output, message))
        self.flush()

    def flush(self) -> bool:
        """Store what waits in memory, in order; True when nothing is left waiting."""
        made_room = False
        while self._waiting:
            out, msg = self._waiting[0]
            try:
                entry = self.outbox.put(out, msg, message_properties(msg))
            except MessageTooLargeError as exc:  # this message can never be stored
                self._waiting.popleft()
                self._failed(f"dropped a {out} message the outbox refuses: {exc}")
                continue
            except OutboxError as exc:  # the disk or the database: it may come back; keep it (and what follows) in order
                if not made_room:  # clips are what fills a spool's disk: keep its reserve free, and try again
                    made_room = True
                    if self.spool.enforce_quota():
                        continue
                self._failed(f"could not store a {out} message yet ({len(self._waiting)} waiting in memory): {exc}")
                self._bound()
                return False
            except (ValueError, TypeError) as exc:  # not JSON: it can never be stored
                self._waiting.popleft()
                self._failed(f"dropped a {out} message the outbox refuses: {exc}")
                continue
            self._waiting.popleft()
            if out == "alerts":
                log.info("alert %s: %s score %.3f (clip %s)", entry.seq, msg.get("label"),
                         float(msg.get("score") or 0.0), msg.get("clip"))
            if msg.get("clip"):
                self.spool.enforce_quota()  # the clip just written may have taken the disk's reserve
                self.wake_uploader()
        self.wake_sender()
        return True

    def _failed(self, reason: str) -> None:
        self.errors += 1
        self.last_error = f"outbox: {reason}"
        log.error("hub: %s", reason)

    def _bound(self) -> None:
        while len(self._waiting) > MAX_WAITING:
            victim = next((i for i, (o, _) in enumerate(self._waiting) if o != "alerts"), 0)
            del self._waiting[victim]
            self.dropped += 1

    def close(self) -> None:
        """Nothing of its own to release: the outbox belongs to the hub application."""
