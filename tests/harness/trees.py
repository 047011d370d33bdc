"""Tiny synthetic datasets for the training-toolkit tests (short clips, few machines, small front end)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from audioclassifier.features import LogMelParams
from ml import synth

#: A small front end: the tests train in seconds on 2 cores.
PARAMS = LogMelParams(sample_rate=16000, n_fft=512, hop_length=256, n_mels=32)
WINDOW = 1.0


def make_tree(root: Path, *, labels: dict[str, int], machines: tuple[int, ...], seconds: float = 2.0,
              snr_db: float = 6.0, seed: int = 3, severity: float = 1.0, clip_offset: int = 0) -> Path:
    """``root/<label>/id_NN/<k>.wav`` with ``labels[label]`` clips per machine."""
    for label, count in labels.items():
        for i in machines:
            m = synth.machine_params(i, seed=seed)
            d = root / label / f"id_{i:02d}"
            d.mkdir(parents=True, exist_ok=True)
            for k in range(clip_offset, clip_offset + count):
                rng = np.random.default_rng([seed, i, synth.FAULTS.index(label), k])
                x = synth.synth_clip(machine=m, fault=label, severity=0.0 if label == "normal" else severity,
                                     seconds=seconds, sample_rate=PARAMS.sample_rate, snr_db=snr_db, rng=rng)
                sf.write(d / f"{k:03d}.wav", x, PARAMS.sample_rate, subtype="PCM_16")
    return root
