"""``python -m ml quantize``: int8 static quantization (onnxruntime, QDQ) with calibration windows,
compared with the fp32 model on size, speed and accuracy; the user keeps either."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from audioclassifier.card import ModelCard
from ml.dataset import scan_tree
from ml.export import IR_VERSION
from ml.inference import OnnxModel
from ml.metrics import binary_auc
from ml.modelcard import save_with_card
from ml.windows import load_windows

__all__ = ["QuantizeReport", "quantize"]


@dataclass
class QuantizeReport:
    """Both models' figures and which one was written."""

    kept: str
    out: Path
    fp32: dict[str, Any] = field(default_factory=dict)
    int8: dict[str, Any] = field(default_factory=dict)
    agreement: float | None = None
    calibration_windows: int = 0

    def table(self) -> str:
        """Readable comparison."""
        keys = ["size_bytes", "ms_per_window", "auc", "accuracy"]
        lines = [f"{'':14s} {'fp32':>12s} {'int8':>12s}"]
        for k in keys:
            a, b = self.fp32.get(k), self.int8.get(k)

            def f(v: Any) -> str:
                return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

            lines.append(f"{k:14s} {f(a):>12s} {f(b):>12s}")
        if self.agreement is not None:
            lines.append(f"decision agreement int8 vs fp32: {self.agreement:.4f}")
        lines.append(f"calibration windows: {self.calibration_windows}; kept {self.kept}: {self.out}")
        return "\n".join(lines)


class _Reader:
    """onnxruntime CalibrationDataReader over windows, one small batch at a time."""

    def __init__(self, name: str, x: np.ndarray, batch: int = 16) -> None:
        self.name, self.x, self.batch, self.i = name, x, batch, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.x):
            return None
        b = self.x[self.i : self.i + self.batch]
        self.i += self.batch
        return {self.name: np.ascontiguousarray(b, dtype=np.float32)}

    def rewind(self) -> None:
        self.i = 0


def _figures(model: OnnxModel, x: np.ndarray, truth: np.ndarray, normal: str) -> tuple[dict[str, Any], np.ndarray]:
    out = model.run(x)
    s = model.scores(out)
    card = model.card
    y = truth != normal
    fig: dict[str, Any] = {"size_bytes": model.path.stat().st_size}
    fig["auc"] = round(binary_auc(y, s)[0], 4) if y.any() and (~y).any() else None
    if card.kind == "anomaly":
        dec = s > card.threshold
        fig["accuracy"] = round(float((dec == y).mean()), 4)
    else:
        dec = np.asarray(card.labels, dtype=object)[out.argmax(1)]
        fig["accuracy"] = round(float((dec == truth).mean()), 4)
    one = np.ascontiguousarray(x[:1])
    for _ in range(5):
        model.run(one)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 0.5 or n < 20:
        model.run(one)
        n += 1
    fig["ms_per_window"] = round((time.perf_counter() - t0) / n * 1000, 4)
    return fig, dec


def quantize(model_path: str | os.PathLike[str], data: str | os.PathLike[str], out: str | os.PathLike[str], *,
             keep: str = "int8", calibration_windows: int = 256, seed: int = 0) -> QuantizeReport:
    """Quantize with windows of ``data`` for calibration (normal ones first), compare, write ``out``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if keep not in ("int8", "fp32"):
        raise ValueError(f"keep must be int8 or fp32, got {keep!r}")
    fp32 = OnnxModel(model_path)
    card = fp32.card
    ws = load_windows(scan_tree(data), params=card.features, window_seconds=card.window_seconds,
                      hop_seconds=card.window_seconds / 2, progress=False)
    if not len(ws.x):
        raise FileNotFoundError(f"{data}: no usable audio for calibration")
    rng = np.random.default_rng(seed)
    lab = ws.labels
    pool = np.flatnonzero(lab == card.normal_label)
    if not len(pool) or card.kind == "classifier":
        pool = np.arange(len(ws.x))
    calib = ws.x[rng.permutation(pool)[:calibration_windows]]
    dest = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        q = Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32.path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(q), _Reader(fp32.input_name, calib), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax)
        proto = onnx.load(str(q))
        proto.ir_version = IR_VERSION
        d = card.to_dict()
        d["version"] = card.version + "-int8"
        d["quantization"] = {"type": "int8 static (onnxruntime QDQ, per-channel weights, MinMax)",
                             "calibration_windows": int(len(calib)), "from": card.version}
        qcard = ModelCard.from_dict(d)
        q_card_path = Path(tmp) / "int8_card.onnx"
        save_with_card(proto, qcard, q_card_path)
        int8 = OnnxModel(q_card_path)
        f32_fig, d32 = _figures(fp32, ws.x, lab, card.normal_label)
        i8_fig, d8 = _figures(int8, ws.x, lab, card.normal_label)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if keep == "int8":
            shutil.copyfile(q_card_path, dest)
        elif Path(model_path).resolve() != dest.resolve():
            shutil.copyfile(model_path, dest)
    return QuantizeReport(keep, dest, f32_fig, i8_fig, round(float(np.mean(d32 == d8)), 4), int(len(calib)))
