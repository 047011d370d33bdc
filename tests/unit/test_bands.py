"""Alert explanations (bands.py): the bands that departed from the machine's normal, in Hz and dB.

The windows are real log-mel windows of generated sound (the module's own front end): white noise
as the machine's normal, and the same noise with a band-limited rattle (bursts of 2-4 kHz noise)
or with a band taken away as the faults.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.signal

from audioclassifier.bands import (
    BandAccumulator,
    BandProfile,
    NormalBands,
    _span,
    band_edges,
    explain,
    window_bands,
)
from audioclassifier.features import LogMelParams, logmel

SR = 16000
PARAMS = LogMelParams(sample_rate=SR, n_fft=1024, hop_length=512, n_mels=64)
WINDOW = 2 * SR


def _noise(rng: np.random.Generator) -> np.ndarray:
    return (0.05 * rng.standard_normal(WINDOW)).astype(np.float32)


def _band(y: np.ndarray, lo: float, hi: float) -> np.ndarray:
    sos = scipy.signal.butter(8, [lo, hi], btype="bandpass", fs=SR, output="sos")
    return scipy.signal.sosfilt(sos, y).astype(np.float32)


def _rattle(rng: np.random.Generator) -> np.ndarray:
    """Normal noise plus 30 ms bursts of 2-4 kHz noise every 250 ms, ~+9 dB over the band's normal."""
    burst = np.zeros(WINDOW, dtype=np.float32)
    for start in range(0, WINDOW, SR // 4):
        burst[start : start + int(0.03 * SR)] = 1.0
    extra = _band(rng.standard_normal(WINDOW).astype(np.float32), 2000, 4000) * burst * 0.9
    return _noise(rng) + extra


def _profile(rng: np.random.Generator, n: int = 60) -> BandProfile:
    acc = BandAccumulator(PARAMS.n_mels)
    for _ in range(n):
        acc.add(*window_bands(logmel(_noise(rng), params=PARAMS)))
    profile = acc.profile("calibration")
    assert profile is not None
    return profile


def test_a_rattle_is_explained_as_louder_and_impulsive_in_its_band() -> None:
    rng = np.random.default_rng(0)
    normal = _profile(rng)
    edges = band_edges(PARAMS)
    out = explain(*window_bands(logmel(_rattle(rng), params=PARAMS)), normal, edges)
    top = out["bands"][0]
    assert 1500 <= top["low_hz"] <= 2500 and 3500 <= top["high_hz"] <= 5000, top
    assert top["level_db"] >= 3 and top["variability_db"] >= 2 and top["kind"] == "impulsive"
    assert out["summary"].startswith(f"{top['level_db']:+.0f} dB at ") and "kHz, impulsive" in out["summary"]
    assert out["reference"] == {"source": "calibration", "windows": 60}
    json.dumps(out, allow_nan=False)  # it goes in a message as it is


def test_a_missing_band_is_quieter_and_normal_sound_departs_nowhere() -> None:
    rng = np.random.default_rng(1)
    normal = _profile(rng)
    edges = band_edges(PARAMS)
    sos = scipy.signal.butter(8, [300, 600], btype="bandstop", fs=SR, output="sos")
    notched = scipy.signal.sosfilt(sos, _noise(rng)).astype(np.float32)
    out = explain(*window_bands(logmel(notched, params=PARAMS)), normal, edges)
    top = out["bands"][0]
    assert top["kind"] == "quieter" and top["level_db"] <= -3
    assert 200 <= top["low_hz"] <= 400 and 450 <= top["high_hz"] <= 800, top
    assert out["summary"].startswith("-") and " Hz" in out["summary"]
    quiet = explain(*window_bands(logmel(_noise(rng), params=PARAMS)), normal, edges)
    assert quiet["bands"] == [] and "no frequency band departs" in quiet["summary"]


def test_band_edges_tile_the_mel_range() -> None:
    edges = band_edges(PARAMS)
    assert len(edges) == PARAMS.n_mels + 1 and edges[0] == 0.0 and edges[-1] == pytest.approx(SR / 2)
    assert np.all(np.diff(edges) > 0)


@pytest.mark.parametrize(("lo", "hi", "text"), [(200, 400, "200-400 Hz"), (2100, 4300, "2.1-4.3 kHz"),
                                               (800, 1200, "800 Hz-1.2 kHz"), (1000, 2000, "1-2 kHz"),
                                               (1060, 1130, "1.06-1.13 kHz")])
def test_ranges_read_as_a_technician_writes_them(lo: float, hi: float, text: str) -> None:
    assert _span(lo, hi) == text


def test_the_accumulator_is_welford_and_the_running_one_follows_a_change() -> None:
    rng = np.random.default_rng(2)
    xs = rng.normal(3.0, 2.0, size=(200, 2, 8))
    acc = BandAccumulator(8)
    for x in xs:
        acc.add(x[0], x[1])
    p = acc.profile("calibration")
    assert p is not None and p.windows == 200
    np.testing.assert_allclose(p.level_mean, xs[:, 0].mean(0), rtol=1e-12)
    np.testing.assert_allclose(p.var_sd, xs[:, 1].std(0), rtol=1e-9)
    running = BandAccumulator(8, memory=50)
    for x in xs:
        running.add(x[0], x[1])
    for _ in range(500):  # the machine now sounds 10 dB louder, for long
        running.add(np.full(8, 13.0), np.full(8, 1.0))
    r = running.profile("running")
    assert r is not None and np.all(np.abs(r.level_mean - 13.0) < 0.1)


def test_the_normal_is_the_learned_one_then_the_calibrated_one_then_the_running_one(tmp_path) -> None:
    rng = np.random.default_rng(3)
    bands = NormalBands(tmp_path / "bands")
    bands.bind(PARAMS, "pump-1")
    assert bands.explain(logmel(_rattle(rng), params=PARAMS)) is None  # nothing heard yet: no explanation
    for _ in range(30):
        bands.window(*window_bands(logmel(_noise(rng), params=PARAMS)), normal=True)
    assert bands.reference().source == "running"
    bands.start_calibration()
    for _ in range(20):
        bands.window(*window_bands(logmel(_noise(rng), params=PARAMS)), normal=False)  # calibrating: all count
    bands.end_calibration(True)
    assert bands.reference().source == "calibration" and bands.reference().windows == 20
    assert bands.explain(logmel(_rattle(rng), params=PARAMS))["bands"][0]["kind"] == "impulsive"
    learned = _profile(rng, 12)
    bands.set_learned(BandProfile.from_dict(learned.to_dict(), source="learned"))
    assert bands.reference().source == "learned"

    again = NormalBands(tmp_path / "bands")  # the next start: the calibration's profile is kept
    again.bind(PARAMS, "pump-1")
    assert again.reference() is not None and again.reference().source == "calibration"
    other = NormalBands(tmp_path / "bands")  # heard with another front end: not used
    other.bind(LogMelParams(sample_rate=SR, n_fft=1024, hop_length=512, n_mels=32), "pump-1")
    assert other.reference() is None
    failed = NormalBands(tmp_path / "bands")
    failed.bind(PARAMS, "pump-2")
    failed.start_calibration()
    failed.end_calibration(False)
    assert failed.reference() is None and not (tmp_path / "bands" / "pump-2.json").exists()


def test_a_bad_profile_is_refused() -> None:
    with pytest.raises(ValueError):
        BandProfile.from_dict({"format": 1, "windows": 3, "level_mean": [1, 2], "level_sd": [1],
                               "var_mean": [1, 2], "var_sd": [1, 2]})
    with pytest.raises(ValueError):
        BandProfile.from_dict({"format": 1, "windows": 3, "level_mean": [float("nan")], "level_sd": [1],
                               "var_mean": [1], "var_sd": [1]})
