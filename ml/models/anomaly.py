"""Anomaly scorers as torch modules: fitted statistics live in buffers, so they export like networks.

Every scorer maps a ``(batch, n_mels, frames)`` dB log-mel window to ``(batch,)`` scores, higher
meaning more anomalous:

* :class:`MahalanobisScorer`: squared Mahalanobis distance of the window's log-mel statistics
  (:class:`LogMelStats`) from the normal training windows (shrunk covariance);
* :class:`GMMScorer`: negative log-likelihood under a Gaussian mixture fitted to the same statistics
  (normal sound of several machines or operating modes is multi-modal);
* :class:`KNNScorer`: mean squared distance (per dimension) to the ``k`` nearest normal training
  windows' statistics (a memory bank, as DCASE 2023-2024 first-shot systems use on embeddings);
* :class:`DenseAutoencoder`: the DCASE 2020 Task 2 baseline, a dense autoencoder on 5-frame log-mel
  context; the score is the mean reconstruction error.

The statistics-based scorers also have ``embed(x)``: the standardised statistics ``(batch, D)``
they score. :class:`ScoreAndEmbedding` exports both (outputs ``score`` and ``embedding``), so that
the edge module can fit a machine's own normal model on them (``audioclassifier.learning``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["DenseAutoencoder", "GMMScorer", "KNNScorer", "LogMelStats", "MahalanobisScorer", "ScoreAndEmbedding",
           "hires_bands", "low_band_counts", "lowres_bands"]


def _buf(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


_DB = math.log(10.0) / 10.0  # dB -> natural log of power


def _power_mean_db(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """dB of the mean power over ``dims`` (stable: the max is taken out before the exponential)."""
    top = x.amax(dim=dims, keepdim=True)
    out = top + torch.log(torch.exp((x - top) * _DB).mean(dim=dims, keepdim=True)) / _DB
    for d in sorted(dims, reverse=True):
        out = out.squeeze(d)
    return out


def hires_bands(n_mels: int) -> tuple[int, int]:
    """``(first band, pool)`` of the ``hires`` statistics: the top 3/8 of the mel bands (of 128 at
    16 kHz: above about 2.6 kHz), averaged in pairs (of 128; single bands under 64). Bearing
    resonances (2-6 kHz), leak and clogging hiss lie there, and the broadband background of a
    factory (pink, brown, distant machines) is weakest there: at -6 dB SNR the machine's own detail
    shows in these bands when the 8-band pooled shape averages it away."""
    pool = max(1, n_mels // 64)
    start = n_mels - ((n_mels * 3 // 8) // pool) * pool
    return start, pool


def lowres_bands(n_mels: int) -> int:
    """Mel bands of the ``lowres`` statistics, each kept on its own: the lowest 1/8 (16 of 128: below
    about 400 Hz at 16 kHz, where mel bands are 23 Hz apart). Shaft rates (15-50 Hz) and their
    first harmonics, blade-pass fundamentals and mains hum lie there as separate tones, which the
    8-band pool (about 190 Hz wide) and the cumulative ``low`` shares average together."""
    return max(1, n_mels // 8)


def low_band_counts(n_mels: int) -> tuple[int, ...]:
    """Mel bands summed by the ``low`` statistics: the lowest 2, 4 and 8 of 128 (at 16 kHz about
    50, 100 and 190 Hz: where shaft-rate tones of 15-50 Hz machines and their first harmonics lie)."""
    return tuple(sorted({max(1, n_mels * k // 128) for k in (2, 4, 8)}))


class LogMelStats(nn.Module):
    """Window statistics of a log-mel, standardised with the training set's mean and spread (buffers).

    Parts (after pooling ``band_pool`` adjacent mel bands where a part is per band):

    * ``mean``: per-band mean over time (absolute dB: spectrum shape and level);
    * ``relmean``: the same minus the window's level: the spectrum's shape only, so a louder or
      quieter machine (or microphone gain) does not look different;
    * ``level``: the window's level (dB of its mean power), one value;
    * ``low``: the share of the window's power in the lowest mel bands (:func:`low_band_counts`), dB:
      an unbalanced rotor's 1x shaft tone and harmonics raise it whatever the machine;
    * ``std``: per-band standard deviation over time; ``delta``: mean absolute frame-to-frame change
      (how steady each band is: impacts, modulation, intermittent noise);
    * ``iqr``: per-band interquartile range over time (75th minus 25th percentile of the frames, dB):
      the spread of ``std`` without its sensitivity to a rare loud event (a distant clank), and, like
      ``relmean``, unchanged by a microphone's gain;
    * ``hires``: ``relmean`` of the upper bands (:func:`hires_bands`) at a finer pooling than
      ``band_pool``: the narrow resonances and hiss of faults above about 2.6 kHz (gain-invariant);
    * ``lowres``: the time-mean of each of the lowest mel bands (:func:`lowres_bands`), unpooled,
      minus the window's level: the shaft-rate tones and harmonics of an imbalance, each in its own
      band (gain-invariant).
    """

    PARTS = ("mean", "relmean", "level", "low", "std", "delta", "iqr", "hires", "lowres")

    def __init__(self, n_mels: int, *, band_pool: int = 1, parts: tuple[str, ...] = ("mean", "std", "delta")) -> None:
        super().__init__()
        if n_mels % band_pool:
            raise ValueError(f"band_pool {band_pool} must divide n_mels {n_mels}")
        unknown = set(parts) - set(self.PARTS)
        if unknown or not parts:
            raise ValueError(f"parts must be among {', '.join(self.PARTS)}; got {parts}")
        self.n_mels = n_mels
        self.band_pool = band_pool
        self.parts = tuple(parts)
        self.low_bands = low_band_counts(n_mels)
        self.hires_start, self.hires_pool = hires_bands(n_mels)
        self.lowres = lowres_bands(n_mels)
        bands = n_mels // band_pool
        sizes = {"mean": bands, "relmean": bands, "std": bands, "delta": bands, "iqr": bands, "level": 1,
                 "low": len(self.low_bands), "hires": (n_mels - self.hires_start) // self.hires_pool,
                 "lowres": self.lowres}
        self.dim = sum(sizes[p] for p in self.parts)
        self.register_buffer("center", torch.zeros(self.dim))
        self.register_buffer("scale", torch.ones(self.dim))

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Unstandardised statistics ``(batch, dim)`` of ``(batch, n_mels, frames)`` windows."""
        level = _power_mean_db(x, (1, 2)).unsqueeze(1)  # (B, 1)
        band_mean = x.mean(dim=2)  # (B, n_mels), before pooling
        xp = x
        if self.band_pool > 1:
            b, m, t = x.shape
            xp = x.reshape(b, m // self.band_pool, self.band_pool, t).mean(dim=2)
        mean = xp.mean(dim=2)
        out = []
        for part in self.parts:
            if part == "mean":
                out.append(mean)
            elif part == "relmean":
                out.append(mean - level)
            elif part == "level":
                out.append(level)
            elif part == "hires":
                hi = band_mean[:, self.hires_start :]
                out.append(hi.reshape(hi.shape[0], -1, self.hires_pool).mean(dim=2) - level)
            elif part == "lowres":
                out.append(band_mean[:, : self.lowres] - level)
            elif part == "low":
                top = band_mean.amax(dim=1, keepdim=True)
                lin = torch.exp((band_mean - top) * _DB)
                total = lin.sum(dim=1)
                out.append(torch.stack([torch.log(lin[:, :h].sum(dim=1) / total) / _DB for h in self.low_bands], dim=1))
            elif part == "std":
                out.append(torch.sqrt(((xp - mean.unsqueeze(2)) ** 2).mean(dim=2) + 1e-6))
            elif part == "iqr":
                t = xp.shape[2]
                srt = torch.sort(xp, dim=2).values  # nearest-rank quartiles (ONNX TopK)
                out.append(srt[:, :, (3 * (t - 1)) // 4] - srt[:, :, (t - 1) // 4])
            else:
                out.append((xp[:, :, 1:] - xp[:, :, :-1]).abs().mean(dim=2))
        return torch.cat(out, dim=1)

    def fit(self, x: torch.Tensor) -> LogMelStats:
        """Set the standardisation from training windows; returns self."""
        f = self.raw(x)
        self.center.copy_(f.mean(dim=0))
        self.scale.copy_(f.std(dim=0).clamp_min(1e-3))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.raw(x) - self.center) / self.scale


class MahalanobisScorer(nn.Module):
    """Mean squared Mahalanobis distance (per feature dimension) of :class:`LogMelStats` features."""

    def __init__(self, stats: LogMelStats, loc: np.ndarray, precision: np.ndarray) -> None:
        super().__init__()
        self.stats = stats
        chol = np.linalg.cholesky(0.5 * (precision + precision.T))  # precision = L L^T
        self.register_buffer("loc", _buf(loc))
        self.register_buffer("prec_chol", _buf(chol))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The standardised window statistics ``(batch, D)`` the score works on."""
        return self.stats(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.stats(x) - self.loc) @ self.prec_chol
        return (z * z).mean(dim=1)


class KNNScorer(nn.Module):
    """Mean squared Euclidean distance (per dimension) to the ``k`` nearest reference statistics.

    ``refs (M, D)`` are standardised statistics of normal training windows (a coreset when there
    are many). Non-parametric: normal sound of many machines, speeds or loads is a union of
    clusters, and a window only has to be near one of them.
    """

    def __init__(self, stats: LogMelStats, refs: np.ndarray, *, k: int = 1) -> None:
        super().__init__()
        if not 1 <= k <= len(refs):
            raise ValueError(f"k must be in [1, {len(refs)}], got {k}")
        self.stats = stats
        self.k = int(k)
        self.register_buffer("refs", _buf(refs))
        self.register_buffer("refs_sq", _buf((np.asarray(refs, dtype=np.float64) ** 2).sum(axis=1)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The standardised window statistics ``(batch, D)`` the score works on."""
        return self.stats(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.stats(x)  # (B, D)
        d = (f * f).sum(dim=1, keepdim=True) - 2.0 * f @ self.refs.T + self.refs_sq.unsqueeze(0)
        d = torch.clamp(d, min=0.0)
        if self.k == 1:
            near = d.min(dim=1).values
        else:
            near = torch.topk(d, self.k, dim=1, largest=False).values.mean(dim=1)
        return near / float(self.stats.dim)


class ScoreAndEmbedding(nn.Module):
    """``(score, embedding)`` of a statistics-based scorer: the two outputs of a learning-ready model."""

    def __init__(self, scorer: nn.Module, embedding: LogMelStats | None = None) -> None:
        super().__init__()
        if embedding is None and not hasattr(scorer, "embed"):
            raise TypeError(f"{type(scorer).__name__} has no embedding (only statistics-based scorers do)")
        self.scorer = scorer
        self.embedding = embedding

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embedding(x) if self.embedding is not None else self.scorer.embed(x)
        return self.scorer(x), e


class GMMScorer(nn.Module):
    """Negative log-likelihood (per feature dimension) under a full-covariance Gaussian mixture.

    ``means (K, D)``, ``prec_chol (K, D, D)`` (precision_k = L_k L_k^T, sklearn's
    ``precisions_cholesky_``) and ``weights (K,)`` come from :class:`sklearn.mixture.GaussianMixture`.
    """

    def __init__(self, stats: LogMelStats, means: np.ndarray, prec_chol: np.ndarray, weights: np.ndarray) -> None:
        super().__init__()
        self.stats = stats
        k, d = means.shape
        log_det = np.log(np.abs(np.diagonal(prec_chol, axis1=1, axis2=2))).sum(axis=1)
        const = np.log(weights) + log_det - 0.5 * d * math.log(2 * math.pi)
        self.register_buffer("means", _buf(means))
        self.register_buffer("prec_chol", _buf(prec_chol))
        self.register_buffer("const", _buf(const))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The standardised window statistics ``(batch, D)`` the score works on."""
        return self.stats(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.stats(x)  # (B, D)
        diff = f.unsqueeze(0) - self.means.unsqueeze(1)  # (K, B, D)
        z = torch.matmul(diff, self.prec_chol)  # (K, B, D): batched over components
        log_p = self.const.unsqueeze(1) - 0.5 * (z * z).sum(dim=2)  # (K, B)
        # log-sum-exp over components, written out (OpenVINO drops the batch axis of
        # ReduceLogSumExp for a batch of one)
        top = log_p.max(dim=0, keepdim=True).values  # (1, B)
        lse = top[0] + torch.log(torch.exp(log_p - top).sum(dim=0))
        return -lse / float(self.stats.dim)


class DenseAutoencoder(nn.Module):
    """The DCASE 2020 Task 2 baseline autoencoder on ``context`` stacked frames.

    Input bands are standardised with per-band training mean and spread (buffers); each position
    stacks ``context`` consecutive frames (``context * n_mels`` values), the dense
    encoder-decoder reconstructs it, and the score is the mean squared error over all positions.
    """

    def __init__(self, n_mels: int, frames: int, *, context: int = 5, hidden: int = 128, bottleneck: int = 8,
                 layers: int = 4) -> None:
        super().__init__()
        if frames < context:
            raise ValueError(f"a window of {frames} frames is shorter than the context of {context}")
        self.n_mels, self.frames, self.context = n_mels, frames, context
        d = n_mels * context

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Linear(i, o), nn.BatchNorm1d(o), nn.ReLU()]

        enc: list[nn.Module] = block(d, hidden)
        for _ in range(layers - 1):
            enc += block(hidden, hidden)
        enc += block(hidden, bottleneck)
        dec: list[nn.Module] = block(bottleneck, hidden)
        for _ in range(layers - 1):
            dec += block(hidden, hidden)
        dec.append(nn.Linear(hidden, d))
        self.net = nn.Sequential(*enc, *dec)
        self.register_buffer("band_mean", torch.zeros(n_mels, 1))
        self.register_buffer("band_std", torch.ones(n_mels, 1))

    def fit_normalization(self, x: torch.Tensor) -> None:
        """Per-band mean and spread of the training windows."""
        self.band_mean.copy_(x.mean(dim=(0, 2)).unsqueeze(1))
        self.band_std.copy_(x.std(dim=(0, 2)).clamp_min(1e-3).unsqueeze(1))

    def stack(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, n_mels, T)`` → ``(B, T - context + 1, context * n_mels)`` normalised context vectors."""
        x = (x - self.band_mean) / self.band_std
        n = self.frames - self.context + 1
        return torch.cat([x[:, :, i : i + n] for i in range(self.context)], dim=1).transpose(1, 2)

    def errors(self, x: torch.Tensor) -> torch.Tensor:
        """Squared reconstruction errors ``(B, positions, context * n_mels)``."""
        v = self.stack(x)
        b, n, d = v.shape
        r = self.net(v.reshape(b * n, d)).reshape(b, n, d)
        return (r - v) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.errors(x).mean(dim=(1, 2))
