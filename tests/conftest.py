"""Shared test fixtures: where the real recordings are, and small audio helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

# Loopback stand-ins for the Azure side (Mosquitto, hub responder, Azurite, file upload).
pytest_plugins = ["harness.fixtures"]
SHARED_DATA = Path(os.environ.get("AUSCULT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, the real recordings (present in CI); tests that need it skip without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_DATA} (set AUSCULT_SHARED_DATA)")
    return SHARED_DATA


def tone_and_noise(n: int, *, sr: int = 16000, seed: int = 0, noise_db: float = -40.0) -> np.ndarray:
    """A few tones over a noise floor: machine-like test audio with a realistic dynamic range."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    y = np.zeros(n)
    for f in rng.uniform(50, sr / 2 * 0.9, size=3):
        y += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.28))
    y += 10 ** (noise_db / 20) * rng.standard_normal(n)
    return y.astype(np.float32)
