"""The range of a numeric option or config value (:class:`Range`): the one check every command, the device kit's
``build_engine.py`` included, applies to a number when it is parsed, and config readers apply to a value they read.

A value is refused unless it is a number (text that parses as one, on the command line), finite, in the range, and
a whole number where the range is integer; integers without an explicit upper bound stop at :data:`MAX_INT` (what
an int32 shape, a batch or a count can hold), so a huge integer is bad input, not an overflow deep inside.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_INT = 2**31 - 1


@dataclass(frozen=True)
class Range:
    """Values from ``low`` to ``high`` (None: unbounded; integer ranges stop at :data:`MAX_INT`), either end
    excluded when ``low_open`` / ``high_open``, finite, whole numbers when ``integer``."""

    low: float | None
    high: float | None = None
    low_open: bool = False
    integer: bool = False
    high_open: bool = False

    @property
    def upper(self) -> float | None:
        """The upper bound applied (an integer range's implicit :data:`MAX_INT` included)."""
        return MAX_INT if self.high is None and self.integer else self.high

    def describe(self) -> str:
        """``an integer >= 1``, ``a finite number in [0, 1)``, ``an integer in [0, 30]``, ..."""
        kind = "an integer" if self.integer else "a finite number"
        if self.low is not None and self.high is not None:
            return (f"{kind} in {'(' if self.low_open else '['}{_fmt(self.low)}, {_fmt(self.high)}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {_fmt(self.low)}"
        elif self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {_fmt(self.high)}"
        else:
            text = kind
        return text + (f" (at most {MAX_INT})" if self.integer else "")

    def contains(self, number: int | float) -> bool:
        """Whether the parsed ``number`` is finite, whole where needed and within the bounds."""
        if isinstance(number, float) and (not math.isfinite(number) or (self.integer and not number.is_integer())):
            return False
        if self.low is not None and (number <= self.low if self.low_open else number < self.low):
            return False
        upper = self.upper
        return upper is None or (number < upper if self.high_open else number <= upper)

    def check(self, value: Any, flag: str) -> int | float:
        """``value`` (a number, or its text from a command line) if it is in range, else ValueError naming ``flag``
        (the option or config field) and the range. Booleans are not numbers here."""
        try:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise TypeError
            number = int(value) if self.integer and not isinstance(value, float) else float(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{flag} must be {self.describe()}, got {_shown(value)}") from None
        if not self.contains(number):
            raise ValueError(f"{flag} must be {self.describe()}, got {_shown(value)}")
        return int(number) if self.integer else number

    def check_value(self, value: Any, name: str) -> int | float:
        """:meth:`check` for a value read from a file (JSON): it must already be a number, not text."""
        if isinstance(value, str):
            raise ValueError(f"{name} must be {self.describe()}, got the text {_shown(value)}")
        return self.check(value, name)


def _fmt(bound: float) -> str:
    """A bound as people write it: 4294967295, 0.5, 1e-08."""
    return str(int(bound)) if float(bound).is_integer() and abs(bound) < 1e15 else f"{bound:g}"


def _shown(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters (a 5000-digit number is not echoed whole)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**limit else f"an integer of {len(str(value))} digits"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def argtype(rule: Range, flag: str) -> Callable[[str], int | float]:
    """An argparse ``type`` for option ``flag``: a value outside ``rule`` is a usage error (exit 2) naming the flag,
    raised when the command line is parsed. The function carries ``rule`` (``.rule``) for tests that list every
    numeric option."""
    def convert(text: str) -> int | float:
        try:
            return rule.check(text, flag)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = "integer" if rule.integer else "number"
    convert.rule = rule  # type: ignore[attr-defined]
    return convert


# ranges several commands share (each command's own options keep their ranges beside the option)
SEED = Range(0, 2**32 - 1, integer=True)  # numpy and torch generators take it; larger seeds overflow per-epoch seeds
COUNT = Range(1, integer=True)  # images, batches, iterations, steps
BATCH = Range(1, integer=True)  # a batch size
THREADS = Range(0, 1024, integer=True)  # 0: the library's default; more than any machine has cores is a typo
POINTS = Range(0, 100)  # a top-1 budget or margin in percentage points
MEBIBYTES = Range(1, 1 << 20, integer=True)  # a memory size in MiB (up to 1 TiB)
