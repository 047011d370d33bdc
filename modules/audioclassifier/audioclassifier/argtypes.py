"""argparse ``type=`` converters for numbers, shared by the module's and the toolkit's CLIs.

Each raises ``argparse.ArgumentTypeError`` with the reason, so argparse reports the option name,
the value and why it was refused (exit code 2).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["finite", "int_at_least", "integer", "number_in", "positive", "unit"]


def finite(text: str) -> float:
    """A finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def positive(text: str) -> float:
    """A finite number > 0."""
    value = finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def number_in(lo: float, hi: float, *, open_lo: bool = False, open_hi: bool = False) -> Callable[[str], float]:
    """A converter for finite numbers in the interval from ``lo`` to ``hi`` (closed unless said)."""
    span = f"{'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"

    def parse(text: str) -> float:
        value = finite(text)
        if (value <= lo if open_lo else value < lo) or (value >= hi if open_hi else value > hi):
            raise argparse.ArgumentTypeError(f"must be in {span}, got {text!r}")
        return value

    parse.__name__ = f"number in {span}"
    return parse


#: A number in [0, 1].
unit = number_in(0.0, 1.0)


def integer(text: str) -> int:
    """An integer."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def int_at_least(lo: int) -> Callable[[str], int]:
    """A converter for integers >= ``lo``."""

    def parse(text: str) -> int:
        value = integer(text)
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {lo}"
    return parse
