"""The sender: the outbox's messages to IoT Hub outputs, in order, each removed once confirmed.

:class:`OutboxSender` runs one thread. While the connection is up it sends the outbox's head with
``send_message_to_output`` (which returns once IoT Hub acknowledged it: PUBACK), then acks it in
the outbox; a failed send is counted, the message stays at the head, and the next try waits a
growing backoff. A message whose confirmation was lost is sent again with the same ``seq``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from azure.iot.device import Message

from ..backoff import Backoff
from .outbox import Entry, Outbox, OutboxError
from .pnp import COMPONENTS

__all__ = ["OutboxSender", "to_message"]

log = logging.getLogger(__name__)


def to_message(entry: Entry) -> Message:
    """The SDK message for an outbox entry: JSON body, its properties, ``seq``, a message id, and
    the Plug and Play component its fields belong to (``$.sub``, :data:`.pnp.COMPONENTS`)."""
    msg = Message(entry.body, message_id=entry.message_id, content_encoding="utf-8",
                  content_type="application/json")
    msg.custom_properties.update(entry.properties)
    msg.custom_properties["seq"] = str(entry.seq)
    component = COMPONENTS.get(entry.output)
    if component is not None:
        msg.custom_properties["$.sub"] = component  # the SDK's own convention for a component's telemetry
    return msg


class OutboxSender:
    """Sends ``outbox`` through ``client`` while ``connected`` is set, until ``stop`` is."""

    def __init__(self, client: Any, outbox: Outbox, *, connected: threading.Event, stop: threading.Event,
                 backoff: Backoff | None = None) -> None:
        self._client = client
        self._outbox = outbox
        self._connected = connected
        self._stop = stop
        self._wake = threading.Event()
        self._backoff = backoff or Backoff(initial=0.5, maximum=30.0)
        self.failures = 0
        self.last_error: str | None = None

    def wake(self) -> None:
        """A message was queued (or the connection came back): look now, not at the next poll."""
        self._wake.set()

    def run(self) -> None:
        """The thread's loop; it survives anything (a full disk failing the outbox's writes, too)."""
        while not self._stop.is_set():
            try:
                self._step()
            except OutboxError as exc:  # e.g. ENOSPC on the ack: the message stays, sent again later
                self.failures += 1
                self.last_error = f"outbox: {exc}"
                delay = self._backoff.next()
                log.warning("hub: %s; next try in %.1f s", self.last_error, delay)
                self._stop.wait(delay)

    def _step(self) -> None:
        """Send the head of the outbox, or wait for one (or for the connection)."""
        if not self._connected.is_set():
            self._wait(1.0)
            return
        entry = self._outbox.head()
        if entry is None:
            self._wait(1.0)
            return
        try:
            self._client.send_message_to_output(to_message(entry), entry.output)
        except Exception as exc:  # noqa: BLE001 - disconnected, dropped, timed out: retry later
            self.failures += 1
            self.last_error = f"send failed: {type(exc).__name__}: {exc}"
            self._outbox.failed(entry)
            delay = self._backoff.next()
            log.warning("hub: %s; %d queued, next try in %.1f s", self.last_error, len(self._outbox), delay)
            self._stop.wait(delay)
            return
        self._outbox.ack(entry)
        self._backoff.reset()

    def _wait(self, timeout: float) -> None:
        self._wake.wait(timeout)
        self._wake.clear()
