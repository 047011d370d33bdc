"""Command-line verbs of ``python -m ml``.

Each verb is a small module with ``add_parser(subparsers)`` and ``run(args) -> int``. The parser
modules import nothing heavy, so ``python -m ml synth`` works with the runtime dependencies only
and ``--help`` is instant; each ``run`` imports what its verb needs.
"""

#: verb name -> module under ml.cli; the order is the order of ``--help``.
VERBS = ("synth", "convert", "train", "evaluate", "predict", "export", "quantize", "cluster", "dataset")
