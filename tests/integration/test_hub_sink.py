"""HubSink over the real SDK, broker, hub responder and Azurite: twin validation, methods, model
updates, clip uploads, quota reports, and no secret in any log, message or reported property.

The runtime side is a small in-test control (the RuntimeControl surface: settings, status,
capture, model swap); the real module runs against the same harness in test_hub_module.py.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from audioclassifier.audio_io import write_wav
from audioclassifier.card import read_card
from audioclassifier.config import hub_config
from audioclassifier.hub import HubApp
from audioclassifier.hub.redact import find_secrets
from audioclassifier.settings import Settings
from harness.models import tiny_model
from harness.procs import wait_until


class Control:
    """What the runtime exposes to a sink, reduced to recording what the sink asks for."""

    def __init__(self, clip_dir: Path) -> None:
        self.settings = Settings(machine="pump-1")
        self.clip_dir = clip_dir
        self.swapped: list[Path] = []
        self.applied: list[Settings] = []

    def apply_settings(self, s: Settings) -> None:
        self.applied.append(s)
        self.settings = s

    def status(self) -> dict:
        return {"state": "running", "model": {"version": "1"}, "settings": self.settings.to_dict()}

    def capture_clip(self, seconds: float, label: str) -> Path:
        y = np.random.default_rng(0).standard_normal(int(16000 * seconds)).astype(np.float32) * 0.1
        return write_wav(self.clip_dir / "pump-1" / "2026-01-02" / f"120000-{label}.wav", y, sample_rate=16000)

    def reload_model(self) -> dict:
        return {"reloaded": True}

    def swap_model(self, path: Path) -> dict:
        card = read_card(path)  # what the runtime does first: a model without a valid card is refused
        self.swapped.append(Path(path))
        return {"version": card.version}

    def self_test(self) -> dict:
        return {"ok": True, "checks": {"model": "ok"}}


@pytest.fixture()
def sink_env(edge_env, azurite, tls, monkeypatch):
    env = {**edge_env, "AUSCULT_BLOB_CONNECTION_STRING": azurite.connection_string,
           "AUSCULT_BLOB_CONTAINER": "sink-clips", "AUSCULT_CA_FILE": str(tls.ca)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture()
def running(sink_env, hub, caplog):
    caplog.set_level(logging.DEBUG)
    app = HubApp(hub_config(sink_env))
    control = Control(app.clip_dir)
    app.start(control)
    assert app.client.wait_ready(15)
    yield app, control
    app.close()
    # Secrets never leave: not in any log record, message or reported property.
    everything = caplog.text + json.dumps(hub.reported) + "".join(m.raw.decode() + m.topic for m in hub.messages)
    assert find_secrets(everything) == []
    assert sink_env["EdgeHubConnectionString"].split("SharedAccessKey=")[1] not in everything


def test_desired_properties_are_validated_applied_and_acknowledged(running, hub) -> None:
    """Each writable property is acknowledged by the IoT Plug and Play convention: {value, ac, av, ad},
    av the desired $version; a refusal is ac 400 with the reason, the value in force kept and reported."""
    sink, control = running
    # at connect, every writable property the twin does not set: its start value, ac 203, av 0
    hub.wait_for(lambda h: h.reported.get("hop_seconds", {}).get("ac") == 203, 10)
    assert hub.reported["hop_seconds"] == {"value": 1.0, "ac": 203, "av": 0,
                                           "ad": "not in the desired properties: the start value is in force"}
    v = hub.set_desired({"threshold": 0.42, "cooldown_seconds": 5})
    assert wait_until(lambda: control.settings.threshold == 0.42, 10)
    hub.wait_for(lambda h: h.reported.get("threshold", {}).get("av") == v, 10)
    assert hub.reported["threshold"] == {"value": 0.42, "ac": 200, "av": v, "ad": "applied"}
    assert hub.reported["cooldown_seconds"] == {"value": 5.0, "ac": 200, "av": v, "ad": "applied"}
    assert hub.reported["settings"]["threshold"] == 0.42 and "rejected" not in hub.reported

    v = hub.set_desired({"threshold": "high", "consecutive": 3, "colour": "red"})
    hub.wait_for(lambda h: h.reported.get("colour", {}).get("av") == v, 10)
    threshold = hub.reported["threshold"]
    assert threshold["ac"] == 400 and threshold["av"] == v and threshold["value"] == 0.42  # the value in force
    assert "finite number" in threshold["ad"] and "'high'" in threshold["ad"]
    assert hub.reported["colour"] == {"value": None, "ac": 400, "av": v, "ad": "refused: unknown setting"}
    assert hub.reported["consecutive"] == {"value": 3, "ac": 200, "av": v, "ad": "applied"}
    assert control.settings.threshold == 0.42 and control.settings.consecutive == 3  # old kept, good applied
    assert "rejected desired properties" in hub.reported["last_error"]

    v = hub.set_desired({"threshold": 0.5, "colour": None, "consecutive": None})
    hub.wait_for(lambda h: h.reported.get("threshold", {}).get("av") == v, 10)
    assert hub.reported["threshold"]["ac"] == 200 and "colour" not in hub.reported  # its refusal removed
    assert hub.reported["consecutive"] == {"value": 2, "ac": 200, "av": v,
                                           "ad": "removed from the desired properties: back to the start value"}
    assert control.settings.threshold == 0.5 and control.settings.consecutive == 2
    # an object property: the whole object in force comes back
    v = hub.set_desired({"upload": {"enabled": False}})
    hub.wait_for(lambda h: h.reported.get("upload", {}).get("av") == v, 10)
    assert hub.reported["upload"]["value"] == {"enabled": False, "max_per_hour": 60}
    assert hub.reported["upload"]["ac"] == 200


def test_a_twin_fetched_at_connect_is_acknowledged_whole(sink_env, hub) -> None:
    """The desired section fetched at (re)connect: what it sets with its $version, the rest 203."""
    hub.desired.update({"threshold": 0.7, "hop_seconds": 0, "$version": 12})
    app = HubApp(hub_config(sink_env))
    control = Control(app.clip_dir)
    app.start(control)
    try:
        assert app.wait_for_twin(15)
        hub.wait_for(lambda h: h.reported.get("hop_seconds", {}).get("av") == 12, 10)
        assert hub.reported["threshold"] == {"value": 0.7, "ac": 200, "av": 12, "ad": "applied"}
        assert hub.reported["hop_seconds"]["ac"] == 400 and hub.reported["hop_seconds"]["value"] == 1.0
        assert hub.reported["machine"]["ac"] == 203 and hub.reported["machine"]["value"] == "pump-1"
        assert hub.reported["model"]["ac"] == 203 and "url" not in (hub.reported["model"]["value"] or {})
        assert control.settings.threshold == 0.7
    finally:
        app.close()


def test_methods(running, hub, azurite) -> None:
    sink, control = running
    status, body = hub.invoke("getStatus", None, 10)
    assert status == 200 and body["state"] == "running" and body["hub"]["connected"] is True
    assert body["outbox"]["pending"] == {} and body["uploads"]["target"] == "blob"
    assert hub.invoke("selfTest", None, 10) == (200, {"ok": True, "checks": {"model": "ok"}})
    assert hub.invoke("reloadModel", {}, 10) == (200, {"reloaded": True})
    assert hub.invoke("nope", None, 10)[0] == 404

    assert hub.invoke("captureClip", {"seconds": 0, "label": "x"}, 10)[0] == 400
    assert hub.invoke("captureClip", {"seconds": 1, "label": "../etc"}, 10)[0] == 400
    status, body = hub.invoke("captureClip", {"seconds": 1.5, "label": "bearing-field"}, 10)
    assert status == 200 and body["clip"] == "pump-1/2026-01-02/120000-bearing-field.wav"
    assert wait_until(lambda: "pump-1/2026-01-02/120000-bearing-field.wav" in azurite.blobs("sink-clips"), 20)
    assert wait_until(lambda: not sink.spool.pending(), 5)
    hub.wait_for(lambda h: h.reported.get("uploads", {}).get("uploaded") == 1, 10)
    assert hub.reported["uploads"]["last"]["ok"] is True


def test_alerts_go_out_with_their_clip(running, hub, azurite) -> None:
    sink, control = running
    path = control.capture_clip(0.5, "imbalance")
    clip = path.relative_to(sink.clip_dir).as_posix()
    data = path.read_bytes()  # the uploader deletes the spooled clip once it is uploaded
    sink.sink.emit("alerts", {"type": "anomaly", "machine": "pump-1", "label": "imbalance", "score": 0.97,
                              "threshold": 0.5, "clip": clip, "model": "1", "seq": 1})
    sink.sink.emit("telemetry", {"type": "telemetry", "machine": "pump-1", "windows": 12, "seq": 1})
    hub.wait_for(lambda h: h.outputs("alerts") and h.outputs("telemetry"), 10)
    msg = hub.outputs("alerts")[0]
    assert msg.properties["alert"] == "true" and msg.properties["label"] == "imbalance"
    assert msg.body["clip"] == clip
    assert wait_until(lambda: azurite.blobs("sink-clips").get(clip) == data, 20)


def test_model_update_over_the_air(running, hub, tmp_path: Path) -> None:
    sink, control = running
    src, sha = tiny_model(tmp_path / "m2.onnx", version="2")
    bad = ("f" if sha[0] != "f" else "e") + sha[1:]
    v = hub.set_desired({"model": {"url": src.as_uri(), "sha256": bad, "version": "2"}})
    hub.wait_for(lambda h: h.reported.get("model_update", {}).get("state") == "failed", 15)
    assert "sha256 mismatch" in hub.reported["model_update"]["error"] and control.swapped == []
    hub.wait_for(lambda h: h.reported.get("model", {}).get("ac") == 500, 10)  # the acknowledgement follows
    assert hub.reported["model"]["av"] == v and "sha256 mismatch" in hub.reported["model"]["ad"]
    assert hub.reported["model"]["value"] == {"sha256": bad, "version": "2"}  # never the URL

    v = hub.set_desired({"model": {"url": src.as_uri(), "sha256": sha, "version": "2"}})
    hub.wait_for(lambda h: h.reported.get("model_update", {}).get("state") == "ok", 15)
    assert hub.reported["model_update"]["version"] == "2" and hub.reported["model_update"].get("error") is None
    hub.wait_for(lambda h: h.reported.get("model", {}).get("ac") == 200, 10)
    assert hub.reported["model"] == {"value": {"sha256": sha, "version": "2"}, "ac": 200, "av": v,
                                     "ad": "model 2 in use"}
    assert control.swapped == [sink.models_dir / f"{sha}.onnx"]
    assert control.settings.model.version == "2"

    v = hub.set_desired({"model": {"url": "ftp://x/y.onnx", "sha256": sha, "version": "3"}})
    hub.wait_for(lambda h: h.reported.get("model", {}).get("av") == v, 10)
    assert hub.reported["model"]["ac"] == 400 and "model.url" in hub.reported["model"]["ad"]
    assert control.settings.model.version == "2"


def test_quota_drops_are_counted_and_reported(sink_env, hub, monkeypatch) -> None:
    hub_down = HubApp(hub_config({**sink_env, "AUSCULT_OUTBOX_QUOTA_MB": "0.01"}))  # ~10 kB
    try:
        for i in range(60):
            hub_down.sink.emit("telemetry", {"type": "telemetry", "i": i, "pad": "x" * 200, "seq": 0})
        hub_down.sink.emit("alerts", {"type": "anomaly", "label": "bearing", "score": 1.0, "seq": 0})
        st = hub_down.outbox.stats()
        assert st.dropped["telemetry"] > 0 and st.pending["alerts"] == 1
        control = Control(hub_down.clip_dir)
        hub_down.start(control)
        hub.wait_for(lambda h: h.reported.get("status", {}).get("outbox", {}).get("dropped", {}).get("telemetry"), 15)
        assert hub.reported["status"]["outbox"]["dropped"]["telemetry"] == st.dropped["telemetry"]
        hub.wait_for(lambda h: h.outputs("alerts"), 10)
        kept = [m.body["i"] for m in hub.wait_for(lambda h: len(h.outputs("telemetry")) == st.pending["telemetry"]
                                                  and h.outputs("telemetry"), 10)]
        assert kept == list(range(60 - len(kept), 60))  # the newest telemetry survived, in order
    finally:
        hub_down.close()


def test_settings_replace_keeps_model_field(running) -> None:
    sink, control = running
    before = control.settings
    sink._on_desired({"machine": "pump-2"}, False)
    assert control.settings == replace(before, machine="pump-2")


def test_reports_stay_bounded_and_a_refused_report_does_not_block_the_next(running, hub) -> None:
    """A rejected 1 MB `machine` was echoed twice in a 2 MB reported patch (IoT Hub keeps 32 KB), and
    a refused report was retried forever, blocking all reporting after it."""
    app, control = running
    v = hub.set_desired({"machine": "m" * 1_000_000, "cooldown_seconds": 7})
    hub.wait_for(lambda h: h.reported.get("machine", {}).get("av") == v, 15)
    assert hub.reported["machine"]["ac"] == 400 and hub.reported["machine"]["value"] == "pump-1"
    assert len(hub.reported["machine"]["ad"]) < 200 and control.settings.cooldown_seconds == 7
    assert len(json.dumps(hub.reported)) < 32 * 1024 and hub.refused_reports == 0
    app.reporter.send({"blob": "x" * 100_000})  # whatever a report holds, it is cut to fit
    hub.wait_for(lambda h: "blob" in h.reported, 15)
    assert len(hub.reported["blob"]) <= 256

    hub.reported_limit = len(json.dumps(hub.reported)) + 300  # the hub now refuses anything big
    app.reporter.send({"big": ["y" * 200] * 10})
    hub.wait_for(lambda h: h.refused_reports >= 1, 15)
    app.reporter.send({"small": 1})  # the next report still goes
    assert wait_until(lambda: hub.reported.get("small") == 1, 15), (app.client.last_error, hub.refused_reports)
    assert app.client.reports.refused >= 1 and "refused" in (app.client.reports.last_error or "")


def test_drained_outbox_counters_are_reported_as_zeros(running, hub) -> None:
    """status.outbox.pending kept {"alerts": 122} after the outbox drained: reported properties merge,
    and {} never clears a key."""
    app, control = running
    app.sink.emit("alerts", {"type": "anomaly", "machine": "pump-1", "label": "x", "score": 1.0, "seq": 5})
    hub.wait_for(lambda h: h.outputs("alerts"), 10)
    assert wait_until(lambda: len(app.outbox) == 0, 10)
    app.reporter.report_status()
    hub.wait_for(lambda h: h.reported.get("status", {}).get("outbox", {}).get("pending", {}).get("alerts") == 0, 10)
    assert hub.reported["status"]["outbox"]["sent"]["alerts"] >= 1


def test_a_deeply_nested_or_bare_string_payload_gets_a_short_400(running, hub) -> None:
    """A method payload nested 3,000 levels deep got no response (the SDK's own JSON parsing hit the
    recursion limit and dropped the request); a bare JSON string got a parser error as the answer."""
    app, control = running
    deep = "[" * 3000 + "]" * 3000
    status, body = hub.invoke_raw("captureClip", deep.encode(), 10)
    assert status == 400 and "nested 3000 levels" in body["error"] and len(body["error"]) < 200
    status, body = hub.invoke_raw("captureClip", b'"just a string"', 10)
    assert status == 400 and body["error"] == "payload must be a JSON object, got str"
    status, body = hub.invoke("getStatus", None, 10)
    assert status == 200  # and the module answers the next call as usual
    hub.set_desired({"nest": json.loads("[" * 20 + "]" * 20)})  # shallow enough: an unknown setting, refused
    hub.wait_for(lambda h: h.reported.get("nest", {}).get("ac") == 400, 10)
