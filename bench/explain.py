"""Benchmark what the alert path adds on the device: the explanation and the health index.

* ``explain_alert_us``: an alert's explanation (:meth:`audioclassifier.bands.NormalBands.explain`:
  the window's band level and variability, compared with a normal profile, ranges, summary) on a
  real log-mel window with a rattle in it; goal: well under 1 ms (1000 us);
* ``window_bands_us``: the per-window cost of keeping the running normal (every scored normal window);
* ``health_update_us``: one window into the health index; ``health_status_us``: its status, as an
  alert or a telemetry message reads it (with a day of trend samples).

Process CPU time, medians over warm blocks, one thread. Prints ``name: value`` lines.
Usage: ``python bench/explain.py [--repeats N] [--n-mels 128]``.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from audioclassifier.bands import NormalBands, window_bands  # noqa: E402
from audioclassifier.features import LogMelParams, logmel  # noqa: E402
from audioclassifier.health import HealthTracker  # noqa: E402


def per_call_us(fn: Callable[[], object], *, repeats: int, rounds: int = 5) -> float:
    for _ in range(20):
        fn()
    times = []
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(repeats):
            fn()
        times.append((time.process_time() - t0) / repeats)
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2000)
    ap.add_argument("--n-mels", type=int, default=128)
    args = ap.parse_args()
    sr = 16000
    params = LogMelParams(sample_rate=sr, n_fft=1024, hop_length=512, n_mels=args.n_mels)
    rng = np.random.default_rng(0)
    bands = NormalBands(None)
    bands.bind(params, "bench")
    for _ in range(60):
        bands.window(*window_bands(logmel(0.05 * rng.standard_normal(2 * sr).astype(np.float32), params=params)),
                     normal=True)
    y = 0.05 * rng.standard_normal(2 * sr).astype(np.float32)
    for start in range(0, 2 * sr, sr // 4):  # 20 ms bursts four times a second: an impulsive change
        y[start : start + sr // 50] += 0.3 * rng.standard_normal(sr // 50).astype(np.float32)
    window = logmel(y, params=params)
    explanation = bands.explain(window)
    assert explanation is not None
    print(f"window_shape: {window.shape[0]}x{window.shape[1]}")
    print(f"explanation: {explanation['summary']}")
    print(f"explain_alert_us: {per_call_us(lambda: bands.explain(window), repeats=args.repeats):.1f}")
    print(f"window_bands_us: {per_call_us(lambda: window_bands(window), repeats=args.repeats):.1f}")

    health = HealthTracker(600)
    t = [1_763_700_000.0]
    for i in range(86400):  # a day at a hop of 1 s: a full trend history
        health.update(float(rng.gamma(4.0, 0.1)), 1.0, t[0] + i)
    t[0] += 86400

    def update() -> None:
        t[0] += 1.0
        health.update(0.4, 1.0, t[0])

    print(f"health_update_us: {per_call_us(update, repeats=args.repeats):.1f}")
    print(f"health_status_us: {per_call_us(health.status, repeats=args.repeats):.1f}")
    print(f"health_trend_fit_us: {per_call_us(health._fit_trend, repeats=max(10, args.repeats // 20)):.1f}")


if __name__ == "__main__":
    main()
