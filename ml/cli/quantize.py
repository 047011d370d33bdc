"""``python -m ml quantize``: int8 static quantization, compared with fp32 on held-out data."""

from __future__ import annotations

import argparse
from pathlib import Path

from audioclassifier.argtypes import int_at_least, number_in


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the verb and its options."""
    p = sub.add_parser(
        "quantize",
        help="int8 static quantization; keeps int8 only when it is not larger, slower or worse than fp32 on held-out data",
        description="Quantize MODEL to int8 (onnxruntime static quantization, QDQ, per-channel weights) with "
        "windows of DATA (normal ones for an anomaly model) for calibration. Both models are compared in the "
        "same run on held-out windows (--eval-data, or machines of DATA never used for calibration): file size, "
        "single-window time (one thread, alternating blocks), AUC, accuracy at the card's threshold and decision "
        "agreement. --keep auto (default) writes int8 only when it is not larger, not slower and not worse beyond "
        "the tolerances, else fp32, and says why; --keep int8 writes int8 and prints every failed check as a "
        "warning. Exit code 0 on success, 2 on bad data or options.",
    )
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path, help="tree ROOT/<label>/... for calibration (and comparison "
                   "when --eval-data is not given)")
    p.add_argument("--eval-data", type=Path, default=None,
                   help="held-out tree for the comparison (default: machines of --data kept out of calibration)")
    p.add_argument("--out", required=True, type=Path, help="ONNX file to write")
    p.add_argument("--keep", choices=("auto", "int8", "fp32"), default="auto",
                   help="which model to write (default auto: int8 only when it passes every check)")
    p.add_argument("--metric-tolerance", type=number_in(0, 1), default=0.01,
                   help="largest drop of AUC or accuracy int8 may show (default 0.01)")
    p.add_argument("--speed-tolerance", type=number_in(0, 10), default=0.05,
                   help="fraction by which int8 may be slower per window (default 0.05)")
    p.add_argument("--calibration-windows", type=int_at_least(1), default=256)
    p.add_argument("--seed", type=int, default=0)
    return p


def run(args: argparse.Namespace) -> int:
    """Quantize and print the comparison."""
    from audioclassifier.card import CardError
    from ml.quantize import QuantizeError, Tolerances, quantize

    try:
        rep = quantize(args.model, args.data, args.out, keep=args.keep, calibration_windows=args.calibration_windows,
                       seed=args.seed, eval_data=args.eval_data,
                       tolerances=Tolerances(metric=args.metric_tolerance, speed=args.speed_tolerance))
    except (CardError, FileNotFoundError, QuantizeError, ValueError) as exc:
        print(f"quantize: {exc}")
        return 2
    print(rep.table())
    return 0
