"""A small IoT Hub stand-in behind the broker: twin GET/PATCH, desired patches, method calls.

It speaks the same MQTT topics as IoT Hub does to a module (the ones azure-iot-device uses), so
the module under test runs the real SDK end to end:

* ``devices/{d}/modules/{m}/messages/events/{properties}``: output messages, recorded;
* ``$iothub/twin/GET/?$rid=N`` -> ``$iothub/twin/res/200/?$rid=N`` with the twin;
* ``$iothub/twin/PATCH/properties/reported/?$rid=N`` -> merged, ``res/204``;
* ``$iothub/twin/PATCH/properties/desired/?$version=V``: published by :meth:`set_desired`;
* ``$iothub/methods/POST/{name}/?$rid=R`` and the module's ``$iothub/methods/res/{status}/?$rid=R``.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from .certs import TlsFiles


@dataclass(frozen=True)
class Received:
    """One message a module sent to an output."""

    output: str
    properties: dict[str, str]
    body: dict[str, Any]
    raw: bytes
    topic: str


def _merge(into: dict, patch: dict) -> None:
    for k, v in patch.items():
        if v is None:
            into.pop(k, None)
        elif isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


class HubResponder:
    def __init__(self, tls: TlsFiles, port: int) -> None:
        self.tls = tls
        self.port = port
        self.desired: dict[str, Any] = {"$version": 1}
        self.reported: dict[str, Any] = {"$version": 1}
        self.messages: list[Received] = []
        self.twin_gets = 0
        #: IoT Hub refuses (400) a reported patch that would take the reported properties over 32 KB.
        self.reported_limit = 32 * 1024
        self.refused_reports = 0
        self._responses: dict[str, tuple[int, Any]] = {}
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._client = mqtt.Client(client_id=f"hub-responder-{uuid.uuid4().hex[:8]}", clean_session=True)
        self._client.tls_set(ca_certs=str(tls.ca))
        self._client.reconnect_delay_set(0.1, 1)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *a: self._connected.clear()  # set again on SUBACK
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        self._client.connect_async("localhost", self.port, keepalive=10)  # the broker's private port
        self._client.loop_start()
        self.wait_connected(timeout)

    def wait_connected(self, timeout: float = 20.0) -> None:
        if not self._connected.wait(timeout):
            raise TimeoutError("hub responder could not connect to the broker")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def reset(self) -> None:
        """Forget messages and twin state (between tests)."""
        with self._cond:
            self.desired = {"$version": 1}
            self.reported = {"$version": 1}
            self.messages.clear()
            self._responses.clear()
            self.twin_gets = 0
            self.reported_limit = 32 * 1024  # a test that lowered it must not refuse the next test's reports
            self.refused_reports = 0

    def _on_connect(self, client, userdata, flags, rc) -> None:
        if rc == 0:
            client.subscribe([("devices/+/modules/+/messages/events/#", 1), ("$iothub/twin/GET/#", 1),
                              ("$iothub/twin/PATCH/properties/reported/#", 1), ("$iothub/methods/res/#", 1)])

    def _on_subscribe(self, client, userdata, mid, granted_qos) -> None:
        self._connected.set()

    def mark_down(self) -> None:
        """The broker was stopped: the responder counts as gone until it has subscribed again."""
        self._connected.clear()

    def wait_resubscribed(self, timeout: float = 20.0) -> None:
        """After a broker restart: wait until this responder is connected and subscribed again."""
        if not self._connected.wait(timeout):
            raise TimeoutError("hub responder did not resubscribe after the broker restart")

    # -- incoming -------------------------------------------------------------------------------

    def _on_message(self, client, userdata, msg) -> None:
        topic = msg.topic
        try:
            if "/messages/events/" in topic:
                props = dict(urllib.parse.parse_qsl(topic.split("/messages/events/", 1)[1], keep_blank_values=True))
                body = json.loads(msg.payload.decode("utf-8"))
                with self._cond:
                    self.messages.append(Received(props.get("$.on", ""), props, body, msg.payload, topic))
                    self._cond.notify_all()
            elif topic.startswith("$iothub/twin/GET/"):
                rid = self._rid(topic)
                with self._cond:
                    self.twin_gets += 1
                    twin = {"desired": json.loads(json.dumps(self.desired)),
                            "reported": json.loads(json.dumps(self.reported))}
                client.publish(f"$iothub/twin/res/200/?$rid={rid}", json.dumps(twin), qos=1)
            elif topic.startswith("$iothub/twin/PATCH/properties/reported/"):
                rid = self._rid(topic)
                patch = json.loads(msg.payload.decode("utf-8"))
                with self._cond:
                    merged = json.loads(json.dumps(self.reported))
                    _merge(merged, patch)
                    if len(json.dumps(merged).encode()) > self.reported_limit:
                        self.refused_reports += 1
                        self._cond.notify_all()
                        client.publish(f"$iothub/twin/res/400/?$rid={rid}", b"", qos=1)
                        return
                    self.reported = merged
                    self.reported["$version"] += 1
                    version = self.reported["$version"]
                    self._cond.notify_all()
                client.publish(f"$iothub/twin/res/204/?$rid={rid}&$version={version}", b"", qos=1)
            elif topic.startswith("$iothub/methods/res/"):
                status = int(topic.split("/")[3])
                rid = self._rid(topic)
                payload = json.loads(msg.payload.decode("utf-8")) if msg.payload else None
                with self._cond:
                    self._responses[rid] = (status, payload)
                    self._cond.notify_all()
        except Exception as exc:  # a test stand-in must not die silently either
            print(f"hub responder: could not handle {topic}: {exc!r}")

    @staticmethod
    def _rid(topic: str) -> str:
        return dict(urllib.parse.parse_qsl(topic.split("?", 1)[1]))["$rid"]

    # -- what tests call ------------------------------------------------------------------------

    def set_desired(self, patch: dict[str, Any]) -> int:
        """Merge ``patch`` into the desired properties and push it to the module; returns $version."""
        with self._cond:
            _merge(self.desired, patch)
            self.desired["$version"] += 1
            version = self.desired["$version"]
        body = json.dumps({**patch, "$version": version})
        self._client.publish(f"$iothub/twin/PATCH/properties/desired/?$version={version}", body, qos=1)
        return version

    def invoke(self, name: str, payload: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        """Call direct method ``name``; returns (status, payload) or raises TimeoutError."""
        return self.invoke_raw(name, json.dumps(payload).encode(), timeout)

    def invoke_raw(self, name: str, body: bytes, timeout: float = 30.0) -> tuple[int, Any]:
        """Call direct method ``name`` with ``body`` as it is (any bytes, as a caller could send)."""
        rid = uuid.uuid4().hex
        self._client.publish(f"$iothub/methods/POST/{name}/?$rid={rid}", body, qos=1)
        with self._cond:
            if not self._cond.wait_for(lambda: rid in self._responses, timeout):
                raise TimeoutError(f"method {name} got no response in {timeout} s")
            return self._responses.pop(rid)

    def outputs(self, output: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.output == output]

    def wait_for(self, predicate, timeout: float):
        """Wait until ``predicate(self)`` is truthy (returned) or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(self)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("condition not met in time")
                self._cond.wait(min(left, 0.2))
