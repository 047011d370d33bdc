"""``python -m ml quantize``: int8 static quantization (onnxruntime, QDQ) compared with the fp32
model on held-out data, in the same run: size, speed and the model's metrics. int8 is kept only
when it is not larger, not slower and not worse beyond the tolerances; otherwise fp32 is kept
(``--keep auto``, the default) or, when int8 is forced, every failed check is printed as a warning.

Calibration and comparison never share a file: the comparison runs on ``--eval-data``, or on the
groups (machines; recordings for a single machine) that a split of ``--data`` holds out of
calibration. Speed is single-window latency on one thread, fp32 and int8 timed in alternating
blocks (so a busy machine slows both alike) and compared by their medians.
"""

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
from audioclassifier.errors import AuscultError
from ml.dataset import Item, scan_tree, suffixes
from ml.export import IR_VERSION
from ml.inference import OnnxModel, card_channels
from ml.metrics import binary_auc
from ml.modelcard import save_with_card
from ml.splits import SplitError, plan_split
from ml.windows import WindowSet, load_windows

__all__ = ["KEEP", "QuantizeError", "QuantizeReport", "Tolerances", "decide", "quantize"]

KEEP = ("auto", "int8", "fp32")


class QuantizeError(AuscultError, ValueError):
    """Quantization cannot run as asked (no usable data, no held-out set, bad options)."""


@dataclass(frozen=True)
class Tolerances:
    """How much worse int8 may be and still be kept."""

    #: largest drop of AUC and of accuracy (absolute) on the held-out windows
    metric: float = 0.01
    #: int8 may take at most this fraction longer per window (timing noise on a shared CPU)
    speed: float = 0.05
    #: smallest share of held-out windows where int8 decides as fp32 does
    agreement: float = 0.98


@dataclass
class QuantizeReport:
    """Both models' figures, the checks int8 failed, and which model was written."""

    kept: str
    out: Path
    fp32: dict[str, Any] = field(default_factory=dict)
    int8: dict[str, Any] = field(default_factory=dict)
    agreement: float | None = None
    calibration_windows: int = 0
    #: the checks int8 failed (empty: int8 is as good)
    failed: list[str] = field(default_factory=list)
    #: what was compared: files and windows of the held-out set, and where it came from
    held_out: str = ""
    keep: str = "auto"

    def table(self) -> str:
        """Readable comparison, the checks and the decision."""
        keys = ["size_bytes", "ms_per_window", "auc", "accuracy"]
        lines = [f"held-out comparison: {self.held_out}", f"{'':14s} {'fp32':>12s} {'int8':>12s}"]
        for k in keys:
            a, b = self.fp32.get(k), self.int8.get(k)

            def f(v: Any) -> str:
                return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

            lines.append(f"{k:14s} {f(a):>12s} {f(b):>12s}")
        if self.agreement is not None:
            lines.append(f"decision agreement int8 vs fp32: {self.agreement:.4f}")
        for why in self.failed:
            lines.append(("WARNING: int8 kept although " if self.kept == "int8" else "int8 not kept: ") + why)
        if not self.failed:
            lines.append("int8 is not larger, not slower and not worse on the held-out data")
        lines.append(f"calibration windows: {self.calibration_windows}; kept {self.kept}"
                     + (" (--keep auto)" if self.keep == "auto" else f" (--keep {self.keep})") + f": {self.out}")
        return "\n".join(lines)


def decide(fp32: dict[str, Any], int8: dict[str, Any], agreement: float | None,
           tol: Tolerances = Tolerances()) -> list[str]:
    """The checks int8 fails against fp32 (each with its figures); empty when int8 may be kept."""
    failed = []
    if int8["size_bytes"] > fp32["size_bytes"]:
        failed.append(f"it is larger ({int8['size_bytes']} bytes against {fp32['size_bytes']})")
    if int8["ms_per_window"] > fp32["ms_per_window"] * (1 + tol.speed):
        failed.append(f"it is slower ({int8['ms_per_window']:.4g} ms per window against {fp32['ms_per_window']:.4g}, "
                      f"tolerance {tol.speed:.0%})")
    for k in ("auc", "accuracy"):
        a, b = fp32.get(k), int8.get(k)
        if a is not None and b is not None and b < a - tol.metric:
            failed.append(f"its {k} is lower ({b:.4f} against {a:.4f}, tolerance {tol.metric:g})")
    if agreement is not None and agreement < tol.agreement:
        failed.append(f"its decisions agree with fp32 on {agreement:.2%} of held-out windows (at least "
                      f"{tol.agreement:.0%} needed)")
    return failed


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


