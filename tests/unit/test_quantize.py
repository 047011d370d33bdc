"""int8 quantization: both models compared on held-out data in the same run (size, speed,
metrics); int8 kept only when it is not larger, slower or worse, else fp32 and the reasons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from audioclassifier.card import ModelCard, read_card
from harness.trees import PARAMS, WINDOW, make_tree
from ml.__main__ import main
from ml.anomaly import AnomalyConfig, fit_mahalanobis
from ml.export import export_onnx
from ml.models import ConvClassifier
from ml.quantize import Tolerances, decide, quantize

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("quant")
    data = make_tree(base / "data", labels={"normal": 2, "bearing": 2}, machines=(0, 1, 2, 3), seconds=2.0)
    torch.manual_seed(0)
    model = ConvClassifier(PARAMS.n_mels, 2, channels=(8, 16, 16))
    model.fit_normalization(torch.randn(8, PARAMS.n_mels, PARAMS.frames_for(16000)) * 10 - 40)
    model.eval()
    card = ModelCard(kind="classifier", labels=("normal", "bearing"), features=PARAMS, window_seconds=WINDOW,
                     threshold=0.5, version="classifier-test")
    x = np.random.default_rng(0).normal(-40, 8, (64, PARAMS.n_mels, PARAMS.frames_for(16000))).astype(np.float32)
    maha = fit_mahalanobis(x, AnomalyConfig())
    acard = ModelCard(kind="anomaly", labels=("normal", "anomaly"), features=PARAMS, window_seconds=WINDOW,
                      threshold=float(np.quantile(maha(torch.from_numpy(x)).detach().numpy(), 0.99)),
                      version="anomaly-test")
    return data, export_onnx(model, card, base / "fp32.onnx"), export_onnx(maha, acard, base / "maha.onnx")


def test_int8_kept_on_request_with_figures_from_held_out_machines(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, fp32, _ = setup
    rep = quantize(fp32, data, tmp_path / "m8.onnx", keep="int8", calibration_windows=32)
    for fig in (rep.fp32, rep.int8):
        assert fig["size_bytes"] > 0 and fig["ms_per_window"] > 0
        assert fig["auc"] is not None and 0 <= fig["accuracy"] <= 1
    assert rep.calibration_windows == 32 and rep.kept == "int8"
    assert 0 <= rep.agreement <= 1
    assert "held out of --data by machine: 2 groups" in rep.held_out  # half the machines, never calibrated on
    card = read_card(tmp_path / "m8.onnx")
    assert card.version == "classifier-test-int8" and card.extra["quantization"]["calibration_windows"] == 32
    assert rep.int8["size_bytes"] == (tmp_path / "m8.onnx").stat().st_size
    ops = {n.op_type for n in onnx.load(str(tmp_path / "m8.onnx")).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    table = rep.table()
    assert "fp32" in table and "int8" in table and "held-out comparison" in table
    assert rep.failed == decide(rep.fp32, rep.int8, rep.agreement)
    for why in rep.failed:  # a forced int8 that fails a check says so, with the figures
        assert f"WARNING: int8 kept although {why}" in table


def test_auto_keeps_fp32_when_int8_is_larger_and_says_why(setup: tuple[Path, Path, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A Mahalanobis model: its few weights gain quantization nodes, so int8 is larger (it was kept)."""
    data, _, maha = setup
    out = tmp_path / "kept.onnx"
    assert main(["quantize", "--model", str(maha), "--data", str(data), "--out", str(out),
                 "--calibration-windows", "16"]) == 0
    assert out.read_bytes() == maha.read_bytes()
    text = capsys.readouterr().out
    assert "int8 not kept: it is larger (" in text and "kept fp32 (--keep auto)" in text
    assert "ms_per_window" in text and "size_bytes" in text


def test_keep_fp32_and_refusals(setup: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, fp32, _ = setup
    out = tmp_path / "kept.onnx"
    assert main(["quantize", "--model", str(fp32), "--data", str(data), "--out", str(out), "--keep", "fp32",
                 "--calibration-windows", "16"]) == 0
    assert out.read_bytes() == fp32.read_bytes() and "kept fp32 (--keep fp32)" in capsys.readouterr().out
    # the comparison set must be held out of calibration
    assert main(["quantize", "--model", str(fp32), "--data", str(data), "--eval-data", str(data),
                 "--out", str(tmp_path / "x.onnx")]) == 2
    assert "held out" in capsys.readouterr().out and not (tmp_path / "x.onnx").exists()
    one = make_tree(tmp_path / "one", labels={"normal": 1, "bearing": 1}, machines=(0,), seconds=2.0)
    assert main(["quantize", "--model", str(fp32), "--data", str(one), "--out", str(tmp_path / "y.onnx")]) == 2
    assert "--eval-data" in capsys.readouterr().out and not (tmp_path / "y.onnx").exists()


def test_decide_names_every_check_int8_fails() -> None:
    base = {"size_bytes": 1000, "ms_per_window": 0.20, "auc": 0.90, "accuracy": 0.80}
    assert decide(base, dict(base), 1.0) == []
    assert decide(base, {**base, "size_bytes": 900, "ms_per_window": 0.209}, 0.99) == []  # within 5 % speed
    failed = decide(base, {"size_bytes": 2000, "ms_per_window": 0.40, "auc": 0.795, "accuracy": 0.79}, 0.95)
    assert [f.split(" (")[0] for f in failed] == ["it is larger", "it is slower", "its auc is lower",
                                                  "its decisions agree with fp32 on 95.00% of held-out windows"]
    assert "0.7950 against 0.9000" in failed[2]
    assert decide(base, {**base, "auc": 0.88}, 1.0, Tolerances(metric=0.05)) == []


@pytest.mark.slow
def test_bldc_anomaly_model_keeps_fp32_judged_on_an_unseen_motor(shared_data: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Real recordings: a Mahalanobis model of healthy motors M2 and M3, quantized with their sound,
    compared on motor M1 (healthy and propeller fault) that neither training nor calibration heard."""
    bldc = shared_data / "bldc-motor-sound"
    train_tree, test_tree = tmp_path / "train", tmp_path / "test"
    for m in ("M2", "M3"):
        (train_tree / "Healthy").mkdir(parents=True, exist_ok=True)
        (train_tree / "Healthy" / m).symlink_to(bldc / "Healthy" / m, target_is_directory=True)
    for label in ("Healthy", "Propeller"):
        (test_tree / label).mkdir(parents=True)
        (test_tree / label / "M1").symlink_to(bldc / label / "M1", target_is_directory=True)
    model, out = tmp_path / "maha.onnx", tmp_path / "q.onnx"
    front = ["--sample-rate", "16000", "--n-fft", "512", "--hop-length", "256", "--n-mels", "32", "--window-seconds", "1"]
    assert main(["train", "--data", str(train_tree), "--kind", "anomaly", "--method", "mahalanobis", "--normal-label",
                 "Healthy", "--out", str(model), *front]) == 0
    capsys.readouterr()
    assert main(["quantize", "--model", str(model), "--data", str(train_tree), "--eval-data", str(test_tree),
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"--eval-data {test_tree}" in text and "int8 not kept: it is larger" in text and "kept fp32" in text
    assert out.read_bytes() == model.read_bytes()
    auc = {w[0]: (float(w[1]), float(w[2])) for w in (ln.split() for ln in text.splitlines()) if w and w[0] == "auc"}
    assert 0.5 < auc["auc"][0] <= 1.0  # the fp32 figure on the unseen motor is a real one
