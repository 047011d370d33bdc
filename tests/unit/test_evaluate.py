"""``evaluate`` writes metrics.json exactly as DESIGN.md defines it, with the right values on a
constructed case; ``predict`` prints one valid JSON line per file and reports bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from audioclassifier.audio_io import load_audio
from audioclassifier.card import ModelCard
from audioclassifier.features import LogMelParams, logmel
from ml.__main__ import main
from ml.export import export_onnx

torch.set_num_threads(1)

PARAMS = LogMelParams(n_fft=512, hop_length=256, n_mels=16)
KEYS = {"auc", "pauc", "accuracy", "confusion", "labels"}


class Level(nn.Module):
    """Score = mean dB of the window: louder is more anomalous (a model whose answer we know)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2))


class LevelClassifier(nn.Module):
    """p(bearing) rises steeply through ``t`` dB of mean level."""

    def __init__(self, t: float) -> None:
        super().__init__()
        self.t = t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.mean(dim=(1, 2)) - self.t) / 20.0
        return torch.softmax(torch.stack([-z, z], dim=1), dim=1)


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """normal: quiet and medium noise; bearing: loud noise; 2 s each. Returns the tree and a
    threshold between the quiet and the medium file's level."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    for rel, amp in (("normal/m1/quiet.wav", 0.01), ("normal/m1/medium.wav", 0.1), ("bearing/m1/loud.wav", 0.5)):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, (amp * rng.standard_normal(32000)).astype(np.float32), 16000, subtype="FLOAT")
    levels = [float(logmel(load_audio(root / r), params=PARAMS).mean())
              for r in ("normal/m1/quiet.wav", "normal/m1/medium.wav")]
    return root, float(np.mean(levels))


def _export(model: nn.Module, kind: str, labels: tuple[str, ...], threshold: float, path: Path) -> Path:
    card = ModelCard(kind=kind, labels=labels, features=PARAMS, window_seconds=1.0, threshold=threshold,
                     threshold_method="test", version="test-1", extra={"confidence_threshold": 0.6})
    return export_onnx(model, card, path)


def test_anomaly_metrics_json(case: tuple[Path, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, t = case
    model = _export(Level(), "anomaly", ("normal", "anomaly"), t, tmp_path / "a.onnx")
    assert main(["evaluate", "--model", str(model), "--data", str(root), "--out", str(tmp_path / "rep")]) == 0
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert set(m) == {"window", "file"}
    assert set(m["window"]) == KEYS | {"per_class"} and set(m["file"]) == KEYS | {"per_class"}
    f = m["file"]
    assert f["labels"] == ["normal", "anomaly"]
    assert f["auc"] == 1.0 and f["pauc"] == 1.0  # loud > medium > quiet: perfect ranking
    assert f["confusion"] == [[1, 1], [0, 1]]  # medium normal file is over the threshold
    assert f["accuracy"] == pytest.approx(2 / 3)
    w = m["window"]  # 2 s files, 1 s windows every 0.5 s, the last one aligned to the end: 4 each
    assert w["confusion"] == [[4, 4], [0, 4]] and w["accuracy"] == pytest.approx(8 / 12) and w["auc"] == 1.0
    for png in ("confusion_window.png", "confusion_file.png", "roc.png", "histograms.png"):
        assert (tmp_path / "rep" / png).stat().st_size > 1000
    out = capsys.readouterr().out
    assert "accuracy" in out and "confusion (file" in out


def test_classifier_metrics_json(case: tuple[Path, float], tmp_path: Path) -> None:
    root, t = case
    model = _export(LevelClassifier(t), "classifier", ("normal", "bearing"), 0.5, tmp_path / "c.onnx")
    assert main(["evaluate", "--model", str(model), "--data", str(root), "--out", str(tmp_path / "rep"), "--no-plots"]) == 0
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["file"]["labels"] == ["normal", "bearing"]
    assert m["file"]["confusion"] == [[1, 1], [0, 1]]
    assert m["file"]["auc"] == 1.0
    assert m["window"]["accuracy"] == pytest.approx(8 / 12)


def test_predict_prints_json_lines_and_reports_bad_files(case: tuple[Path, float], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root, t = case
    model = _export(LevelClassifier(t), "classifier", ("normal", "bearing"), 0.5, tmp_path / "c.onnx")
    bad = root / "normal" / "m1" / "zz_corrupt.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    try:
        rc = main(["predict", "--model", str(model), "--input", str(root)])
    finally:
        bad.unlink()
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert rc == 3  # some file failed
    by_name = {Path(r["file"]).name: r for r in lines}
    assert set(by_name) == {"quiet.wav", "medium.wav", "loud.wav", "zz_corrupt.wav"}
    assert "error" in by_name["zz_corrupt.wav"]
    assert by_name["loud.wav"]["label"] == "bearing" and by_name["quiet.wav"]["label"] == "normal"
    assert by_name["loud.wav"]["windows"] == 4
    assert sum(by_name["loud.wav"]["probs"].values()) == pytest.approx(1.0, abs=1e-5)
    # near the decision boundary nothing is confident: the calibrated cut (0.6) says unknown
    r = by_name["medium.wav"]
    assert (r["label"] == "unknown") == (r["confidence"] < 0.6)


def test_evaluate_and_predict_refuse_a_model_without_card(tmp_path: Path, case: tuple[Path, float],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = case
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    assert main(["evaluate", "--model", str(junk), "--data", str(root)]) == 2
    assert main(["predict", "--model", str(junk), "--input", str(root)]) == 2
    captured = capsys.readouterr()
    assert "not a loadable ONNX model" in captured.out and "not a loadable ONNX model" in captured.err
