"""Test audio: tones over a noise floor, and a real PulseAudio server whose pipe source stands in
for a microphone (the ``pulse_mic`` fixture)."""

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

__all__ = ["PulseMic", "pulse_mic", "tone", "tone_and_noise"]


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


def tone_and_noise(n: int, *, sr: int = 16000, seed: int = 0, noise_db: float = -40.0) -> np.ndarray:
    """A few tones over a noise floor: machine-like test audio with a realistic dynamic range."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    y = np.zeros(n)
    for f in rng.uniform(50, sr / 2 * 0.9, size=3):
        y += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28))
    y += 10 ** (noise_db / 20) * rng.standard_normal(n)
    return y.astype(np.float32)
