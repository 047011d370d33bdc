"""The runtime's control surface (what the twin and direct methods use), while audio flows."""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclassifier.backends import ModelError, load_model
from audioclassifier.features import LogMelParams
from audioclassifier.runtime import CaptureError, Runtime
from audioclassifier.settings import Settings
from audioclassifier.sinks import LocalSink
from audioclassifier.sources import FileSource
from harness.audio import tone
from harness.models import make_model
from harness.procs import wait_for

SR = 16000


def expected_windows(n_samples: int, window_seconds: float, hop_seconds: float) -> int:
    p = LogMelParams()
    frames = p.frames_for(n_samples)
    w = p.frames_for(int(window_seconds * SR))
    hop = round(hop_seconds * SR / p.hop_length)
    return 1 + (frames - w) // hop


class Running:
    """A Runtime over a paced file replay in a background thread."""

    def __init__(self, tmp: Path, y: np.ndarray, model: Path, *, speed: float = 10.0, **settings: object) -> None:
        wav = tmp / "in.wav"
        sf.write(wav, y, SR, subtype="FLOAT")
        self.out = tmp / "out"
        self.sink = LocalSink(self.out)
        self.rt = Runtime(source=FileSource(wav, sample_rate=SR, speed=speed), model=load_model(model, backend="onnxruntime"),
                          settings=Settings(**settings), sink=self.sink, backend="onnxruntime",  # type: ignore[arg-type]
                          state_path=self.out / "sequence.json", window_log=tmp / "windows.jsonl")
        self.windows_log = tmp / "windows.jsonl"
        self.status: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.status = self.rt.run()
        finally:
            self.sink.close()

    def join(self) -> int:
        self.thread.join(timeout=120)
        assert self.status is not None
        return self.status

    def alerts(self) -> list[dict]:
        return [json.loads(x) for x in (self.out / "alerts.jsonl").read_text().splitlines()]


def test_live_settings_model_swap_and_bad_swap(tmp_path: Path) -> None:
    y = tone(40.0, dbfs=-20, noise_dbfs=-40)
    m1 = make_model(tmp_path / "m1.onnx", threshold=1000.0, version="v1")  # never alerts
    m2 = make_model(tmp_path / "m2.onnx", threshold=-1000.0, version="v2")  # always over
    run = Running(tmp_path, y, m1, speed=8.0, consecutive=1, cooldown_seconds=0.0)
    rt = run.rt
    wait_for(lambda: rt.counters["scored"] >= 3)
    st = rt.status()
    assert st["state"] == "running" and st["backend"] == "onnxruntime" and st["model"]["version"] == "v1"
    assert st["threshold"] == 1000.0 and st["counters"]["alerts"] == 0

    rt.apply_settings(replace(rt.settings, threshold=-1000.0, machine="press-2"))  # live override
    wait_for(lambda: rt.counters["alerts"] >= 2)
    rt.apply_settings(replace(rt.settings, threshold=None))  # back to the card's
    before = rt.counters["alerts"]
    time.sleep(0.5)
    assert rt.counters["alerts"] <= before + 1  # at most the window in flight

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="junk.onnx"):
        rt.swap_model(junk)
    assert rt.status()["model"]["version"] == "v1"  # the old model stays

    result = rt.swap_model(m2)
    assert result["ok"] and result["card"]["version"] == "v2"
    assert rt.status()["model"]["version"] == "v2" and rt.threshold == -1000.0
    assert run.join() == 0
    alerts = run.alerts()
    assert {a["machine"] for a in alerts} == {"press-2"}
    assert alerts[-1]["model"] == "v2" and alerts[0]["model"] == "v1"
    assert alerts[0]["threshold"] == -1000.0
    # The swap dropped no audio and restarted nothing: every hop still gave a window.
    assert rt.counters["windows"] == expected_windows(y.size, 2.0, 1.0)
    assert rt.counters["model_swaps"] == 1


def test_a_new_front_end_restarts_the_analysis(tmp_path: Path) -> None:
    y = tone(30.0, dbfs=-20)
    m1 = make_model(tmp_path / "m1.onnx", window_seconds=2.0)
    m2 = make_model(tmp_path / "m2.onnx", window_seconds=3.0, params=LogMelParams(n_mels=64), version="wide")
    run = Running(tmp_path, y, m1, speed=8.0)
    wait_for(lambda: run.rt.counters["windows"] >= 2)
    run.rt.swap_model(m2)
    assert run.join() == 0
    logged = [json.loads(x) for x in run.windows_log.read_text().splitlines()]
    spans = {round(w["end_offset"] - w["start_offset"], 3) for w in logged}
    assert spans == {2.0, 3.0}


def test_hop_change_applies_between_windows(tmp_path: Path) -> None:
    y = tone(30.0, dbfs=-20)
    run = Running(tmp_path, y, make_model(tmp_path / "m.onnx"), speed=8.0, hop_seconds=1.0)
    wait_for(lambda: run.rt.counters["windows"] >= 3)
    run.rt.apply_settings(replace(run.rt.settings, hop_seconds=0.25))
    assert run.join() == 0
    starts = [json.loads(x)["start_offset"] for x in run.windows_log.read_text().splitlines()]
    steps = {round(b - a, 3) for a, b in zip(starts, starts[1:])}
    assert steps == {0.992, 0.256}  # the first short hop comes one new hop after the last long one
    assert run.rt.status()["hop_seconds"] == pytest.approx(0.256)


