"""Figures the toolkit writes: spectrogram images (more plots join as verbs need them)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on build machines or devices
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from audioclassifier.features import LogMelParams, mel_frequencies  # noqa: E402

__all__ = ["plot_logmel", "save_spectrogram_png"]


def plot_logmel(ax: plt.Axes, s_db: np.ndarray, *, params: LogMelParams, t0: float = 0.0) -> matplotlib.image.AxesImage:
    """Draw a ``(n_mels, T)`` dB log-mel on ``ax`` with seconds and Hz axes (mel-spaced rows)."""
    n_mels, n = s_db.shape
    hop_s = params.hop_length / params.sample_rate
    frame_s = params.n_fft / params.sample_rate
    extent = (t0, t0 + (n - 1) * hop_s + frame_s if n else t0 + frame_s, -0.5, n_mels - 0.5)
    im = ax.imshow(s_db, origin="lower", aspect="auto", extent=extent, cmap="magma", interpolation="nearest")
    centers = mel_frequencies(n_mels=n_mels + 2, fmin=float(params.fmin), fmax=params.fmax_hz)[1:-1]
    ticks = np.linspace(0, n_mels - 1, 6).round().astype(int)
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"{centers[i] / 1000:.1f}k" if centers[i] >= 1000 else f"{centers[i]:.0f}" for i in ticks])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz, mel scale)")
    return im


def save_spectrogram_png(
    s_db: np.ndarray, path: str | os.PathLike[str], *, params: LogMelParams, title: str = "", dpi: int = 80
) -> Path:
    """Write a log-mel spectrogram image with time and frequency axes and a dB colour bar."""
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=dpi)
    try:
        im = plot_logmel(ax, s_db, params=params)
        fig.colorbar(im, ax=ax, label="dB")
        if title:
            ax.set_title(title, fontsize=9)
        fig.tight_layout()
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(dest)
    finally:
        plt.close(fig)
    return dest
