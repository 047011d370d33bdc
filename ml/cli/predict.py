"""``python -m ml predict``: one JSON line per audio file (a file or a folder)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the verb and its options."""
    p = sub.add_parser(
        "predict",
        help="score one file or a folder: one JSON line per file",
        description="Print one JSON object per audio file on stdout: file, kind, model, windows, seconds, score "
        "(mean score of the scored windows; windows under the energy gate are 'silent', not scored; label 'silent' when all are), max_score, threshold, label (anomaly model: 'anomaly' or the normal label; "
        "classifier: the most probable label, or 'unknown' under the card's confidence threshold), and for "
        "a classifier probs. An unreadable file gives {\"file\", \"error\"}. Exit code 0, 3 if some file "
        "failed, 2 on a bad model or path.",
    )
    p.add_argument("--model", required=True, type=Path, help="ONNX model with an Auscult card")
    p.add_argument("--input", required=True, type=Path, help="an audio file or a folder of them")
    p.add_argument("--hop-seconds", type=float, default=None, help="hop between windows (default: half a window)")
    p.add_argument("--channel", type=int, default=None,
                   help="0-based channel (default: the card's channel handling; mix down for old cards)")
    p.add_argument("--energy-gate-dbfs", type=float, default=None,
                   help="windows quieter than this are 'silent' and not scored, as in the module (default: the "
                   "module's -70)")
    p.add_argument("--loop-short", action="store_true",
                   help="loop a file shorter than one window up to a window (by default it is refused: the module "
                   "cannot score it)")
    p.add_argument("--allow-upsampling", action="store_true",
                   help="score a source slower than the model's rate (by default refused: upsampling adds no "
                   "bandwidth and the scores are not comparable)")
    p.add_argument("--per-window", action="store_true",
                   help="add window_scores: every window's score, in order (compare with the module's --window-log)")
    return p


def run(args: argparse.Namespace) -> int:
    """Print the JSON lines."""
    import json
    import sys

    from audioclassifier.card import CardError
    from ml.inference import OnnxModel
    from ml.predict import predict_paths

    try:
        model = OnnxModel(args.model)
        failed = 0
        from ml.predict import DEFAULT_GATE_DBFS

        gate = DEFAULT_GATE_DBFS if args.energy_gate_dbfs is None else args.energy_gate_dbfs
        for rec in predict_paths(model, args.input, hop_seconds=args.hop_seconds, channel=args.channel,
                                 per_window=args.per_window, gate_dbfs=gate, loop_short=args.loop_short,
                                 allow_upsampling=args.allow_upsampling):
            failed += "error" in rec
            print(json.dumps(rec), flush=True)
    except (CardError, FileNotFoundError) as exc:
        print(f"predict: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader (e.g. head) stopped early: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 3 if failed else 0
