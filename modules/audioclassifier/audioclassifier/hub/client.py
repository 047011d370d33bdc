"""One long-lived IoT Hub module connection (through edgeHub) that loses nothing.

:class:`HubClient` wraps ``azure.iot.device.IoTHubModuleClient`` and adds what the SDK leaves to
the application:

* the first connection is retried with backoff (the SDK only retries *after* a first success);
* messages are sent from the durable :class:`~audioclassifier.hub.outbox.Outbox` by one sender
  thread, in order, and acknowledged there only once the SDK confirmed the send (a send made while
  disconnected fails: it stays queued and is retried with backoff);
* after every reconnection the twin, twin-patch and method subscriptions are renewed and the twin
  is fetched again: the SDK never re-subscribes, so after a broker restart that lost the MQTT
  session the module would stay connected but deaf to methods and desired properties, and desired
  changes made while it was offline would never arrive;
* reported properties are merged and sent when connected, so a report is never lost either.

The application's logic (settings, methods, model updates) lives in :mod:`.sink`; this class only
moves data. It calls ``on_desired(desired, complete)`` and ``on_method(name, payload)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from azure.iot.device import IoTHubModuleClient, MethodResponse

from ..backoff import Backoff
from .outbox import Outbox
from .pnp import MODEL_ID
from .reporting import PendingReports
from .sender import OutboxSender

__all__ = ["HubClient"]

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 10.0
"""How long a twin request may wait for its answer; the SDK itself waits forever (a request whose
answer is lost, e.g. published while edgeHub's twin service was not yet up, would hang the hub)."""

MethodHandler = Callable[[str, Any], "tuple[int, Any]"]
DesiredHandler = Callable[[dict, bool], None]


def _call(fn: Callable[..., Any], *args: Any, timeout: float) -> Any:
    """``fn(*args)`` with a deadline: TimeoutError if it has not returned by then (it is left to
    finish or hang in its own daemon thread; SDK requests cannot be cancelled)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"hub-{getattr(fn, '__name__', 'call')}", daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(f"{getattr(fn, '__name__', 'request')} got no answer in {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


class HubClient:
    """Connection, confirmed sends, twin and methods over one ``IoTHubModuleClient``."""

    def __init__(
        self,
        client: IoTHubModuleClient,
        outbox: Outbox,
        *,
        on_desired: DesiredHandler,
        on_method: MethodHandler,
        backoff: Backoff | None = None,
    ) -> None:
        self._client = client
        self._outbox = outbox
        self._on_desired = on_desired
        self._on_method = on_method
        self._connect_backoff = Backoff(initial=1.0, maximum=30.0)
        self._stop = threading.Event()
        self._wake_control = threading.Event()
        # Only a connection state change (or stop) may cut a reconnect wait short: a report queued
        # during an outage must not turn the backoff into a retry every few seconds.
        self._state_changed = threading.Event()
        self._connected = threading.Event()
        self._ready = threading.Event()  # connected, subscribed and twin applied at least once
        self.sender = OutboxSender(client, outbox, connected=self._connected, stop=self._stop, backoff=backoff)
        self.reports = PendingReports(lambda patch: _call(self._client.patch_twin_reported_properties, patch,
                                                          timeout=REQUEST_TIMEOUT_SECONDS))
        self._resync = True
        self._desired_version = -1
        self._threads: list[threading.Thread] = []
        self.connects = 0
        self.resyncs = 0
        self.last_error: str | None = None

    @classmethod
    def from_edge_environment(cls, outbox: Outbox, *, on_desired: DesiredHandler, on_method: MethodHandler,
                              reconnect_seconds: float = 10.0) -> HubClient:
        """Build from the IoT Edge environment, which the SDK reads itself
        (:func:`audioclassifier.config.hub_configured`); nothing connects yet. The module's IoT
        Plug and Play model ID goes in ``product_info``: a DTMI there is sent as ``model-id`` in
        the MQTT user name, which is how a module announces its model (:mod:`.pnp`)."""
        client = IoTHubModuleClient.create_from_edge_environment(
            connection_retry=True, connection_retry_interval=max(1, int(reconnect_seconds)), keep_alive=30,
            product_info=MODEL_ID)
        return cls(client, outbox, on_desired=on_desired, on_method=on_method)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the control and sender threads; returns at once (connecting happens behind)."""
        for name, target in (("hub-control", self._control_loop), ("hub-sender", self.sender.run)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def send_failures(self) -> int:
        return self.sender.failures

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_ready(self, timeout: float) -> bool:
        """Wait until connected, subscribed and the twin applied (tests and start-up logs)."""
        return self._ready.wait(timeout)

    def wake(self) -> None:
        """A message was queued: send it now rather than at the next poll."""
        self.sender.wake()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the outbox to drain; True if it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self._outbox) == 0 and not self.reports.pending:
                return True
            self.sender.wake()
            self._wake_control.set()
            time.sleep(0.05)
        return len(self._outbox) == 0

    def close(self, flush_seconds: float = 5.0) -> None:
        """Flush what can be sent within ``flush_seconds`` (if connected), then shut the SDK down.

        What is left stays in the outbox for the next start.
        """
        if self.connected:
            self.flush(flush_seconds)
        self._stop.set()
        self.sender.wake()
        self._wake_control.set()
        self._state_changed.set()
        try:
            _call(self._client.shutdown, timeout=10.0)
        except Exception as exc:  # noqa: BLE001 - shutting down regardless (TimeoutError after 10 s)
            log.warning("hub: SDK shutdown: %s: %s; exiting anyway", type(exc).__name__, exc)
        for t in self._threads:
            t.join(timeout=2.0)

    # -- reported properties ----------------------------------------------------------------------

    def report(self, patch: Mapping[str, Any]) -> None:
        """Merge ``patch`` into the reported properties to send (now if connected, else later)."""
        self.reports.add(patch)
        self._wake_control.set()

    # -- control thread: connect, (re)subscribe, twin, reports ------------------------------------

    def _control_loop(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._client.connected:
                    self._connected.clear()
                    self._connect()
                    continue
                if self._resync:
                    self._subscribe_and_fetch_twin()
                self.reports.send()
            except Exception as exc:  # noqa: BLE001 - the loop must survive anything and retry
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("hub: %s; retrying", self.last_error)
                self._stop.wait(self._connect_backoff.next())
                continue
            self._wake_control.wait(1.0)
            self._wake_control.clear()

    def _connect(self) -> None:
        try:
            self._client.connect()
        except Exception as exc:  # noqa: BLE001 - unreachable hub, bad credentials, timeouts
            self.last_error = f"connect failed: {type(exc).__name__}: {exc}"
            delay = self._connect_backoff.next()
            log.warning("hub: %s; next try in %.1f s", self.last_error, delay)
            self._state_changed.wait(delay)  # the SDK's own reconnect (a state change) wakes us early
            self._state_changed.clear()
            return
        self.connects += 1
        self._connect_backoff.reset()
        self._resync = True
        self._connected.set()
        self.sender.wake()
        if self.connects == 1:
            # Set once: the SDK calls it on every connect and disconnect, its own reconnects included.
            self._client.on_connection_state_change = self._on_connection_state_change  # type: ignore[assignment]
            self._client.on_background_exception = self._on_background_exception
        log.info("hub: connected")

    def _on_connection_state_change(self) -> None:
        if self._client.connected:
            log.info("hub: reconnected; renewing subscriptions and fetching the twin")
            self._resync = True
            self._connected.set()  # sends need no subscription: they go on even if the twin fails
            self.sender.wake()
        else:
            log.warning("hub: disconnected; messages wait in the outbox")
            self._connected.clear()
            self._ready.clear()
        self._state_changed.set()
        self._wake_control.set()

    def _on_background_exception(self, exc: Exception) -> None:
        log.debug("hub: SDK background error: %s: %s", type(exc).__name__, exc)

    def _subscribe_and_fetch_twin(self) -> None:
        """(Re)subscribe to methods, desired patches and twin responses, then fetch the twin.

        Patches are subscribed before the twin is fetched, so nothing changed in between is missed;
        the twin's ``$version`` then tells later patches from ones already in the fetched state.
        """
        if self._client.on_method_request_received is None:
            self._client.on_method_request_received = self._handle_method
            self._client.on_twin_desired_properties_patch_received = self._handle_patch
        else:
            renew_subscriptions(self._client)
        twin = _call(self._client.get_twin, timeout=REQUEST_TIMEOUT_SECONDS)
        desired = dict(twin.get("desired") or {})
        self._desired_version = int(desired.get("$version", -1))
        self._resync = False
        self.resyncs += 1
        try:
            self._on_desired(desired, True)
        except Exception:
            log.exception("hub: applying the desired properties failed")
        self._ready.set()

    # -- SDK handler threads --------------------------------------------------------------------

    def _handle_patch(self, patch: dict) -> None:
        version = int(patch.get("$version", -1)) if isinstance(patch, dict) else -1
        if 0 <= version <= self._desired_version:
            return  # already in the twin fetched after subscribing
        self._desired_version = max(self._desired_version, version)
        try:
            self._on_desired(dict(patch), False)
        except Exception:
            log.exception("hub: applying a desired-properties patch failed")

    def _handle_method(self, request: Any) -> None:
        try:
            status, payload = self._on_method(request.name, request.payload)
        except Exception as exc:
            log.exception("hub: method %s failed", request.name)
            status, payload = 500, {"error": f"{type(exc).__name__}: {exc}"}
        try:
            self._client.send_method_response(MethodResponse.create_from_method_request(request, status, payload))
        except Exception as exc:  # noqa: BLE001 - the caller times out; nothing else to do
            log.warning("hub: could not answer method %s: %s", request.name, exc)


def renew_subscriptions(client: IoTHubModuleClient) -> None:
    """Subscribe again to every feature the client enabled.

    SDK quirk (azure-iot-device 2.14): features are subscribed once; after a reconnect whose
    session the broker lost (clean restart, failover) nothing re-subscribes them and the client is
    connected but deaf. MQTT SUBSCRIBE is idempotent, so renew every enabled one.
    """
    from azure.iot.device.common.evented_callback import EventedCallback

    pipeline = client._mqtt_pipeline  # noqa: SLF001 - no public API for this (see above)
    for feature, enabled in list(pipeline.feature_enabled.items()):
        if enabled:
            callback = EventedCallback()
            pipeline.enable_feature(feature, callback=callback)
            callback.wait_for_completion()
    log.info("hub: subscriptions renewed")
