"""Benchmark the live page's cost: the module with ``--http-port`` off and on, in the same run.

The module replays ``--seconds`` of synthetic machine sound in real time (the default model,
onnxruntime, 1 s hop), as its container runs it (:func:`bench.module.module_cmd`), twice:

* ``off``: no server;
* ``on``: ``--http-port``, with a live page connected the whole time (``/api/events`` read as a
  browser reads it), ``/api/status`` every 2 s and ``/metrics`` every 5 s (a Prometheus scrape).

CPU seconds come from ``os.wait4``, peak RSS from the module's closing log line (``VmHWM``). Then
``POST /api/score`` of a 60 s recording is timed (median of 5, the module running). Prints
``name: value`` lines: ``cpu_seconds_off``, ``cpu_seconds_on``, ``cpu_percent_off``,
``cpu_percent_on`` (of one core), ``peak_rss_mb_off``, ``peak_rss_mb_on``, ``rss_added_mb``,
``events_received``, ``score_60s_ms``. Usage: ``python bench/web.py [--seconds 120]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from module import REPO, hour_audio, module_cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the module did not listen on {port}")


def get(port: int, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST" if body is not None else "GET", path, body=body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class PageClient(threading.Thread):
    """A browser's worth of traffic: the event stream, the status every 2 s, /metrics every 5 s."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.events = 0
        self.stop = threading.Event()

    def run(self) -> None:
        threading.Thread(target=self._poll, daemon=True).start()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.request("GET", "/api/events")
            r = conn.getresponse()
            while not self.stop.is_set():
                line = r.readline()
                if not line:
                    return
                self.events += line.startswith(b"event:")
        except OSError:
            return

    def _poll(self) -> None:
        n = 0
        while not self.stop.wait(1.0):
            n += 1
            try:
                if n % 2 == 0:
                    get(self.port, "/api/status")
                if n % 5 == 0:
                    get(self.port, "/metrics")
            except OSError:
                return


def measured(cmd: list[str], *, client_port: int | None = None) -> tuple[float, float, float, int]:
    """Run ``cmd`` to its end: (CPU seconds, peak RSS MB from its log, wall seconds, events a page received)."""
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        client = None
        if client_port is not None:
            wait_port(client_port)
            client = PageClient(client_port)
            client.start()
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        if client is not None:
            client.stop.set()
        err.seek(0)
        text = err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the module failed:\n{text[-3000:]}")
    m = re.search(r"peak RSS ([0-9.]+) MB", text)
    if not m:
        raise SystemExit(f"no peak RSS line:\n{text[-2000:]}")
    return usage.ru_utime + usage.ru_stime, float(m.group(1)), wall, client.events if client else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="audio replayed in real time per run (default 120)")
    ap.add_argument("--model", type=Path, default=REPO / "modules/audioclassifier/audioclassifier/models/model.onnx")
    args = ap.parse_args()
    source = hour_audio(args.seconds / 60.0)
    with tempfile.TemporaryDirectory() as tmp:
        base = module_cmd(source, args.model, "onnxruntime", Path(tmp) / "off")
        realtime = [*base[: base.index("--speed") + 1], "realtime", *base[base.index("--speed") + 2:]]
        cpu_off, rss_off, wall_off, _ = measured(realtime)
        port = free_port()
        on = [*realtime, "--http-port", str(port)]
        on[on.index("--local-out") + 1] = str(Path(tmp) / "on")
        cpu_on, rss_on, wall_on, events = measured(on, client_port=port)

        # POST /api/score of a 60 s recording while the module runs
        clip = hour_audio(1.0)
        port = free_port()
        score = [*realtime, "--http-port", str(port)]
        score[score.index("--local-out") + 1] = str(Path(tmp) / "score")
        p = subprocess.Popen(score, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            body = clip.read_bytes()
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                status, data = get(port, "/api/score?hop_seconds=1", body)
                times.append(time.perf_counter() - t0)
                if status != 200:
                    raise SystemExit(f"/api/score answered {status}: {data[:300]!r}")
            windows = json.loads(data)["windows"]
        finally:
            p.terminate()
            p.wait(30)
    print(f"audio_seconds: {args.seconds:g}")
    print(f"cpu_seconds_off: {cpu_off:.2f}")
    print(f"cpu_seconds_on: {cpu_on:.2f}")
    print(f"cpu_percent_off: {100 * cpu_off / wall_off:.1f}")
    print(f"cpu_percent_on: {100 * cpu_on / wall_on:.1f}")
    print(f"peak_rss_mb_off: {rss_off:.1f}")
    print(f"peak_rss_mb_on: {rss_on:.1f}")
    print(f"rss_added_mb: {rss_on - rss_off:.1f}")
    print(f"events_received: {events}")
    print(f"score_60s_windows: {windows}")
    print(f"score_60s_ms: {1000 * statistics.median(times):.0f}")


if __name__ == "__main__":
    main()
