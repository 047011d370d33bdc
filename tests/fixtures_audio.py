"""Test helpers for the edge module: small real ONNX models with Auscult cards, test recordings,
and a real PulseAudio server whose pipe source stands in for a microphone.

The models follow the module's contract exactly (input ``logmel`` (batch, n_mels, frames),
output ``score`` (batch,) or ``probs`` (batch, labels)) and score what is easy to reason about:
the mean log-mel level of the window in dB, so a louder window scores higher.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from audioclassifier.card import ModelCard
from audioclassifier.features import LogMelParams

__all__ = ["PulseMic", "make_model", "pulse_mic", "tone"]


def make_model(
    path: Path,
    *,
    kind: str = "anomaly",
    threshold: float = -40.0,
    window_seconds: float = 2.0,
    params: LogMelParams = LogMelParams(),
    labels: tuple[str, ...] | None = None,
    version: str = "test-1",
    mismatch: bool = False,
) -> Path:
    """Write a mean-log-mel-level model with a card. ``classifier``: labels ``normal``, ``loud``,
    p(loud) = sigmoid((level + 40) / 5). ``mismatch``: the graph's output contradicts the card."""
    import onnx
    from onnx import TensorProto, helper

    from ml.modelcard import save_with_card

    frames = params.frames_for(int(round(window_seconds * params.sample_rate)))
    inp = helper.make_tensor_value_info("logmel", TensorProto.FLOAT, ["batch", params.n_mels, frames])
    init = [helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])]
    nodes = [helper.make_node("ReduceMean", ["logmel", "axes"], ["level"], keepdims=0)]
    classifier_graph = (kind == "classifier") != mismatch
    if classifier_graph:
        # logits (batch, 2) = level[:, None] * w + b, w = [0, 0.2], b = [0, 8]: p(loud) = sigmoid((level+40)/5)
        init += [helper.make_tensor("one", TensorProto.INT64, [1], [1]),
                 helper.make_tensor("w", TensorProto.FLOAT, [1, 2], [0.0, 0.2]),
                 helper.make_tensor("b", TensorProto.FLOAT, [2], [0.0, 8.0])]
        nodes += [helper.make_node("Unsqueeze", ["level", "one"], ["col"]),
                  helper.make_node("MatMul", ["col", "w"], ["xw"]),
                  helper.make_node("Add", ["xw", "b"], ["logits"]),
                  helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
        out = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 2])
    else:
        nodes += [helper.make_node("Identity", ["level"], ["score"])]
        out = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])
    graph = helper.make_graph(nodes, "mean_level", [inp], [out], initializer=init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    if labels is None:
        labels = ("normal", "loud") if kind == "classifier" else ("anomaly",)
    card = ModelCard(kind=kind, labels=labels, features=params, window_seconds=window_seconds,
                     threshold=threshold, version=version, threshold_method="test: fixed",
                     trained={"dataset": "none: a test model scoring the mean log-mel level"})
    if mismatch:
        from ml.modelcard import embed_card

        embed_card(model, card)
        onnx.save_model(model, str(path))
        return path
    return save_with_card(model, card, path)


def tone(seconds: float, *, sr: int = 16000, freq: float = 440.0, dbfs: float = -20.0, seed: int = 0,
         noise_dbfs: float = -60.0) -> np.ndarray:
    """A sine at ``dbfs`` (mean power, 0 dBFS = full-scale square) over white noise."""
    n = int(round(seconds * sr))
    rng = np.random.default_rng(seed)
    amp = np.sqrt(2.0) * 10 ** (dbfs / 20)
    y = amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)
    if noise_dbfs is not None:
        y = y + 10 ** (noise_dbfs / 20) * rng.standard_normal(n)
    return y.astype(np.float32)


class PulseMic:
    """A private PulseAudio server (own XDG_RUNTIME_DIR) with a null sink and a pipe source that a
    writer thread keeps fed in real time. ``mode``: ``"silence"`` (digital zeros), ``"tone"``
    (``signal`` in a loop), or ``"stop"`` (write nothing: the microphone goes dead)."""

    RATE = 16000

    def __init__(self, root: Path) -> None:
        self.root = root
        self.run_dir = root / "run"
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.fifo = root / "mic.fifo"
        self.env = {"XDG_RUNTIME_DIR": str(self.run_dir), "HOME": str(root),
                    "PULSE_SERVER": f"unix:{self.run_dir / 'pulse' / 'native'}"}
        self.mode = "silence"
        self.signal = tone(1.0, sr=self.RATE, dbfs=-20.0)
        self.written = 0
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._writer: threading.Thread | None = None

    def start(self) -> PulseMic:
        exe = shutil.which("pulseaudio")
        if exe is None:
            pytest.skip("pulseaudio is not installed (Debian: apt-get install pulseaudio libportaudio2)")
        env = {**os.environ, **self.env}
        self._proc = subprocess.Popen(
            [exe, "-n", "--daemonize=no", "--exit-idle-time=-1", "--disable-shm=yes", "--use-pid-file=no",
             "--log-target=stderr", "--log-level=error",
             "-L", "module-native-protocol-unix",
             "-L", "module-null-sink sink_name=null",
             "-L", f"module-pipe-source source_name=testmic file={self.fifo} format=s16le rate={self.RATE} channels=1"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(self.root / "pulseaudio.log", "wb"))
        sock = self.run_dir / "pulse" / "native"
        deadline = time.monotonic() + 15
        while not (sock.exists() and self.fifo.exists()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pulseaudio did not start: {(self.root / 'pulseaudio.log').read_text()[-2000:]}")
            time.sleep(0.05)
        subprocess.run(["pactl", "set-default-source", "testmic"], env=env, check=True, timeout=10,
                       capture_output=True)
        self._writer = threading.Thread(target=self._write_loop, name="pulse-mic-writer", daemon=True)
        self._writer.start()
        return self

    def _write_loop(self) -> None:
        """Feed the pipe in 20 ms blocks on a real-time schedule (zeros unless told otherwise)."""
        fd = os.open(self.fifo, os.O_WRONLY)
        block = self.RATE // 50
        t0 = time.monotonic()
        sent = 0
        pos = 0
        try:
            while not self._stop.is_set():
                due = t0 + sent / self.RATE
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if self.mode == "stop":
                    t0, sent = time.monotonic(), 0
                    time.sleep(0.02)
                    continue
                if self.mode == "tone":
                    idx = (pos + np.arange(block)) % self.signal.size
                    x = self.signal[idx]
                    pos += block
                else:
                    x = np.zeros(block, dtype=np.float32)
                os.write(fd, (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
                sent += block
                self.written += block
        except OSError:
            pass
        finally:
            os.close(fd)

    def stop(self) -> None:
        self._stop.set()
        if self._proc is not None:  # first: a writer blocked on a full pipe then gets EPIPE
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._writer is not None:
            self._writer.join(timeout=5)


@pytest.fixture
def pulse_mic(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[PulseMic]:
    """A running PulseAudio 'microphone'; this process's environment points at it."""
    root = Path(str(tmp_path_factory.mktemp("pulse")))
    mic = PulseMic(root).start()
    for k, v in mic.env.items():
        if k != "HOME":
            monkeypatch.setenv(k, v)
    try:
        yield mic
    finally:
        mic.stop()
