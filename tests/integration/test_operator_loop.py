"""The operator's loop through the real module (``python -m audioclassifier``) and the loopback IoT Hub
harness (Mosquitto as edgeHub, the hub responder, Azurite): the twin first, the health index, alerts
that explain themselves, and IoT Plug and Play.

The recording is synthetic (``python -m ml synth``): 20 s of a healthy pump, then a bearing fault
(impacts that ring the bearing's resonance, 2-6 kHz) that develops over 4 s. The model is the tiny
real ONNX anomaly model of the harness (a window's mean log-mel level), whose threshold sits between
the healthy and the faulty sound; what is under test is what the module does around the scores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from audioclassifier.hub.pnp import MODEL_ID
from harness.dtdl import check_value, contents, interfaces
from harness.models import tiny_model
from harness.module import ModuleProcess, hub_module, synth_recording
from ml.synth import machine_params

TWIN_THRESHOLD = -15.3  # the tiny model: about -15.5 healthy, -15.1 with the bearing fault
CLI_THRESHOLD = -10.0  # nothing alerts with this one
SEED = 5  # machine 0 of this fleet: its bearing resonance is at about 2.04 kHz


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("loop")
    wav = synth_recording(folder / "pump.wav", seconds=40, fault="bearing", fault_start=20, ramp_seconds=4, seed=SEED)
    return {"wav": wav, "model": tiny_model(folder / "tiny.onnx", version="1")[0]}


class Module(ModuleProcess):
    def start(self, recording: dict[str, Path], *extra: str, speed: str = "max") -> None:  # type: ignore[override]
        super().start("--source", str(recording["wav"]), "--model", str(recording["model"]), "--speed", speed,
                      "--threshold", str(CLI_THRESHOLD), "--hop-seconds", "0.5", "--consecutive", "1",
                      "--cooldown-seconds", "2", "--machine", "pump-7", "--telemetry-interval-seconds", "5",
                      "--window-log", str(self.logs / f"windows-{self.runs + 1}.jsonl"), *extra)

    def windows(self, run: int) -> list[dict]:
        return [json.loads(line) for line in (self.logs / f"windows-{run}.jsonl").read_text().splitlines()]

    def log(self, run: int) -> str:
        return (self.logs / f"module-{run}.log").read_text(errors="replace")


@pytest.fixture()
def module(edge_env, azurite, hub, tmp_path):
    with hub_module(Module, edge_env=edge_env, azurite=azurite, hub=hub, tmp_path=tmp_path, prefix="loop") as m:
        yield m


def status_while_scoring(hub, timeout: float = 60) -> dict:
    """getStatus, asked until the module answers with scored windows behind its health."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            code, body = hub.invoke("getStatus", None, 5)
        except TimeoutError:  # not subscribed yet
            continue
        if code == 200 and (body.get("health") or {}).get("windows"):
            return body
        time.sleep(0.2)
    raise TimeoutError("no status with scored windows")


def test_the_first_window_of_a_replay_is_scored_with_the_twins_threshold(module, hub, recording) -> None:
    """A replayed file produced its first alerts with the card's (here the command line's) threshold
    while the twin's `threshold` arrived a moment later. Now the twin is in force before the first window."""
    hub.desired.update({"threshold": TWIN_THRESHOLD, "$version": 7})
    module.start(recording)
    assert module.wait(120) == 0, module.log(1)[-3000:]
    windows = module.windows(1)
    assert windows and {w["threshold"] for w in windows} == {TWIN_THRESHOLD}  # the very first one included
    alerts = hub.wait_for(lambda h: h.outputs("alerts"), 20)
    assert alerts[0].body["threshold"] == TWIN_THRESHOLD and alerts[0].body["seq"] == 1
    assert "the twin's desired properties are in force" in module.log(1)
    hub.wait_for(lambda h: h.reported.get("threshold", {}).get("av") == 7, 10)
    assert hub.reported["threshold"] == {"value": TWIN_THRESHOLD, "ac": 200, "av": 7, "ad": "applied"}


