"""Parameter constraints, checked before any work as scikit-learn's estimators do.

An estimator lists, per parameter, the constraints a valid value meets (any one of them);
:func:`check_params` raises a ``ValueError`` naming the parameter, what is allowed and what was
received. ``None`` in a list allows None.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

__all__ = ["Interval", "InstanceOf", "Options", "SequenceOf", "check_params"]


class Interval:
    """Integers or real numbers between ``low`` and ``high`` (None: unbounded); bools excluded.

    NaN and the infinities are never in an interval, even an unbounded one: comparisons with
    NaN are all False, so without this check NaN would pass every bound.

    Parameters
    ----------
    kind : {int, float}
        int accepts integers only; float accepts any real number.
    low, high : number or None
        Bounds; None leaves that side open.
    closed : {'both', 'left', 'right', 'neither'}
        Which bounds belong to the interval.
    """

    def __init__(self, kind, low, high, *, closed: str = "both"):
        self.kind, self.low, self.high, self.closed = kind, low, high, closed

    def __contains__(self, value) -> bool:
        number = numbers.Integral if self.kind is int else numbers.Real
        if isinstance(value, bool) or not isinstance(value, number):
            return False
        if not isinstance(value, numbers.Integral) and not math.isfinite(value):
            return False
        if self.low is not None:
            if value < self.low or (value == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if value > self.high or (value == self.high and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self) -> str:
        name = "an integer" if self.kind is int else "a number"
        if self.high is None:
            return f"{name} {'>=' if self.closed in ('both', 'left') else '>'} {self.low}"
        if self.low is None:
            return f"{name} {'<=' if self.closed in ('both', 'right') else '<'} {self.high}"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"{name} in {left}{self.low}, {self.high}{right}"


class Options:
    """One of a fixed set of values; a bool only if the set holds that bool (``True == 1``
    would otherwise pass for the option 1)."""

    def __init__(self, values: Sequence):
        self.values = tuple(values)

    def __contains__(self, value) -> bool:
        if isinstance(value, (bool, np.bool_)):
            return any(isinstance(o, (bool, np.bool_)) and o == value for o in self.values)
        return any(value is option or value == option for option in self.values)

    def __str__(self) -> str:
        return f"one of {self.values}"


class InstanceOf:
    """An instance of ``types``, described as ``description``."""

    def __init__(self, types, description: str):
        self.types, self.description = types, description

    def __contains__(self, value) -> bool:
        return isinstance(value, self.types)

    def __str__(self) -> str:
        return self.description


class SequenceOf:
    """A list or tuple whose items all meet ``item``."""

    def __init__(self, item):
        self.item = item

    def __contains__(self, value) -> bool:
        return isinstance(value, (list, tuple)) and all(entry in self.item for entry in value)

    def __str__(self) -> str:
        return f"a list or tuple whose items are each {self.item}"


def check_params(params: dict, constraints: dict[str, list]) -> None:
    """Raise ``ValueError`` for the first parameter in ``params`` that meets none of its
    constraints.

    Parameters
    ----------
    params : dict
        Parameter values by name (``estimator.get_params(deep=False)``).
    constraints : dict of str to list
        Per parameter, the allowed constraints: None, :class:`Interval`, :class:`Options`,
        :class:`InstanceOf` or :class:`SequenceOf`.
    """
    for name, allowed in constraints.items():
        value = params[name]
        if any(value is None if rule is None else value in rule for rule in allowed):
            continue
        described = [("None" if rule is None else str(rule)) for rule in allowed]
        choices = (
            described[0]
            if len(described) == 1
            else ", ".join(described[:-1]) + (f" or {described[-1]}")
        )
        raise ValueError(f"{name} must be {choices}. Received: {name}={value!r}")
