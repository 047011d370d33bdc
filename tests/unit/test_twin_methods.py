"""The hub's rules without a broker: desired properties → settings (hub/twin.py) and the method
table (hub/methods.py), both checked by the one constraints table."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audioclassifier.audio_io import write_wav
from audioclassifier.constraints import METHODS, SETTINGS
from audioclassifier.hub.methods import MethodContext, dispatch
from audioclassifier.hub.spool import Spool
from audioclassifier.hub.twin import apply_desired
from audioclassifier.runtime import CalibrationError
from audioclassifier.settings import ModelRef, Settings

SHA = "cd" * 32


def test_null_returns_a_setting_to_its_start_value_not_the_code_default() -> None:
    """A device started with AUSCULT_HOP_SECONDS=0.5 used to get 1.0 when the twin dropped hop_seconds."""
    start = Settings(hop_seconds=0.5, threshold=2.1)  # e.g. environment, and a site calibration
    current = replace(start, hop_seconds=2.0, threshold=3.0)
    out = apply_desired({"hop_seconds": None, "threshold": None, "$version": 7}, current=current, start=start)
    assert out.rejected == {}
    assert out.settings.hop_seconds == 0.5 and out.settings.threshold == 2.1  # not 1.0 and None
    # A complete desired section without a setting means the same: back to the start value.
    out = apply_desired({"consecutive": 4}, current=current, start=start, complete=True)
    assert out.settings == replace(start, consecutive=4)


def test_garbage_and_overflow_are_refused_per_field_and_the_rest_applies() -> None:
    """`1e400` used to raise OverflowError inside the check and drop the whole patch with a traceback."""
    desired = json.loads('{"consecutive": 1e400, "cooldown_seconds": 5, "hop_seconds": -1e400, '
                         '"threshold": NaN, "machine": "' + "m" * 1_000_000 + '", "energy_gate_dbfs": true}')
    out = apply_desired(desired, current=Settings(), start=Settings())
    assert set(out.rejected) == {"consecutive", "hop_seconds", "threshold", "machine", "energy_gate_dbfs"}
    assert out.settings.cooldown_seconds == 5.0  # the valid field still applies
    assert all(len(reason) < 200 for reason in out.rejected.values())  # the 1 MB value is not echoed
    assert apply_desired(["not", "an", "object"], current=Settings(), start=Settings()).rejected


def test_the_model_field_changes_only_through_the_updater_and_nulling_an_unknown_key_is_fine() -> None:
    current = Settings()
    out = apply_desired({"model": {"url": "https://x/m.onnx", "sha256": SHA, "version": "2"}, "colour": None},
                        current=current, start=current)
    assert out.settings.model == ModelRef() and out.model == ModelRef("https://x/m.onnx", SHA, "2")
    assert out.rejected == {}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_every_setting_has_a_default_its_check_accepts(name: str) -> None:
    param = SETTINGS[name]
    if param.default not in (None, ""):
        assert param.check(param.default) == param.default


class Control:
    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.settings = Settings(machine="m")
        self.calls: list[tuple[str, Any]] = []

    def capture_clip(self, seconds: float, label: str) -> Path:
        self.calls.append(("capture", (seconds, label)))
        return write_wav(self.spool.root / "m" / "d" / f"1-{label}-c1.wav", np.zeros(160, np.float32), sample_rate=16000)

    def start_calibration(self, seconds: float, percentile: float, on_done: Any = None) -> dict[str, Any]:
        if self.calls and self.calls[-1][0] == "calibrate":
            raise CalibrationError("a calibration is already running")
        self.calls.append(("calibrate", (seconds, percentile)))
        return {"state": "running", "seconds": seconds}

    def reload_model(self) -> dict[str, Any]:
        return {"ok": True}

    def self_test(self) -> dict[str, Any]:
        return {"ok": False}


@pytest.fixture()
def ctx(tmp_path: Path) -> MethodContext:
    spool = Spool(tmp_path / "spool")
    queued: list[int] = []
    c = MethodContext(control=Control(spool), status=lambda: {"state": "running"}, spool=spool,
                      clip_queued=lambda: queued.append(1), calibration_started=lambda s: None,
                      calibration_done=lambda s: None)
    return c


def test_methods_check_arguments_from_the_one_table(ctx: MethodContext) -> None:
    assert dispatch("getStatus", None, ctx) == (200, {"state": "running"})
    assert dispatch("getStatus", "", ctx)[0] == 200
    assert dispatch("selfTest", {}, ctx)[0] == 500  # a failed self-test says so
    assert dispatch("nope", None, ctx)[0] == 404
    for payload in ({"seconds": 0}, {"seconds": 61}, {"seconds": 1e400}, {"seconds": "5"}, {"label": "../etc"},
                    {"seconds": True}, {"speed": 2}, [1, 2], "not json", json.dumps("a bare string")):
        status, body = dispatch("captureClip", payload, ctx)
        assert status == 400 and isinstance(body["error"], str) and len(body["error"]) < 300, payload
    status, body = dispatch("captureClip", json.dumps({"seconds": 2, "label": "bearing"}), ctx)
    assert status == 200 and body["clip"] == "m/d/1-bearing-c1.wav" and body["upload"] == "queued"
    # calibrate: the same limits as the table says, 202 at once, 409 while one runs
    assert dispatch("calibrate", {"seconds": 0.5}, ctx)[0] == 400
    assert dispatch("calibrate", {"seconds": 60, "percentile": 100}, ctx)[0] == 400
    assert dispatch("calibrate", {"seconds": 60}, ctx)[0] == 202
    assert ctx.control.calls[-1] == ("calibrate", (60.0, METHODS["calibrate"]["percentile"].default))
    assert dispatch("calibrate", {"seconds": 60}, ctx)[0] == 409


def test_bounded_reports_fit_and_keep_what_fits() -> None:
    from audioclassifier.hub.reporting import bounded

    small = {"settings": {"hop_seconds": 1.0}, "status": {"state": "running"}}
    assert bounded(small) is small
    big = {"rejected": {f"k{i}": "why" * 50 for i in range(500)}, "status": {"state": "running"},
           "note": "n" * 100_000}
    out = bounded(big, limit=8 * 1024)
    assert len(json.dumps(out)) <= 8 * 1024
    assert out["status"] == {"state": "running"}  # small entries survive as they are


def test_bounded_json_refuses_depth_and_size_without_recursing() -> None:
    from audioclassifier.hub import sdkjson

    assert sdkjson.nesting_depth('{"a": [1, {"b": "[[[[not counted]]]]"}]}') == 3
    assert sdkjson.loads('{"seconds": 2}') == {"seconds": 2}
    assert sdkjson.REFUSED in sdkjson.loads("[" * 100_000 + "]" * 100_000)  # no RecursionError
    assert sdkjson.REFUSED in sdkjson.loads('"' + "x" * (sdkjson.MAX_BYTES + 1) + '"')
    assert sdkjson.REFUSED in sdkjson.loads("{not json")
    out = apply_desired({sdkjson.REFUSED: "payload nested 99 levels deep"}, current=Settings(), start=Settings())
    assert out.rejected == {"$": "payload nested 99 levels deep"}
