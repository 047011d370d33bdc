"""argparse ``type=`` converters for numbers, shared by the module's and the toolkit's CLIs.

Each raises ``argparse.ArgumentTypeError`` with the reason, so argparse reports the option name,
the value and why it was refused (exit code 2).
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

__all__ = ["finite", "int_at_least", "integer", "positive", "unit"]


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


def unit(text: str) -> float:
    """A number in [0, 1]."""
    value = finite(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text!r}")
    return value


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
