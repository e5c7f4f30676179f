"""argparse types for the experiment scripts: numeric flags are checked when parsed.

Counts and sizes reject values <= 0, seeds reject negatives, so that `--n-explain -5`
is an error naming the flag instead of a run on 995 inputs.
"""

from __future__ import annotations

import argparse
import math


def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{what} must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An int >= 1 (counts, sizes, steps)."""
    return _int_at_least(text, 1, "a positive integer")


def seed(text: str) -> int:
    """An int >= 0 (random seeds)."""
    return _int_at_least(text, 0, "a non-negative integer seed")


def positive_float(text: str) -> float:
    """A finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value
