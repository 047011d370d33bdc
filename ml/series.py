"""Sensor time series (CSV, NPY) as first-class input next to WAV/FLAC.

A series file holds ``(frames, axes)`` numbers (a CSV: one row per sample, one column per axis,
no header or a header of names; an NPY: a 1-D or 2-D array). Its sample rate is not in the file:
it comes from a sidecar JSON ``{"sample_rate": N}`` (``<file>.json``, or ``sensor.json`` in the
file's folder or a folder above it), else from the front end's ``--sample-rate``. The axes are
reduced to one signal like audio channels: the mean of all axes, or one axis (``--channel``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from audioclassifier.audio_io import AudioFileError, resample, to_mono

__all__ = ["SERIES_SUFFIXES", "is_series", "load_series", "read_series", "series_rate"]

SERIES_SUFFIXES = (".csv", ".npy")
SIDECAR = "sensor.json"
_MAX_ABS = 1e6


def is_series(path: str | os.PathLike[str]) -> bool:
    """A CSV or NPY file."""
    return Path(path).suffix.lower() in SERIES_SUFFIXES


def _sidecar_rate(p: Path) -> float | None:
    where = p.with_suffix(p.suffix + ".json") if p.with_suffix(p.suffix + ".json").is_file() else None
    if where is None:
        for d in list(p.parents)[:6]:
            if (d / SIDECAR).is_file():
                where = d / SIDECAR
                break
    if where is None:
        return None
    try:
        rate = json.loads(where.read_text()).get("sample_rate")
    except (OSError, ValueError, AttributeError) as exc:
        raise AudioFileError(p, f"sidecar {where}: not a JSON object with sample_rate ({exc})") from exc
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < 1e7:
        raise AudioFileError(p, f"sidecar {where}: sample_rate must be a positive number, got {rate!r}")
    return float(rate)


def series_rate(path: str | os.PathLike[str], default: float) -> float:
    """The series' sample rate: its sidecar's, else ``default``."""
    r = _sidecar_rate(Path(path))
    return default if r is None else r


def read_series(path: str | os.PathLike[str]) -> np.ndarray:
    """The raw ``(frames, axes)`` float32 array of a CSV or NPY file; :class:`AudioFileError` if unusable."""
    p = Path(path)
    if not p.is_file():
        raise AudioFileError(p, "file not found")
    try:
        if p.suffix.lower() == ".npy":
            x = np.load(p, allow_pickle=False)
        else:
            try:
                x = np.loadtxt(p, delimiter=",", dtype=np.float64, ndmin=2)
            except ValueError:  # a header row of axis names
                x = np.loadtxt(p, delimiter=",", dtype=np.float64, ndmin=2, skiprows=1)
    except (OSError, ValueError) as exc:
        raise AudioFileError(p, f"not a readable numeric series ({str(exc).splitlines()[0][:200]})") from exc
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0 or not np.issubdtype(x.dtype, np.number):
        raise AudioFileError(p, f"expected a (samples, axes) numeric array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise AudioFileError(p, "contains NaN or infinite values")
    if float(np.abs(x).max()) > _MAX_ABS:
        raise AudioFileError(p, f"values beyond {_MAX_ABS:g}: not a sensor series in physical units")
    return x.astype(np.float32)


def load_series(path: str | os.PathLike[str], *, sample_rate: int, channel: int | None = None) -> np.ndarray:
    """One signal at ``sample_rate`` from a series file: axes mixed (mean) or one picked, resampled
    from the sidecar's rate when it differs."""
    x = read_series(path)
    try:
        y = to_mono(x if x.shape[1] > 1 else x[:, 0], channel=channel)
    except ValueError as exc:
        raise AudioFileError(path, str(exc)) from exc
    rate = series_rate(path, sample_rate)
    if rate != sample_rate:
        if not float(rate).is_integer():
            raise AudioFileError(path, f"sidecar sample_rate {rate:g} is not a whole number of Hz")
        y = resample(np.ascontiguousarray(y, dtype=np.float32), orig_sr=int(rate), target_sr=sample_rate)
    return np.ascontiguousarray(y, dtype=np.float32)
