"""Training augmentation on batches of dB log-mel windows ``(B, n_mels, T)``.

Working on log-mels (not waveforms) keeps an epoch cheap on a 2-core machine, and each
operation has an exact or expected-value counterpart in audio:

* gain: a level change of ``g`` dB adds ``g`` to every cell;
* noise and background mixing: mel powers of independent signals add in expectation, so a mix at
  ``r`` dB is ``10 log10(10^(x/10) + 10^((b - r)/10))`` with ``b`` the other signal's log-mel
  (stationary coloured noise, or another training window as background);
* time shift: a circular roll along time (machine sound is stationary, so a shifted window is
  another plausible window);
* SpecAugment: a band of mel rows and a span of frames set to the window's mean level.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Augment"]


def _db_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dB of the summed powers of two dB arrays (numerically stable)."""
    m = torch.maximum(a, b)
    return m + 10.0 * torch.log10(torch.pow(10.0, (a - m) / 10.0) + torch.pow(10.0, (b - m) / 10.0))


@dataclass
class Augment:
    """Random augmentation of a batch; each operation applies to a sample with probability ``p``."""

    p: float = 0.5
    gain_db: float = 6.0
    noise_snr_db: tuple[float, float] = (0.0, 20.0)
    mix_snr_db: tuple[float, float] = (5.0, 20.0)
    max_shift: float = 0.5  # fraction of the window
    freq_mask: int = 8
    time_mask: int = 8

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, m, t = x.shape
        x = x.clone()

        def pick() -> torch.Tensor:
            return (torch.rand(b, generator=gen) < self.p).float().view(b, 1, 1)

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return (lo + (hi - lo) * torch.rand(b, generator=gen)).view(b, 1, 1)

        # time shift (circular)
        if self.max_shift > 0:
            shifts = (torch.rand(b, generator=gen) * self.max_shift * t).long()
            on = torch.rand(b, generator=gen) < self.p
            for i in torch.nonzero(on).flatten().tolist():
                x[i] = torch.roll(x[i], shifts=int(shifts[i]), dims=1)
        # gain
        x = x + pick() * uniform(-self.gain_db, self.gain_db)
        level = 10.0 * torch.log10(torch.pow(10.0, x / 10.0).mean(dim=(1, 2), keepdim=True) + 1e-10)
        # coloured noise: a random spectral tilt, stationary, at a random SNR below the window's level
        tilt = uniform(-1.0, 1.0) * torch.linspace(-6.0, 6.0, m).view(1, m, 1)
        noise = level - uniform(*self.noise_snr_db) + tilt + 2.0 * torch.randn(b, m, t, generator=gen)
        on = pick()
        x = on * _db_add(x, noise) + (1 - on) * x
        # background: another window of the batch, attenuated
        other = x[torch.randperm(b, generator=gen)]
        on = pick()
        x = on * _db_add(x, other - uniform(*self.mix_snr_db)) + (1 - on) * x
        # SpecAugment masks
        fill = x.mean(dim=(1, 2), keepdim=True)
        if self.freq_mask > 0:
            w = torch.randint(0, self.freq_mask + 1, (b,), generator=gen)
            f0 = (torch.rand(b, generator=gen) * (m - w).clamp_min(1)).long()
            rows = torch.arange(m).view(1, m)
            mask = ((rows >= f0.view(b, 1)) & (rows < (f0 + w).view(b, 1))).view(b, m, 1) & (pick() > 0)
            x = torch.where(mask, fill.expand_as(x), x)
        if self.time_mask > 0:
            w = torch.randint(0, self.time_mask + 1, (b,), generator=gen)
            t0 = (torch.rand(b, generator=gen) * (t - w).clamp_min(1)).long()
            cols = torch.arange(t).view(1, t)
            mask = ((cols >= t0.view(b, 1)) & (cols < (t0 + w).view(b, 1))).view(b, 1, t) & (pick() > 0)
            x = torch.where(mask, fill.expand_as(x), x)
        return x
