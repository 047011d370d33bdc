"""Benchmark the log-mel front end against librosa, both measured in this run.

* batch: a 10 s clip through librosa and through :func:`audioclassifier.features.logmel`;
* stream: 1 s of new audio through :class:`LogMelStream` against what a naive edge loop does,
  librosa recomputing the whole 10 s window every second.

* each trick of the front end against the plain way, on the same clip: numpy's float64 rfft
  against its float32 one (what librosa runs for float32 audio), the block-banded mel product
  against the dense one.

* the floor: numpy's float64 rfft alone, on the batch's frames and on the stream step's, against
  librosa (``fft_floor_*_ratio``): no front end built on numpy's FFT can beat these ratios.

Prints ``name: value`` lines and ends with ``logmel_batch_ratio`` (goal <= 0.25) and
``logmel_stream_ratio`` (goal <= 0.03). Both sides run single-threaded (BLAS and FFT).
Usage: ``python bench/features.py [--repeats N] [--clip FILE]``.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import librosa  # noqa: E402
import numpy as np  # noqa: E402

from audioclassifier.audio_io import load_audio  # noqa: E402
from audioclassifier.features import (  # noqa: E402
    LogMelParams,
    LogMelStream,
    _engine,
    _window,
    logmel,
    mel_filterbank,
)

REPO = Path(__file__).resolve().parents[1]


def median_seconds(*fns: Callable[[], object], repeats: int, rounds: int = 5, warmup: int = 3) -> list[float]:
    """Median CPU time of each function over ``repeats`` calls.

    Both sides run on one thread, so process CPU time is the fair measure, and it stays steady
    when other processes load the machine (wall time does not). Each function runs in warm blocks
    (caches hold its own data, as in a steady stream), and the blocks alternate over ``rounds``
    so that any drift in the machine's state falls on every side alike.
    """
    times: list[list[float]] = [[] for _ in fns]
    per_round = max(1, repeats // rounds)
    for _ in range(rounds):
        for fn, ts in zip(fns, times):
            for _ in range(warmup):
                fn()
            for _ in range(per_round):
                t0 = time.process_time()
                fn()
                ts.append(time.process_time() - t0)
    return [statistics.median(ts) for ts in times]


def librosa_logmel(y: np.ndarray, p: LogMelParams) -> np.ndarray:
    """The reference: librosa with the same parameters and framing."""
    s = librosa.feature.melspectrogram(
        y=y, sr=p.sample_rate, n_fft=p.n_fft, hop_length=p.hop_length, n_mels=p.n_mels,
        fmin=p.fmin, fmax=p.fmax_hz, power=p.power, center=False,
    )
    return librosa.power_to_db(s, ref=1.0, amin=1e-10, top_db=None)


def test_clip(path: str | None, p: LogMelParams) -> tuple[np.ndarray, str]:
    """A real 10 s recording from ../shared/data if present, else a synthetic machine clip."""
    candidates = [Path(path)] if path else [REPO.parent / "shared/data/dcase2020-task2-dev-slice/id_00/normal/normal_id_00_00000000.wav"]
    for c in candidates:
        if c.is_file():
            return load_audio(c, sample_rate=p.sample_rate)[: 10 * p.sample_rate], str(c)
    rng = np.random.default_rng(0)
    t = np.arange(10 * p.sample_rate) / p.sample_rate
    y = 0.3 * np.sin(2 * np.pi * 120 * t) + 0.05 * rng.standard_normal(t.size)
    return y.astype(np.float32), "synthetic"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--clip", help="a WAV file to use instead of the default real clip")
    args = ap.parse_args()

    p = LogMelParams()
    y, source = test_clip(args.clip, p)
    print(f"clip: {source} ({len(y) / p.sample_rate:.1f} s, {p.n_mels} mels, n_fft {p.n_fft}, hop {p.hop_length})")
    err = float(np.abs(logmel(y, params=p) - librosa_logmel(y, p)).max())
    print(f"max_abs_diff_db: {err:.2e}")

    # streaming: the stream has seen 9 s; each step pushes the next second
    sec = p.sample_rate
    stream = LogMelStream(p)
    stream.push(y[: 9 * sec])
    new = y[9 * sec : 10 * sec]
    state = stream._tail.copy()

    def stream_step() -> None:
        stream._tail = state  # replay the same second from the same state each repeat
        stream.push(new)

    # the FFT alone, as the front end runs it, on the batch's frames and on the stream step's
    count = p.frames_for(len(y))
    frames32 = np.lib.stride_tricks.sliding_window_view(y, p.n_fft)[:: p.hop_length][:count] * _window(p.n_fft)
    frames64 = frames32.astype(np.float64)
    step_frames = np.ascontiguousarray(frames64[-p.frames_for(len(state) + len(new)):])

    t_lib, t_ours, t_stream, t_fft_batch, t_fft_step = median_seconds(
        lambda: librosa_logmel(y, p), lambda: logmel(y, params=p), stream_step,
        lambda: np.fft.rfft(frames64, axis=1), lambda: np.fft.rfft(step_frames, axis=1), repeats=args.repeats
    )

    # the tricks, each against the plain way on the same 10 s of frames
    engine = _engine(p)
    power = np.abs(np.fft.rfft(frames64, axis=1)).astype(np.float32) ** 2
    fb = mel_filterbank(sample_rate=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax_hz)
    mel_out = np.empty((p.n_mels, count), np.float32)
    t_f64, t_f32, t_block, t_dense = median_seconds(
        lambda: np.fft.rfft(frames64, axis=1), lambda: np.fft.rfft(frames32, axis=1),
        lambda: engine.mel.apply(power, mel_out), lambda: fb @ power.T, repeats=args.repeats)
    print(f"fft_float64_ms: {t_f64 * 1e3:.3f}")
    print(f"fft_float32_ms: {t_f32 * 1e3:.3f}")
    print(f"fft_trick_ratio: {t_f64 / t_f32:.3f}")
    print(f"mel_block_banded_ms: {t_block * 1e3:.3f}")
    print(f"mel_dense_ms: {t_dense * 1e3:.3f}")
    print(f"mel_trick_ratio: {t_block / t_dense:.3f}")

    print(f"librosa_10s_ms: {t_lib * 1e3:.2f}")
    print(f"logmel_batch_10s_ms: {t_ours * 1e3:.2f}")
    print(f"logmel_stream_1s_ms: {t_stream * 1e3:.3f}")
    print(f"fft_floor_batch_ms: {t_fft_batch * 1e3:.3f} ({count} frames)")
    print(f"fft_floor_stream_ms: {t_fft_step * 1e3:.3f} ({step_frames.shape[0]} frames)")
    print(f"fft_floor_batch_ratio: {t_fft_batch / t_lib:.3f}")
    print(f"fft_floor_stream_ratio: {t_fft_step / t_lib:.4f}")
    print(f"logmel_batch_ratio: {t_ours / t_lib:.3f}")
    print(f"logmel_stream_ratio: {t_stream / t_lib:.4f}")


if __name__ == "__main__":
    main()
