"""The fault classifier: window-relative statistics and a small CNN on the level-normalised log-mel.

Both branches describe a window relative to itself, not in absolute dB, because what generalises
to a machine the model never heard is the shape of its spectrum and texture, not its loudness or
its microphone gain.
"""

from __future__ import annotations

import torch
from torch import nn

from ml.models.anomaly import LogMelStats

__all__ = ["ConvClassifier"]


class ConvClassifier(nn.Module):
    """Log-mel window ``(B, n_mels, T)`` dB → probabilities ``(B, n_labels)``.

    Two branches, concatenated before the output layer:

    * statistics: :class:`~ml.models.anomaly.LogMelStats` (the anomaly model's one implementation;
      by default the spectrum's shape in pooled bands, the level and the low-band shares),
      standardised with training statistics, then a two-layer MLP;
    * image: adjacent mel bands averaged in groups of ``band_pool``, the window standardised by its
      own mean and spread over time and frequency (an instance norm), then conv-BN-ReLU-maxpool
      blocks and global average and max pooling.

    ``stats_parts=()`` leaves the statistics branch out. ``forward`` returns probabilities (what
    ships); :meth:`logits` is for training. All of it is inside the exported graph.
    """

    def __init__(self, n_mels: int, n_labels: int, *, channels: tuple[int, ...] = (8, 16, 32),
                 band_pool: int = 4, dropout: float = 0.2,
                 stats_parts: tuple[str, ...] = ("relmean", "level", "low"), stats_pool: int = 8,
                 hidden: int = 64) -> None:
        super().__init__()
        if n_mels % band_pool:
            raise ValueError(f"band_pool {band_pool} must divide n_mels {n_mels}")
        if not channels and not stats_parts:
            raise ValueError("the classifier needs conv channels, statistics, or both")
        self.n_mels, self.band_pool = n_mels, band_pool
        width = 0
        self.stats: LogMelStats | None = None
        self.mlp: nn.Module | None = None
        if stats_parts:
            pool = max(1, min(stats_pool, n_mels))
            while n_mels % pool:  # the largest pooling up to stats_pool that divides n_mels
                pool -= 1
            self.stats = LogMelStats(n_mels, band_pool=pool, parts=tuple(stats_parts))
            self.mlp = nn.Sequential(nn.Linear(self.stats.dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, hidden), nn.ReLU())
            width += hidden
        self.features: nn.Module | None = None
        if channels:
            blocks: list[nn.Module] = []
            c_in = 1
            for c in channels:
                blocks += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                           nn.MaxPool2d(2, ceil_mode=True)]  # ceil: a short window never pools to nothing
                c_in = c
            self.features = nn.Sequential(*blocks)
            width += 2 * c_in
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width, n_labels)

    def fit_normalization(self, x: torch.Tensor) -> None:
        """Standardisation of the statistics from the training windows (the image branch needs none)."""
        if self.stats is not None:
            with torch.no_grad():
                self.stats.fit(x)

    def image(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled bands, standardised by the window's own mean and spread: ``(B, 1, n_mels/band_pool, T)``."""
        if self.band_pool > 1:
            b, m, t = x.shape
            x = x.reshape(b, m // self.band_pool, self.band_pool, t).mean(dim=2)
        z = x - x.mean(dim=(1, 2), keepdim=True)
        z = z / torch.sqrt((z * z).mean(dim=(1, 2), keepdim=True) + 1e-6)
        return z.unsqueeze(1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.stats is not None and self.mlp is not None:
            parts.append(self.mlp(self.stats(x)))
        if self.features is not None:
            h = self.features(self.image(x))
            parts.append(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))
        return self.head(self.drop(torch.cat(parts, dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)
