"""Self-test: is this installation able to do its job? (``--self-test`` and the selfTest method)

Checks, each reported with ``ok`` and a detail: the model loads and its card is valid; the
streaming front end gives exactly the batch front end's columns on synthetic audio pushed in odd
block sizes; a 1 kHz tone lands in the mel band around 1 kHz and digital silence at the floor;
the model scores a synthetic window to a finite number, the same twice.
"""

from __future__ import annotations

import platform
from typing import Any, Callable

import numpy as np

from audioclassifier import __version__
from audioclassifier.backends import LoadedModel
from audioclassifier.features import AMIN, LogMelStream, logmel, mel_frequencies

__all__ = ["run_self_test", "synthetic_audio"]


def synthetic_audio(n: int, *, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A machine-like test signal: a few harmonics of a shaft tone over a noise floor (-26 dBFS)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sample_rate
    f0 = 50.0
    y = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t + k) for k in range(1, 8))
    y = y + 0.01 * rng.standard_normal(n)
    y *= 0.05 / np.sqrt(np.mean(y**2))
    return y.astype(np.float32)


def _front_end(model: LoadedModel) -> str:
    card = model.card
    p = card.features
    y = synthetic_audio(card.window_samples + 3 * p.n_fft + 17, sample_rate=p.sample_rate)
    batch = logmel(y, params=p)
    stream = LogMelStream(p)
    cols: list[np.ndarray] = []
    i, sizes = 0, (1, 333, p.n_fft, 7 * p.hop_length + 5)
    while i < y.size:
        n = sizes[len(cols) % len(sizes)]
        cols.append(stream.push(y[i : i + n]))
        i += n
    streamed = np.concatenate(cols, axis=1)
    if streamed.shape != batch.shape:
        raise AssertionError(f"stream gave {streamed.shape} columns, batch {batch.shape}")
    diff = float(np.max(np.abs(streamed - batch)))
    if diff > 1e-3:
        raise AssertionError(f"stream and batch differ by {diff:.3g} dB")
    tone = 0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(p.n_fft * 4) / p.sample_rate).astype(np.float32)
    band = int(np.argmax(logmel(tone, params=p).mean(axis=1)))
    centres = mel_frequencies(n_mels=p.n_mels + 2, fmin=p.fmin, fmax=p.fmax_hz)[1:-1]
    if not 0.8 * 1000 <= centres[band] <= 1.25 * 1000:
        raise AssertionError(f"a 1 kHz tone peaks in the band at {centres[band]:.0f} Hz")
    floor = float(logmel(np.zeros(p.n_fft, dtype=np.float32), params=p).max())
    if abs(floor - 10 * np.log10(AMIN)) > 1e-3:
        raise AssertionError(f"silence gives {floor:.1f} dB, not the floor {10 * np.log10(AMIN):.0f} dB")
    return f"stream = batch within {diff:.1e} dB over {batch.shape[1]} columns; 1 kHz tone in band {band}"


def _scoring(model: LoadedModel) -> str:
    card = model.card
    p = card.features
    window = logmel(synthetic_audio(card.window_samples, sample_rate=p.sample_rate, seed=1), params=p)
    if window.shape != (p.n_mels, card.window_frames):
        raise AssertionError(f"window shape {window.shape}, the card says {(p.n_mels, card.window_frames)}")
    a, label = model.score(window)
    b, _ = model.score(window)
    if not np.isfinite(a):
        raise AssertionError(f"score {a} is not finite")
    if abs(a - b) > 1e-6:
        raise AssertionError(f"the same window scored {a} then {b}")
    return f"synthetic window scored {a:.4f} ({label}); threshold {card.threshold:.4f}"


def run_self_test(model: LoadedModel) -> dict[str, Any]:
    """Run the checks; ``ok`` is true only if all pass. Never raises for a failed check."""
    checks: dict[str, dict[str, Any]] = {}

    def check(name: str, fn: Callable[[LoadedModel], str]) -> None:
        try:
            checks[name] = {"ok": True, "detail": fn(model)}
        except Exception as exc:  # noqa: BLE001 - every failure is a reported result
            checks[name] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}

    check("front_end", _front_end)
    check("scoring", _scoring)
    return {
        "ok": all(c["ok"] for c in checks.values()),
        "checks": checks,
        "model": model.summary(),
        "version": __version__,
        "python": platform.python_version(),
    }