def test_capture_clip_records_the_next_seconds(tmp_path: Path) -> None:
    y = np.concatenate([tone(4.0, dbfs=-30, freq=300), tone(20.0, dbfs=-12, freq=1000, seed=4)])
    run = Running(tmp_path, y, make_model(tmp_path / "m.onnx"), speed=8.0, machine="line 4")
    rt = run.rt
    with pytest.raises(CaptureError, match="seconds"):
        rt.capture_clip(0, "x")
    wait_for(lambda: rt.audio_seconds >= 6.0)
    path = rt.capture_clip(1.5, "bearing noise?")
    assert path.parent.parent.name == "line-4" and re.fullmatch(r"\d{9}-bearing-noise-c\d+\.wav", path.name)
    assert path.is_relative_to(run.sink.clip_dir)
    clip, sr = sf.read(path, dtype="float32")
    assert sr == SR and clip.size == int(1.5 * SR)
    assert 10 * np.log10(np.mean(clip.astype(np.float64) ** 2)) == pytest.approx(-12.0, abs=0.3)  # the later part
    assert run.join() == 0
    with pytest.raises(CaptureError, match="not running"):
        rt.capture_clip(1.0, "late")


def test_capture_fails_cleanly_when_the_source_ends(tmp_path: Path) -> None:
    run = Running(tmp_path, tone(6.0), make_model(tmp_path / "m.onnx"), speed=4.0)
    wait_for(lambda: run.rt.audio_seconds >= 2.0)
    with pytest.raises(CaptureError, match="source ended"):
        run.rt.capture_clip(30.0, "long")
    assert run.join() == 0


def test_self_test_and_reload(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m.onnx", version="a")
    run = Running(tmp_path, tone(20.0), model, speed=4.0)
    rt = run.rt
    report = rt.self_test()
    assert report["ok"], report
    assert report["checks"]["front_end"]["ok"] and "stream = batch" in report["checks"]["front_end"]["detail"]
    make_model(model, version="b")  # replaced on disk, e.g. by an operator
    assert rt.reload_model()["card"]["version"] == "b"
    assert rt.status()["model"]["version"] == "b"
    rt.stop()
    assert run.join() == 0


def test_device_change_recompiles_openvino(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m.onnx")
    sink = LocalSink(tmp_path / "out")
    rt = Runtime(source=_silent_source(tmp_path), model=load_model(model, backend="openvino", device="AUTO"), settings=Settings(), sink=sink,
                 backend="openvino")
    rt.apply_settings(replace(rt.settings, device="CPU"))
    assert rt.settings.device == "CPU" and rt.status()["device"] == "CPU"
    with pytest.raises(ModelError, match="GPU"):
        rt.apply_settings(replace(rt.settings, device="GPU"))  # no GPU here: refused, old kept
    assert rt.settings.device == "CPU" and rt.status()["backend"] == "openvino"
    sink.close()


def test_precision_change_recompiles_and_is_reported(tmp_path: Path) -> None:
    from audioclassifier.backends import openvino_core

    model = make_model(tmp_path / "m.onnx")
    sink = LocalSink(tmp_path / "out")
    rt = Runtime(source=_silent_source(tmp_path), model=load_model(model, backend="openvino", device="CPU"),
                 settings=Settings(device="CPU"), sink=sink, backend="openvino")
    assert rt.status()["precision"] == "f32" and rt.settings.precision == "f32"
    before = rt.model
    rt.apply_settings(replace(rt.settings, precision="bf16"))
    assert rt.model is not before  # recompiled
    capable = "BF16" in openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert rt.status()["precision"] == ("bf16" if capable else "f32")  # what it got, not what was asked
    assert rt.status()["settings"]["precision"] == "bf16"
    rt.apply_settings(replace(rt.settings, precision="f32"))
    assert rt.status()["precision"] == "f32"
    sink.close()


def _silent_source(tmp: Path) -> FileSource:
    sf.write(tmp / "s.wav", np.zeros(SR, dtype=np.float32), SR)
    return FileSource(tmp / "s.wav", sample_rate=SR, speed=None)


def test_alert_clips_hold_their_whole_window_with_short_blocks(tmp_path: Path) -> None:
    """With microphone-sized blocks the window's last STFT frame ends up to a hop before the window
    does, and the alert fired before those samples arrived: clips ended 64-256 samples short."""
    y = np.concatenate([tone(6.0, dbfs=-60, noise_dbfs=-80), tone(14.0, dbfs=-15, noise_dbfs=-35, seed=3)])
    model = make_model(tmp_path / "m.onnx", threshold=-1000.0, window_seconds=2.0)  # every window is over
    run = Running(tmp_path, y, model, speed=40.0, consecutive=1, cooldown_seconds=0.0, hop_seconds=0.5)
    assert run.join() == 0
    alerts = run.alerts()
    assert len(alerts) >= 10
    sizes = {sf.info(run.out / "clips" / a["clip"]).frames for a in alerts if a["audio_offset_seconds"] >= 3.0}
    assert sizes == {5 * SR}, sizes  # 3 s of context and the whole 2 s window, every time
