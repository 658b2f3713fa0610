"""Range checks of numeric options, shared by the library and the command line.

Every numeric setting a user passes (opacity, thresholds, counts, sizes, rates, seconds) is
checked where it is used, in the library, with :func:`check`; the CLI checks its flags with the
same function when it parses them, so a bad value is exit code 2 with the allowed range whether it
came from Python or a shell.
"""

from __future__ import annotations

import math
from typing import TypeVar

from edgeseg.errors import ArgumentError

N = TypeVar("N", int, float)


def describe(low: float | None, high: float | None, integer: bool, low_open: bool = False) -> str:
    """The allowed range in words: ``an integer >= 1``, ``a number in [0, 1]``, ``a number > 0``."""
    kind = "an integer" if integer else "a number"
    if low is not None and high is not None:
        return f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{kind} <= {high:g}"
    return kind


def check(name: str, value: N, low: float | None = None, high: float | None = None, *, integer: bool = False,
          low_open: bool = False) -> N:
    """*value* if it lies in the range; :class:`ArgumentError` "NAME VALUE: must be ..." otherwise.
    *name* is how the user wrote the setting (a flag such as ``--alpha``, or a parameter name)."""
    bad = isinstance(value, bool) or (integer and not isinstance(value, int)) or (
        not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)))
    if not bad:
        bad = (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high)
    if bad:
        raise ArgumentError(f"{name} {value}: must be {describe(low, high, integer, low_open)}")
    return value
