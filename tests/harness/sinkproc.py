"""A process that drives the hub side (HubApp) the way the runtime does: alerts with clips at a steady rate.

``python -m harness.sinkproc --alerts N --interval S`` (from tests/) emits N alerts, each with a
freshly written clip, then keeps serving until SIGTERM, which closes the sink (flush). Used by the
fault tests to kill and restart a real process around the hub side; the module end-to-end tests
run ``python -m audioclassifier`` itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from audioclassifier.audio_io import write_wav
from audioclassifier.config import hub_config
from audioclassifier.hub import HubApp
from audioclassifier.settings import Settings


class Control:
    def __init__(self, clip_dir: Path) -> None:
        self.settings = Settings(machine="pump-1")
        self.clip_dir = clip_dir
        self.alerts = 0

    def apply_settings(self, s: Settings) -> None:
        self.settings = s

    def status(self) -> dict:
        return {"state": "running", "alerts": self.alerts}

    def capture_clip(self, seconds: float, label: str) -> Path:
        return self.write_clip(label, seconds, seed=int(time.time()))

    def write_clip(self, label: str, seconds: float, seed: int) -> Path:
        y = np.random.default_rng(seed).standard_normal(int(16000 * seconds)).astype(np.float32) * 0.1
        name = f"{self.settings.machine}/2026-01-02/{seed:06d}-{label}.wav"
        return write_wav(self.clip_dir / name, y, sample_rate=16000)

    def reload_model(self) -> dict:
        return {}

    def swap_model(self, path: Path) -> dict:
        return {}

    def self_test(self) -> dict:
        return {"ok": True}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--alerts", type=int, default=0)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--clip-seconds", type=float, default=1.0)
    p.add_argument("--first", type=int, default=0, help="number of the first alert (clip names)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    app = HubApp(hub_config(os.environ))
    sink = app.sink
    control = Control(sink.clip_dir)
    app.start(control)
    for i in range(args.first, args.first + args.alerts):
        if stop.is_set():
            break
        clip = control.write_clip("bearing", args.clip_seconds, seed=i)
        control.alerts += 1
        sink.emit("alerts", {"type": "anomaly", "machine": "pump-1", "label": "bearing", "score": 0.9,
                             "threshold": 0.5, "clip": clip.relative_to(sink.clip_dir).as_posix(), "i": i, "seq": 0})
        print(f"emitted {i}", flush=True)
        stop.wait(args.interval)
    print("done emitting", flush=True)
    stop.wait()
    app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