def test_health_and_explanations_reach_the_hub_as_the_plug_and_play_model_says(module, hub, broker,
                                                                               recording) -> None:
    hub.desired.update({"threshold": TWIN_THRESHOLD, "health_window_seconds": 10, "$version": 3})
    module.start(recording, speed="8")  # 40 s of audio in about 5 s: time to ask for the status meanwhile
    status = status_while_scoring(hub)
    assert module.wait(120) == 0, module.log(1)[-3000:]
    model, named = interfaces()
    root = model[MODEL_ID]

    # the model ID is announced in the MQTT connection's user name
    names = [unquote(u) for u in broker.connect_user_names()]
    assert any(f"model-id={MODEL_ID}" in u and "/audioclassifier/" in u for u in names), names

    # getStatus answers what the model's Status schema says, health included (the web page reads it)
    check_value(status, "dtmi:auscult:audioclassifier:Status;1", named, strict=True)
    assert status["health"]["state"] in ("ok", "watch", "alarm") and 0 <= status["health"]["index"] <= 100

    # every message: its output's component ($.sub) and that component's telemetry, nothing else
    components = contents(root, "Component")
    for output in ("alerts", "telemetry"):
        telemetries = contents(model[components[output]["schema"]], "Telemetry")
        for m in hub.outputs(output):
            assert m.properties["$.sub"] == output
            assert set(m.body) <= set(telemetries), set(m.body) - set(telemetries)
            for name, value in m.body.items():
                check_value(value, telemetries[name]["schema"], named, where=f"{output}.{name}", strict=True)

    # telemetry carries the health index: ok while healthy, down once the fault plays
    health = [m.body["health"] for m in hub.outputs("telemetry")]
    assert health[0]["state"] == "ok" and health[0]["index"] >= 80, health
    assert health[-1]["state"] in ("watch", "alarm") and health[-1]["index"] < health[0]["index"] - 40, health
    hub.wait_for(lambda h: h.reported.get("health", {}).get("state") in ("watch", "alarm"), 10)

    # each alert explains itself: louder at the bearing's resonance, against the running normal
    resonance = machine_params(0, seed=SEED).bearing_resonance_hz  # the impacts ring it (about 2 kHz)
    alerts = hub.outputs("alerts")
    assert alerts and all(a.body["explanation"] and a.body["health"] for a in alerts)
    first = alerts[0].body["explanation"]
    assert first["reference"]["source"] == "running" and first["reference"]["windows"] >= 30
    top = first["bands"][0]
    assert top["low_hz"] <= 1.1 * resonance and top["high_hz"] >= 0.9 * resonance and top["level_db"] > 0, \
        (resonance, first)
    assert first["summary"].startswith(f"{top['level_db']:+.0f} dB at "), first
    print(f"explanation of the first alert: {first['summary']!r}; health at the end: {health[-1]}")

    # writable properties acknowledged, the reported ones within their schemas
    props = contents(root, "Property")
    for name in ("threshold", "health_window_seconds"):
        assert hub.reported[name]["ac"] == 200 and hub.reported[name]["av"] == 3
    for name in ("settings", "health", "learning", "calibration", "uploads"):
        check_value(hub.reported.get(name), props[name]["schema"], named, where=name, strict=True)


def test_without_the_hub_it_starts_from_the_desired_properties_it_kept(module, hub, broker, recording,
                                                                      edge_env) -> None:
    kept = Path(edge_env["AUSCULT_SPOOL_DIR"]) / "desired.json"
    broker.stop()  # run 1: no hub, nothing kept: the start values, after a bounded wait
    module.start(recording, "--twin-wait-seconds", "1")
    assert module.wait(120) == 0, module.log(1)[-3000:]
    assert {w["threshold"] for w in module.windows(1)} == {CLI_THRESHOLD}
    assert "no twin in 1 s: starting with the start values (no desired properties were kept)" in module.log(1)
    assert not kept.exists()

    broker.start()  # run 2: the twin says -15.3 and machine pump-9; the module keeps them
    hub.desired.update({"threshold": TWIN_THRESHOLD, "machine": "pump-9", "$version": 4})
    module.start(recording)
    assert module.wait(120) == 0, module.log(2)[-3000:]
    assert {w["threshold"] for w in module.windows(2)} == {TWIN_THRESHOLD}
    assert json.loads(kept.read_text()) == {"threshold": TWIN_THRESHOLD, "machine": "pump-9"}

    broker.stop()  # run 3: no hub again: the kept desired properties, never the code's or the start values
    module.start(recording, "--twin-wait-seconds", "1")
    assert module.wait(120) == 0, module.log(3)[-3000:]
    assert {w["threshold"] for w in module.windows(3)} == {TWIN_THRESHOLD}
    assert "starting with the desired properties kept from the last run" in module.log(3)
