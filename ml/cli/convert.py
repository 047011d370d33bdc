"""``python -m ml convert``: a WAV tree to ``.npy`` log-mels and PNG spectrograms."""

from __future__ import annotations

import argparse
import os

from ml.cli.frontend_options import add_frontend_options, frontend_params


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the verb and its options."""
    p = sub.add_parser(
        "convert",
        help="WAV/FLAC tree -> .npy log-mel arrays (+ PNG images)",
        description="Mirror an audio tree as float32 (n_mels, frames) log-mel arrays in dB "
        "(the module's front end, non-centered frames) and PNG spectrograms. Bad files are "
        "reported and skipped. Exit code: 0 all converted, 3 some failed, 1 none converted.",
    )
    p.add_argument("--input", required=True, help="a folder tree (or one file) of .wav/.flac")
    p.add_argument("--output", required=True, help="output folder (mirrors the input tree)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    p.add_argument("--no-png", action="store_true", help="write only the .npy arrays")
    p.add_argument("--channel", type=int, default=None, help="0-based channel to use (default: mix down)")
    p.add_argument("--sensor", action="store_true", help="also convert CSV/NPY sensor series (and low-rate WAVs)")
    add_frontend_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Convert the tree; print a summary; see the description for exit codes."""
    from ml.convert import convert_tree

    try:
        params = frontend_params(args)
    except ValueError as exc:
        print(f"convert: {exc}")
        return 2
    if args.jobs < 1:
        print("convert: --jobs must be >= 1")
        return 2
    try:
        report = convert_tree(args.input, args.output, params=params, jobs=args.jobs,
                              png=not args.no_png, channel=args.channel, sensor=args.sensor)
    except FileNotFoundError as exc:
        print(f"convert: {exc}")
        return 2
    print(report.summary())
    if not report.converted:
        return 1
    return 3 if report.failed else 0
