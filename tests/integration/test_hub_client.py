"""HubClient with the real azure-iot-device SDK against Mosquitto over TLS and the hub responder.

Covers the connection side of issue 5: confirmed sends from the outbox with the message
properties IoT Hub routing needs, twin fetch and patches, direct methods, and the two things the
SDK does not handle on its own: sends made while disconnected, and a broker restart that lost
the MQTT session (the SDK reconnects but never re-subscribes).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from audioclassifier.config import hub_configured
from audioclassifier.hub.client import HubClient
from audioclassifier.hub.outbox import Outbox
from harness.procs import wait_until


class Recorder:
    """The application side of a HubClient: records desired properties, answers methods."""

    def __init__(self) -> None:
        self.desired: list[tuple[dict, bool]] = []

    def on_desired(self, desired: dict, complete: bool) -> None:
        self.desired.append((desired, complete))

    def on_method(self, name: str, payload):
        if name == "boom":
            raise RuntimeError("handler exploded")
        return 200, {"method": name, "payload": payload}


@pytest.fixture()
def make_client(edge_env, monkeypatch, tmp_path):
    for k, v in edge_env.items():
        monkeypatch.setenv(k, v)
    made: list[HubClient] = []

    def make() -> tuple[HubClient, Outbox, Recorder]:
        box = Outbox(tmp_path / f"outbox{len(made)}.sqlite3")
        rec = Recorder()
        client = HubClient.from_edge_environment(box, on_desired=rec.on_desired, on_method=rec.on_method,
                                                  reconnect_seconds=1)
        made.append(client)
        return client, box, rec

    yield make
    for c in made:
        c.close(flush_seconds=0)


def alert(i: int) -> dict:
    return {"type": "anomaly", "machine": "pump-1", "label": "bearing", "score": 0.9, "i": i, "seq": 0}


def test_configuration_detection(edge_env) -> None:
    assert hub_configured(edge_env)
    assert not hub_configured({})
    assert not hub_configured({"EdgeHubConnectionString": "HostName=x"})  # no CA file: local mode
    assert hub_configured({v: "x" for v in ("IOTEDGE_IOTHUBHOSTNAME", "IOTEDGE_DEVICEID", "IOTEDGE_MODULEID",
                                            "IOTEDGE_GATEWAYHOSTNAME", "IOTEDGE_MODULEGENERATIONID",
                                            "IOTEDGE_WORKLOADURI", "IOTEDGE_APIVERSION")})


def test_messages_twin_and_methods(hub, make_client) -> None:
    hub.set_desired({"threshold": 0.4})
    client, box, rec = make_client()
    for i in range(3):
        box.put("alerts", alert(i), {"alert": "true", "label": "bearing", "machine": "pump-1"})
    box.put("telemetry", {"type": "telemetry", "windows": 5, "seq": 0}, {"alert": "false"})
    client.start()
    assert client.wait_ready(15)
    assert rec.desired[0][1] is True and rec.desired[0][0]["threshold"] == 0.4

    hub.wait_for(lambda h: len(h.outputs("alerts")) == 3 and len(h.outputs("telemetry")) == 1, 15)
    got = hub.outputs("alerts")
    assert [m.body["i"] for m in got] == [0, 1, 2] and [m.body["seq"] for m in got] == [1, 2, 3]
    props = got[0].properties
    assert props["$.ct"] == "application/json" and props["$.ce"] == "utf-8"
    assert props["alert"] == "true" and props["label"] == "bearing" and props["$.mid"] == "alerts-1"
    assert hub.outputs("telemetry")[0].properties["alert"] == "false"
    assert json.loads(got[0].raw.decode("utf-8")) == got[0].body
    assert wait_until(lambda: len(box) == 0, 5)  # acknowledged, so removed

    hub.set_desired({"threshold": 0.6})
    assert wait_until(lambda: rec.desired[-1] == ({"threshold": 0.6, "$version": 3}, False), 10)

    assert hub.invoke("getStatus", {"verbose": True}, 10) == (200, {"method": "getStatus",
                                                                     "payload": {"verbose": True}})
    status, payload = hub.invoke("boom", None, 10)
    assert status == 500 and "handler exploded" in payload["error"]

    client.report({"status": {"state": "running"}, "settings": {"threshold": 0.6}})
    client.report({"status": {"windows": 3}})
    hub.wait_for(lambda h: h.reported.get("status") == {"state": "running", "windows": 3}, 10)
    assert hub.reported["settings"] == {"threshold": 0.6}


def test_starts_while_the_hub_is_down_and_delivers_later(hub, broker, make_client) -> None:
    broker.stop()
    client, box, rec = make_client()
    client.start()
    for i in range(5):
        box.put("alerts", alert(i))
        client.wake()
    time.sleep(2)
    assert not client.connected and len(box) == 5 and "connect failed" in (client.last_error or "")
    broker.start()
    hub.wait_resubscribed()
    hub.wait_for(lambda h: len(h.outputs("alerts")) == 5, 40)
    assert [m.body["i"] for m in hub.outputs("alerts")] == list(range(5))


def test_broker_restart_that_loses_the_session(hub, broker, make_client) -> None:
    """Messages queued during the outage arrive in order; methods and patches work afterwards."""
    client, box, rec = make_client()
    client.start()
    assert client.wait_ready(15)
    assert hub.invoke("getStatus", None, 10)[0] == 200
    resyncs = client.resyncs

    broker.stop()  # no persistence: every session and subscription is gone
    assert wait_until(lambda: not client.connected, 10)
    for i in range(6):
        box.put("alerts", alert(i))
        client.wake()
        time.sleep(0.1)
    hub_version_before = hub.desired["$version"]
    broker.start()
    hub.wait_resubscribed()

    assert wait_until(lambda: client.resyncs > resyncs and client.connected, 40), client.last_error
    hub.wait_for(lambda h: len(h.outputs("alerts")) == 6, 30)
    assert [m.body["i"] for m in hub.outputs("alerts")] == list(range(6))
    # the session was lost, yet the module still hears methods and desired patches
    assert hub.invoke("getStatus", None, 10)[0] == 200
    hub.set_desired({"threshold": 0.9})
    assert wait_until(lambda: rec.desired[-1][0].get("threshold") == 0.9, 10)
    assert hub.desired["$version"] == hub_version_before + 1


def test_sdk_alone_stays_deaf_after_a_session_losing_restart(hub, broker, edge_env, monkeypatch) -> None:
    """The quirk HubClient works around (azure-iot-device 2.14): if this starts failing, the SDK
    re-subscribes by itself now and the workaround in HubClient._renew_subscriptions can go."""
    from azure.iot.device import IoTHubModuleClient, MethodResponse

    for k, v in edge_env.items():
        monkeypatch.setenv(k, v)
    client = IoTHubModuleClient.create_from_edge_environment(connection_retry_interval=1)
    try:
        client.connect()
        client.on_method_request_received = lambda req: client.send_method_response(
            MethodResponse.create_from_method_request(req, 200, {"ok": True}))
        assert hub.invoke("ping", None, 10)[0] == 200
        broker.restart()
        hub.wait_resubscribed()
        assert wait_until(lambda: client.connected, 20)
        time.sleep(1.0)
        with pytest.raises(TimeoutError):
            hub.invoke("ping", None, 3)
    finally:
        client.shutdown()


def test_close_flushes_and_keeps_the_rest(hub, broker, make_client, tmp_path: Path) -> None:
    client, box, rec = make_client()
    client.start()
    assert client.wait_ready(15)
    for i in range(20):
        box.put("telemetry", {"type": "telemetry", "i": i, "seq": 0})
    client.wake()
    client.close(flush_seconds=10)
    assert len(box) == 0
    assert [m.body["i"] for m in hub.outputs("telemetry")] == list(range(20))
