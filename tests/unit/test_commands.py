"""One command queue from other threads into the runtime's worker: order, cancellation, waiting,
and the runtime's controls over it (while running, before and after, and from the worker itself)."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audioclassifier.backends import load_model
from audioclassifier.commands import (
    ApplySettings,
    CommandQueue,
    EndCalibration,
    settles,
    wait,
)
from audioclassifier.runtime import CalibrationError, CaptureError, Runtime
from audioclassifier.settings import Settings
from audioclassifier.sinks import LocalSink
from audioclassifier.sources import FileSource
from harness.audio import tone
from harness.models import make_model

SR = 16000


def test_the_queue_drains_in_order_and_skips_what_callers_gave_up() -> None:
    q = CommandQueue()
    a, b, c = (ApplySettings(settings=Settings(machine=m)) for m in "abc")
    for cmd in (a, b, c):
        q.put(cmd)
    assert b.future.cancel()  # its caller gave up while it was queued
    c.future.set_exception(CaptureError("gave up"))  # resolved by its caller
    got = list(q.drain())
    assert got == [a] and a.future.running()
    assert list(q.drain()) == []


def test_wait_cancels_what_the_worker_did_not_take() -> None:
    cmd = EndCalibration(run=Future(), reason="x")
    with pytest.raises(TimeoutError, match="test: the worker did not take it"):
        wait(cmd.future, 0.01, "test")
    assert cmd.future.cancelled()
    taken = EndCalibration(run=Future(), reason="y")
    assert taken.future.set_running_or_notify_cancel()
    threading.Timer(0.05, taken.future.set_result, args=("ok",)).start()
    assert wait(taken.future, 0.01, "test") == "ok"  # running: the caller waits for the outcome
    assert not settles(Future(), 0.01) and settles(cmd.future, 0.01)
    with pytest.raises(CancelledError):
        cmd.future.result()


def _runtime(tmp_path: Path, seconds: float, *, speed: float | None) -> Runtime:
    wav = tmp_path / "in.wav"
    sf.write(wav, tone(seconds, dbfs=-20), SR, subtype="FLOAT")
    model = load_model(make_model(tmp_path / "m.onnx", window_seconds=1.0), backend="onnxruntime")
    return Runtime(source=FileSource(wav, sample_rate=SR, speed=speed), model=model, settings=Settings(),
                   sink=LocalSink(tmp_path / "out"), backend="onnxruntime")


def test_without_a_worker_the_caller_applies_its_command(tmp_path: Path) -> None:
    rt = _runtime(tmp_path, 3.0, speed=None)
    rt.apply_settings(replace(rt.settings, hop_seconds=0.5, machine="before"))  # no worker yet
    assert rt.settings.machine == "before" and rt.status()["hop_seconds"] == pytest.approx(0.512)
    assert rt.start_calibration(30.0)["state"] == "running"  # begins with the audio
    with pytest.raises(CalibrationError, match="already running"):
        rt.start_calibration(30.0)
    assert rt.run() == 0
    assert rt.status()["calibration"]["state"] == "failed" and "source ended" in rt.status()["calibration"]["error"]
    rt.apply_settings(replace(rt.settings, machine="after"))  # the worker is gone: still applied
    assert rt.settings.machine == "after"
    with pytest.raises(CaptureError, match="not running"):
        rt.capture_clip(1.0, "late")


def test_commands_from_many_threads_and_from_the_worker(tmp_path: Path) -> None:
    rt = _runtime(tmp_path, 30.0, speed=4.0)
    seen: list[dict] = []

    def on_done(state: dict) -> None:  # runs in the worker: a control call from there must not deadlock
        rt.apply_settings(replace(rt.settings, machine="calibrated"))
        seen.append(state)

    worker = threading.Thread(target=rt.run, daemon=True)
    worker.start()
    errors: list[BaseException] = []

    def tweak(i: int) -> None:
        try:
            for k in range(5):
                rt.apply_settings(replace(rt.settings, consecutive=1 + (i + k) % 3))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=tweak, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    rt.start_calibration(1.0, 99.0, on_done=on_done)
    path = rt.capture_clip(0.5, "meanwhile")
    assert sf.info(path).frames == SR // 2
    rt.stop()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert seen and seen[0]["state"] in ("done", "failed") and rt.settings.machine == "calibrated"
    assert np.isfinite(rt.threshold)
