"""Sensor time series (CSV/NPY, any rate) are first-class input: read, windowed, trained on,
predicted, with the rate from a sidecar or --sample-rate and the axis handling in the card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from audioclassifier.audio_io import AudioFileError
from audioclassifier.card import read_card
from audioclassifier.features import LogMelParams
from ml.__main__ import main
from ml.dataset import scan_tree
from ml.series import load_series, read_series
from ml.windows import load_windows

torch.set_num_threads(1)

SENSOR = LogMelParams(sample_rate=200, n_fft=64, hop_length=8, n_mels=16)
FRONT = ["--sensor", "--sample-rate", "200", "--n-fft", "64", "--hop-length", "8", "--n-mels", "16",
         "--window-seconds", "1"]


def _series(path: Path, n: int, *, seed: int, tone_hz: float, rate: int = 200) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    x = np.stack([np.sin(2 * np.pi * tone_hz * t + k) + 0.3 * rng.standard_normal(n) for k in range(3)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, x)
    else:
        np.savetxt(path, x + np.array([0.0, 0.0, 1.0]), delimiter=",", fmt="%.5f")  # z carries gravity
    return path


def test_csv_and_npy_read_with_sidecar_rate_and_axes(tmp_path: Path) -> None:
    f = _series(tmp_path / "a.csv", 400, seed=0, tone_hz=10.0, rate=400)
    (tmp_path / "sensor.json").write_text(json.dumps({"sample_rate": 400}))
    assert read_series(f).shape == (400, 3)
    y = load_series(f, sample_rate=200)  # resampled from the sidecar's 400 Hz
    assert y.shape == (200,)
    assert load_series(f, sample_rate=200, channel=2).mean() == pytest.approx(1.0, abs=0.1)
    n = _series(tmp_path / "b.npy", 200, seed=1, tone_hz=10.0)
    (tmp_path / "sensor.json").unlink()
    assert load_series(n, sample_rate=200).shape == (200,)
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\nx,nan,2\n")
    with pytest.raises(AudioFileError):
        read_series(bad)


def test_train_and_predict_on_csv_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for m in range(3):
        for k in range(4):
            _series(tmp_path / "d" / "normal" / f"m{m}" / f"{k}.csv", 400, seed=10 * m + k, tone_hz=10.0)
            _series(tmp_path / "d" / "weighted" / f"m{m}" / f"{k}.csv", 400, seed=100 + 10 * m + k, tone_hz=40.0)
    out = tmp_path / "s.onnx"
    assert main(["train", "--data", str(tmp_path / "d"), "--kind", "anomaly", "--method", "mahalanobis",
                 "--no-embedding", "--out", str(out), *FRONT]) == 0
    card = read_card(out)
    assert card.features.sample_rate == 200 and card.extra["channels"] == {"mix": "mean", "trained_channels": 3,
                                                                          "input": "sensor"}
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--input", str(tmp_path / "d" / "weighted" / "m0")]) == 0
    recs = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert len(recs) == 4 and all(r["label"] == "anomaly" for r in recs)


def test_ceiling_fan_csvs_are_read(shared_data: Path) -> None:
    root = shared_data / "ceiling-fan-vibration"
    assert not scan_tree(root)  # without --sensor, CSVs are not audio
    items = [it for it in scan_tree(root, sensor=True) if it.label == "fan_0_low_0_weight"][:5]
    ws = load_windows(items, params=SENSOR, window_seconds=1.0, sensor=True, progress=False)
    assert len(ws.items) == 5 and not ws.failed and ws.channels[str(items[0].path)] == 3