def _metrics(model: OnnxModel, x: np.ndarray, truth: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    out = model.run(x)
    s = model.scores(out)
    card = model.card
    y = truth != card.normal_label
    fig: dict[str, Any] = {"size_bytes": model.path.stat().st_size}
    fig["auc"] = round(binary_auc(y, s)[0], 4) if y.any() and (~y).any() else None
    if card.kind == "anomaly":
        dec = s > card.threshold
        fig["accuracy"] = round(float((dec == y).mean()), 4)
    else:
        dec = np.asarray(card.labels, dtype=object)[out.argmax(1)]
        fig["accuracy"] = round(float((dec == truth).mean()), 4)
    return fig, dec


def _latency(models: list[OnnxModel], x: np.ndarray, *, blocks: int = 7, per_block: int = 30) -> list[float]:
    """Median ms per single-window call of each model, timed in alternating blocks."""
    one = np.ascontiguousarray(x[:1])
    for m in models:
        for _ in range(5):
            m.run(one)
    times: list[list[float]] = [[] for _ in models]
    for b in range(blocks):
        order = range(len(models)) if b % 2 == 0 else reversed(range(len(models)))
        for i in order:
            t0 = time.perf_counter()
            for _ in range(per_block):
                models[i].run(one)
            times[i].append((time.perf_counter() - t0) / per_block * 1000)
    return [round(float(np.median(t)), 4) for t in times]


def _held_out(items: list[Item], seed: int) -> tuple[list[Item], list[Item], str]:
    """Calibration and comparison files of one tree: a group split that keeps every label on both sides
    when it can (machines, else recordings)."""
    labels = [it.label for it in items]
    groups = [it.group for it in items]
    for by in ("machine", "recording"):
        try:
            sp = plan_split(labels, groups, val_fraction=0.5, seed=seed, by=by, need_in_val=sorted(set(labels)))
        except SplitError:
            continue
        return ([items[i] for i in sp.train], [items[i] for i in sp.val],
                f"held out of --data by {sp.by}: {len(sp.val_groups)} groups ({', '.join(sp.val_groups[:6])}"
                f"{' ...' if len(sp.val_groups) > 6 else ''}) never used for calibration")
    raise QuantizeError(f"{len(items)} files cannot be split into calibration and held-out comparison files that "
                        "both hold every label: give a held-out set with --eval-data DIR")


def quantize(model_path: str | os.PathLike[str], data: str | os.PathLike[str], out: str | os.PathLike[str], *,
             keep: str = "auto", calibration_windows: int = 256, seed: int = 0,
             eval_data: str | os.PathLike[str] | None = None, tolerances: Tolerances = Tolerances()) -> QuantizeReport:
    """Quantize with windows of ``data`` (normal ones first for an anomaly model), compare int8 with
    fp32 on held-out windows (``eval_data``, or groups of ``data`` kept out of calibration), and
    write the model ``keep`` names (``auto``: int8 only when :func:`decide` finds nothing against it)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if keep not in KEEP:
        raise QuantizeError(f"keep must be one of {', '.join(KEEP)}, got {keep!r}")
    fp32 = OnnxModel(model_path)
    card = fp32.card
    ch = card_channels(card)
    channel = int(ch["channel"]) if ch.get("mix") == "channel" else None
    sensor = ch.get("input") == "sensor"
    items = scan_tree(data, sensor=sensor)
    if not items:
        raise QuantizeError(f"{data}: no {'/'.join(suffixes(sensor))} files found")
    if eval_data is not None:
        calib_items, eval_items = items, scan_tree(eval_data, sensor=sensor)
        if not eval_items:
            raise QuantizeError(f"{eval_data}: no {'/'.join(suffixes(sensor))} files found")
        overlap = {it.path.resolve() for it in calib_items} & {it.path.resolve() for it in eval_items}
        if overlap:
            raise QuantizeError(f"--eval-data shares {len(overlap)} files with --data: the comparison must be held out")
        where = f"--eval-data {eval_data}"
    else:
        calib_items, eval_items, where = _held_out(items, seed)

    def windows(its: list[Item]) -> WindowSet:
        return load_windows(its, params=card.features, window_seconds=card.window_seconds,
                            hop_seconds=card.window_seconds / 2, progress=False, channel=channel, sensor=sensor)

    wc, we = windows(calib_items), windows(eval_items)
    if not len(wc.x):
        raise QuantizeError(f"{data}: no usable audio for calibration")
    if not len(we.x):
        raise QuantizeError("no usable audio in the held-out comparison files")
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(wc.labels == card.normal_label)
    if not len(pool) or card.kind == "classifier":
        pool = np.arange(len(wc.x))
    calib = wc.x[rng.permutation(pool)[:calibration_windows]]
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
        q_card_path = Path(tmp) / "int8_card.onnx"
        save_with_card(proto, ModelCard.from_dict(d), q_card_path)
        int8 = OnnxModel(q_card_path)
        f32_fig, d32 = _metrics(fp32, we.x, we.labels)
        i8_fig, d8 = _metrics(int8, we.x, we.labels)
        f32_fig["ms_per_window"], i8_fig["ms_per_window"] = _latency([fp32, int8], we.x)
        agreement = round(float(np.mean(d32 == d8)), 4)
        failed = decide(f32_fig, i8_fig, agreement, tolerances)
        kept = keep if keep != "auto" else ("fp32" if failed else "int8")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if kept == "int8":
            shutil.copyfile(q_card_path, dest)
        elif Path(model_path).resolve() != dest.resolve():
            shutil.copyfile(model_path, dest)
    held = f"{len(we.items)} files, {len(we.x)} windows ({where})"
    return QuantizeReport(kept, dest, f32_fig, i8_fig, agreement, int(len(calib)), failed, held, keep)
