"""Entry point of ``python -m ml``: dispatches to the verb modules in :mod:`ml.cli`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ml.cli import VERBS


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-command per verb module that exists."""
    parser = argparse.ArgumentParser(prog="python -m ml", description="Auscult training toolkit")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        try:
            mod = importlib.import_module(f"ml.cli.{verb}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ml.cli.{verb}":
                continue  # verb not built yet
            raise
        p = mod.add_parser(sub)
        p.set_defaults(run_verb=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen verb; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("matplotlib", "PIL", "numba", "h5py"):  # their debug lines drown ours under -v
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return int(args.run_verb(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
