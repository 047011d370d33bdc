"""The microphone, for real: PortAudio (sounddevice) → ALSA → a private PulseAudio server whose
pipe source we feed. End to end through the module, a dead microphone and its recovery, and a
device that does not exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclassifier.backends import load_model
from audioclassifier.mic import MicSource
from audioclassifier.runtime import Runtime
from audioclassifier.settings import Settings
from audioclassifier.sinks import LocalSink
from harness.audio import PulseMic, pulse_mic, tone  # noqa: F401 - pulse_mic is a fixture
from harness.models import make_model
from harness.procs import terminate, wait_for

SR = 16000


def test_module_listens_to_the_microphone(pulse_mic: PulseMic, tmp_path: Path) -> None:
    pulse_mic.signal = tone(1.0, dbfs=-20.0, noise_dbfs=-50.0)
    pulse_mic.mode = "tone"
    model = make_model(tmp_path / "m.onnx", window_seconds=1.0, threshold=-1000.0)
    wlog = tmp_path / "windows.jsonl"
    out = tmp_path / "out"
    env = {**os.environ, **pulse_mic.env}
    p = subprocess.Popen([sys.executable, "-m", "audioclassifier", "--source", "mic", "--model", str(model),
                          "--local-out", str(out), "--backend", "onnxruntime", "--window-log", str(wlog),
                          "--hop-seconds", "0.5", "--consecutive", "1", "--machine", "mic-test"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: wlog.exists() and len(wlog.read_text().splitlines()) >= 3 or p.poll() is not None,
                 what="three windows from the microphone")
    finally:
        stdout, stderr = terminate(p, timeout=20)
    assert p.returncode == 0, stderr
    windows = [json.loads(x) for x in wlog.read_text().splitlines()]
    assert len(windows) >= 3, stderr
    for w in windows[1:]:  # the first may hold the stream's start-up
        assert w["level_dbfs"] == pytest.approx(-20.0, abs=1.0) and w["score"] is not None
    alert = json.loads((out / "alerts.jsonl").read_text().splitlines()[0])
    assert alert["machine"] == "mic-test" and "ALERT" in stdout
    clip, sr = sf.read(out / "clips" / alert["clip"], dtype="float32")
    spectrum = np.abs(np.fft.rfft(clip))
    assert sr == SR and np.argmax(spectrum) * SR / clip.size == pytest.approx(440.0, abs=2.0)  # what we played
    telemetry = [json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines()]
    assert telemetry[-1]["state"] == "running" and telemetry[-1]["overflows"] == 0


def test_dead_microphone_is_reopened_and_recovers(pulse_mic: PulseMic, tmp_path: Path) -> None:
    pulse_mic.signal = tone(1.0, dbfs=-25.0, noise_dbfs=-50.0, freq=600.0)
    pulse_mic.mode = "tone"
    source = MicSource(sample_rate=SR, dead_seconds=0.6, max_backoff=1.0)
    sink = LocalSink(tmp_path / "out")
    rt = Runtime(source=source, model=load_model(make_model(tmp_path / "m.onnx", window_seconds=1.0),
                                                  backend="onnxruntime"),
                 settings=Settings(hop_seconds=0.25), sink=sink, backend="onnxruntime")
    worker = threading.Thread(target=rt.run, daemon=True)
    worker.start()
    try:
        wait_for(lambda: rt.state == "running" and rt.counters["scored"] >= 1, what="scored windows")

        pulse_mic.mode = "stop"  # no more audio: no callbacks
        wait_for(lambda: rt.state == "no-audio", what="state no-audio after the audio stopped")
        assert "no audio callbacks" in (source.last_error or "")
        assert rt.status()["state"] == "no-audio" and rt.status()["counters"]["reopens"] >= 1

        pulse_mic.mode = "tone"
        scored = rt.counters["scored"]
        wait_for(lambda: rt.state == "running" and rt.counters["scored"] > scored, what="recovery")

        pulse_mic.mode = "silence"  # digital zeros: a dead input that still delivers buffers
        wait_for(lambda: rt.state == "no-audio", what="state no-audio on digital silence")
        assert "digital silence" in (source.last_error or "")

        pulse_mic.mode = "tone"
        wait_for(lambda: rt.state == "running", what="recovery from digital silence")
        path = rt.capture_clip(0.5, "after-recovery")  # the microphone is fully usable again
        clip, _ = sf.read(path, dtype="float32")
        assert clip.size == SR // 2 and 10 * np.log10(np.mean(clip.astype(np.float64) ** 2)) > -30
    finally:
        rt.stop()
        worker.join(timeout=10)
    assert not worker.is_alive()
    states = {json.loads(x)["state"] for x in (tmp_path / "out" / "telemetry.jsonl").read_text().splitlines()}
    assert states <= {"running", "no-audio", "silent"}


def test_missing_device_waits_instead_of_crashing(pulse_mic: PulseMic) -> None:
    source = MicSource(sample_rate=SR, device="no such microphone", dead_seconds=0.5, max_backoff=0.5)
    seen: list[str] = []
    for chunk in source.chunks():
        assert chunk.samples.size == 0  # heartbeats only
        seen.append(source.state)
        if len(seen) >= 3:
            source.close()
    assert set(seen) == {"no-audio"} and "no such microphone" in (source.last_error or "")
