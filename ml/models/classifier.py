"""A small CNN on log-mel windows: three conv blocks, global pooling, softmax over the labels."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvClassifier"]


class ConvClassifier(nn.Module):
    """Log-mel window ``(B, n_mels, T)`` dB → probabilities ``(B, n_labels)``.

    The input is standardised per band (training mean and spread in buffers) and, with
    ``band_pool > 1``, adjacent mel bands are averaged first (fewer rows: cheaper convolutions).
    Three conv-BN-ReLU-maxpool blocks (as the reference systems used), global average and max
    pooling over the remaining time-frequency plane, dropout and a linear layer.
    ``forward`` returns probabilities (what ships); :meth:`logits` is for training.
    """

    def __init__(self, n_mels: int, n_labels: int, *, channels: tuple[int, ...] = (16, 32, 64),
                 band_pool: int = 2, dropout: float = 0.3) -> None:
        super().__init__()
        if n_mels % band_pool:
            raise ValueError(f"band_pool {band_pool} must divide n_mels {n_mels}")
        self.n_mels, self.band_pool = n_mels, band_pool
        blocks: list[nn.Module] = []
        c_in = 1
        for c in channels:
            blocks += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*blocks)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * c_in, n_labels)
        self.register_buffer("band_mean", torch.zeros(n_mels, 1))
        self.register_buffer("band_std", torch.ones(n_mels, 1))

    def fit_normalization(self, x: torch.Tensor) -> None:
        """Per-band mean and spread of the training windows."""
        self.band_mean.copy_(x.mean(dim=(0, 2)).unsqueeze(1))
        self.band_std.copy_(x.std(dim=(0, 2)).clamp_min(1e-3).unsqueeze(1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.band_mean) / self.band_std
        if self.band_pool > 1:
            b, m, t = x.shape
            x = x.reshape(b, m // self.band_pool, self.band_pool, t).mean(dim=2)
        h = self.features(x.unsqueeze(1))
        h = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.head(self.drop(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)
