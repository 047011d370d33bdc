"""int8 quantization: reports size, speed and accuracy of both models and writes the one asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audioclassifier.card import ModelCard, read_card
from harness.trees import PARAMS, WINDOW, make_tree
from ml.__main__ import main
from ml.export import export_onnx
from ml.models import ConvClassifier
from ml.quantize import quantize

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("quant")
    data = make_tree(base / "data", labels={"normal": 2, "bearing": 2}, machines=(0, 1), seconds=2.0)
    torch.manual_seed(0)
    model = ConvClassifier(PARAMS.n_mels, 2, channels=(8, 16, 16))
    model.fit_normalization(torch.randn(8, PARAMS.n_mels, PARAMS.frames_for(16000)) * 10 - 40)
    model.eval()
    card = ModelCard(kind="classifier", labels=("normal", "bearing"), features=PARAMS, window_seconds=WINDOW,
                     threshold=0.5, version="classifier-test")
    return data, export_onnx(model, card, base / "fp32.onnx")


def test_quantize_reports_and_keeps_int8(setup: tuple[Path, Path], tmp_path: Path) -> None:
    data, fp32 = setup
    rep = quantize(fp32, data, tmp_path / "m8.onnx", keep="int8", calibration_windows=32)
    for fig in (rep.fp32, rep.int8):
        assert fig["size_bytes"] > 0 and fig["ms_per_window"] > 0
        assert fig["auc"] is not None and 0 <= fig["accuracy"] <= 1
    assert rep.calibration_windows == 32
    assert 0 <= rep.agreement <= 1
    card = read_card(tmp_path / "m8.onnx")
    assert card.version == "classifier-test-int8" and card.extra["quantization"]["calibration_windows"] == 32
    assert rep.int8["size_bytes"] == (tmp_path / "m8.onnx").stat().st_size
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "m8.onnx")).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert "fp32" in rep.table() and "int8" in rep.table()


def test_quantize_cli_keep_fp32(setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, fp32 = setup
    out = tmp_path / "kept.onnx"
    assert main(["quantize", "--model", str(fp32), "--data", str(data), "--out", str(out), "--keep", "fp32",
                 "--calibration-windows", "16"]) == 0
    assert out.read_bytes() == fp32.read_bytes()
    text = capsys.readouterr().out
    assert "ms_per_window" in text and "size_bytes" in text and "kept fp32" in text
