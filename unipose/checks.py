"""Argument checks that several library modules share; each refusal names the argument, what it got and what
it expects."""

from __future__ import annotations

import numpy as np


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """`value` as an `int`, refused unless it is an integer (not a bool) of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"`{name}` must be {expected}, got {value!r}.")
    return int(value)


def check_same(first, second, names: tuple[str, str], what: str) -> None:
    """Refuses two arguments whose `what` (shape, dimension, ...), given as `first` and `second`, differ."""
    if first != second:
        raise ValueError(
            f"`{names[0]}` and `{names[1]}` must have the same {what}, got {first} and {second}."
        )
