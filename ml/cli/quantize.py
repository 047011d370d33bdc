"""``python -m ml quantize``: int8 static quantization with calibration data; compares with fp32."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the verb and its options."""
    p = sub.add_parser(
        "quantize",
        help="int8 static quantization with calibration data; reports size, speed, accuracy vs fp32",
        description="Quantize MODEL to int8 (onnxruntime static quantization, QDQ, per-channel weights) with "
        "windows of DATA (normal ones for an anomaly model) for calibration; print size, single-window time "
        "(one thread) and AUC/accuracy on DATA of both models; write the one --keep names to --out.",
    )
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path, help="tree ROOT/<label>/... for calibration and comparison")
    p.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    p.add_argument("--keep", choices=("int8", "fp32"), default="int8", help="which model to write (default int8)")
    p.add_argument("--calibration-windows", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args: argparse.Namespace) -> int:
    """Quantize and print the comparison."""
    from audioclassifier.card import CardError
    from ml.quantize import quantize

    try:
        rep = quantize(args.model, args.data, args.out, keep=args.keep,
                       calibration_windows=args.calibration_windows, seed=args.seed)
    except (CardError, FileNotFoundError, ValueError) as exc:
        print(f"quantize: {exc}")
        return 2
    print(rep.table())
    return 0
