"""``python -m ml evaluate``: metrics.json, plots and a table for a model on a labelled tree."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the verb and its options."""
    p = sub.add_parser(
        "evaluate",
        help="score a labelled tree: metrics.json, confusion/ROC/histogram PNGs, a table",
        description="Run the exported model (onnxruntime) over DATA/<label>/... and write REPORT_DIR/metrics.json "
        '{"window": {auc, pauc, accuracy, confusion, labels}, "file": {...}} (a file\'s score is the mean of its '
        "windows; auc/pauc: normal vs the rest, pauc = sklearn roc_auc_score max_fpr=0.1, McClish-standardised), "
        "confusion_window.png, confusion_file.png, roc.png, histograms.png and scores.csv. Bad files are "
        "reported and skipped. Exit code 0, 2 on a bad model or data.",
    )
    p.add_argument("--model", required=True, type=Path, help="ONNX model with an Auscult card")
    p.add_argument("--data", required=True, type=Path, help="labelled tree ROOT/<label>/...")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: <model stem>-report next to the model)")
    p.add_argument("--hop-seconds", type=float, default=None, help="hop between windows (default: half a window)")
    p.add_argument("--channel", type=int, default=None,
                   help="0-based channel (default: the card's channel handling; mix down for old cards)")
    p.add_argument("--allow-upsampling", action="store_true",
                   help="score sources slower than the model's rate (by default they are skipped with a reason)")
    p.add_argument("--no-plots", action="store_true", help="write metrics.json and scores.csv only")
    return p


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the table."""
    from audioclassifier.card import CardError
    from ml.evaluate import evaluate, format_table

    out = args.out or args.model.with_name(args.model.stem + "-report")
    try:
        ev = evaluate(args.model, args.data, out, hop_seconds=args.hop_seconds, channel=args.channel,
                      plots=not args.no_plots, allow_upsampling=args.allow_upsampling)
    except (CardError, FileNotFoundError, ValueError) as exc:
        print(f"evaluate: {exc}")
        return 2
    for path, reason in sorted(ev.failed.items()):
        print(f"skipped {path}: {reason}")
    print(f"{args.model}: {ev.n_files} files, {ev.n_windows} windows of {args.data}")
    print(format_table(ev.metrics))
    print(f"report: {ev.out}/metrics.json")
    return 0
