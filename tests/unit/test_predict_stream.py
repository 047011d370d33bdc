"""``predict`` streams files in bounded memory, gates silence like the module, refuses what it
cannot score honestly (short clips, upsampled sources) and says why; ``evaluate`` checks labels
against the card and reports per-class figures and the ``unknown`` column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from audioclassifier.card import ModelCard
from audioclassifier.features import LogMelParams, logmel
from ml.__main__ import main
from ml.export import export_onnx
from ml.stream import StreamWindows
from ml.windows import file_windows

torch.set_num_threads(1)

PARAMS = LogMelParams(n_fft=512, hop_length=256, n_mels=16)


class Level(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2))


class TwoWay(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.mean(dim=(1, 2)) / 20.0
        return torch.softmax(torch.stack([-z, z], dim=1), dim=1)


def _model(tmp_path: Path, kind: str = "anomaly", extra: dict | None = None) -> Path:
    labels = ("normal", "anomaly") if kind == "anomaly" else ("normal", "bearing")
    card = ModelCard(kind=kind, labels=labels, features=PARAMS, window_seconds=1.0, threshold=-40.0,
                     threshold_method="test", version="t-1", extra=extra or {})
    return export_onnx(Level() if kind == "anomaly" else TwoWay(), card, tmp_path / f"{kind}.onnx")


def _wav(path: Path, y: np.ndarray, sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y.astype(np.float32), sr, subtype="FLOAT")
    return path


def _predict(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict]]:
    rc = main(["predict", *args])
    return rc, [json.loads(s) for s in capsys.readouterr().out.splitlines() if s.strip()]


def test_stream_windows_equal_the_batch_windows() -> None:
    y = np.random.default_rng(0).standard_normal(16000 * 5 + 123).astype(np.float32) * 0.1
    frames = PARAMS.frames_for(16000)
    batch = file_windows(logmel(y, params=PARAMS), frames, PARAMS.hop_frames(0.5))
    sw = StreamWindows(PARAMS, window_frames=frames, window_samples=16000, hop_frames=PARAMS.hop_frames(0.5))
    got = []
    for i in range(0, len(y), 7777):
        got += sw.push(y[i : i + 7777])
    got += sw.finish()
    assert len(got) == len(batch)
    np.testing.assert_allclose(np.stack([w.logmel for w in got]), batch, atol=1e-3)
    assert sw._cols.shape[1] <= frames + sw.hop_frames  # bounded: about one window kept


def test_digital_silence_is_silent_not_anomalous(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _wav(tmp_path / "zeros.wav", np.zeros(16000 * 3))
    rc, [r] = _predict(capsys, "--model", str(_model(tmp_path)), "--input", str(f), "--per-window")
    assert rc == 0
    assert r["label"] == "silent" and r["score"] is None and r["scored"] == 0 and r["silent"] == r["windows"] > 0
    assert set(r["window_scores"]) == {None}


def test_short_clips_are_refused_unless_looped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model(tmp_path)
    rng = np.random.default_rng(1)
    one = _wav(tmp_path / "clips" / "one.wav", np.array([0.1]))
    half = _wav(tmp_path / "clips" / "half.wav", 0.1 * rng.standard_normal(8000))
    rc, recs = _predict(capsys, "--model", str(model), "--input", str(tmp_path / "clips"))
    assert rc == 3
    assert all("shorter than one model window" in r["error"] for r in recs) and len(recs) == 2
    rc, recs = _predict(capsys, "--model", str(model), "--input", str(half), "--loop-short")
    assert rc == 0 and recs[0]["looped"] and recs[0]["windows"] == 1 and recs[0]["seconds"] == 0.5
    assert one.exists()


def test_empty_folder_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--model", str(_model(tmp_path)), "--input", str(tmp_path / "empty")]) == 2
    assert "no .wav/.flac files found" in capsys.readouterr().err


def test_8khz_into_a_16khz_model_is_refused_unless_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _model(tmp_path)
    f = _wav(tmp_path / "tel.wav", 0.1 * np.random.default_rng(2).standard_normal(8000 * 3), sr=8000)
    rc, [r] = _predict(capsys, "--model", str(model), "--input", str(f))
    assert rc == 3 and "below the model's 16000 Hz" in r["error"]
    rc, [r] = _predict(capsys, "--model", str(model), "--input", str(f), "--allow-upsampling")
    assert rc == 0 and "below the model's 16000 Hz" in r["warnings"][0] and r["scored"] > 0


def test_card_channel_handling_is_applied_and_mismatch_warned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    st = np.stack([np.zeros(16000 * 2), 0.2 * rng.standard_normal(16000 * 2)], axis=1)
    f = _wav(tmp_path / "st.wav", st)
    picked = _model(tmp_path, extra={"channels": {"mix": "channel", "channel": 0, "trained_channels": 2}})
    rc, [r] = _predict(capsys, "--model", str(picked), "--input", str(f))
    assert r["label"] == "silent"  # channel 0 (the card's) is digital silence; the mix would not be
    mixed = _model(tmp_path, extra={"channels": {"mix": "mean", "trained_channels": 8}})
    rc, [r] = _predict(capsys, "--model", str(mixed), "--input", str(f))
    assert r["scored"] > 0 and "trained on a mix of 8 channel(s)" in r["warnings"][0]


def test_old_cards_without_channels_still_load(tmp_path: Path) -> None:
    from audioclassifier.card import CardError, read_card

    assert read_card(_model(tmp_path)).channel is None
    with pytest.raises(CardError, match="channels"):
        ModelCard.from_dict({**read_card(_model(tmp_path)).to_dict(), "channels": {"mix": "sum"}})


def test_evaluate_refuses_labels_the_card_does_not_know(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(4)
    for lab in ("Healthy", "Bearing"):
        _wav(tmp_path / "d" / lab / "m" / "a.wav", 0.1 * rng.standard_normal(32000))
    model = _model(tmp_path, kind="classifier")
    assert main(["evaluate", "--model", str(model), "--data", str(tmp_path / "d"), "--no-plots"]) == 2
    assert "none of the data's labels" in capsys.readouterr().out


def test_evaluate_per_class_and_unknown_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(5)
    _wav(tmp_path / "d" / "normal" / "m" / "q.wav", 0.001 * rng.standard_normal(32000))
    _wav(tmp_path / "d" / "bearing" / "m" / "l.wav", 0.5 * rng.standard_normal(32000))
    _wav(tmp_path / "d" / "clogging" / "m" / "c.wav", 0.5 * rng.standard_normal(32000))
    model = _model(tmp_path, kind="classifier", extra={"confidence_threshold": 0.99})
    assert main(["evaluate", "--model", str(model), "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    f = m["file"]
    assert f["columns"][-1] == "unknown" and len(f["confusion_unknown"][0]) == len(f["labels"]) + 1
    assert set(f["per_class"]) == set(f["labels"]) and {"precision", "recall", "f1", "support"} <= set(f["per_class"]["normal"])
    assert "clogging" in m["warnings"][0] and "WARNING" in out and "per class" in out and "unknown" in out
    assert (tmp_path / "r" / "confusion_file.png").stat().st_size > 1000
