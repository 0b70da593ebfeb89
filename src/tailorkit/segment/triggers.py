"""When can a change of one numeric feature change a segment's condition?

For a condition that compares a numeric feature only with numbers
(``$gt``, ``$gte``, ``$lt``, ``$lte``, ``$eq``, ``$ne``, ``$in``, ``$nin``,
plain values, ``$exists``, ``$type``, ``$not``/``$and``/``$or``/``$nor`` of
those), its truth as a function of the value is piecewise constant: it can
only change where the value crosses one of the literals (or becomes or stops
being null). So going from ``old`` to ``new`` cannot change the condition
unless a threshold lies in ``[min(old, new), max(old, new)]``; the online
executor then skips re-evaluating it. Anything else (regular expressions,
strings compared as text) is *unsafe*: every change re-evaluates.

>>> thresholds({"views": {"$gt": 3}, "buys": 0}, "views")
(3.0,)
>>> crosses((3.0,), 4, 9), crosses((3.0,), 2, 9)
(False, True)
>>> thresholds({"views": {"$regex": "^1"}}, "views") is None
True
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from typing import Any

from tailorkit.evaluate.jsvalues import js_to_number

LOGICAL = ("$or", "$nor", "$and")
SAFE_NUMERIC_OPS = ("$eq", "$ne", "$lt", "$lte", "$gt", "$gte")


class _Unsafe(Exception):
    pass


def thresholds(condition: Mapping[str, Any], feature: str) -> tuple[float, ...] | None:
    """Sorted numbers where ``condition`` may flip as ``feature`` moves; ``None``: unsafe."""
    found: list[float] = []
    try:
        _walk(condition, feature, found)
    except _Unsafe:
        return None
    return tuple(sorted(set(found)))


def crosses(points: tuple[float, ...], old: float, new: float) -> bool:
    """Whether a point lies in the closed interval between ``old`` and ``new``."""
    low, high = (old, new) if old <= new else (new, old)
    at = bisect.bisect_left(points, low)
    return at < len(points) and points[at] <= high


def _walk(condition: Any, feature: str, out: list[float]) -> None:
    if not isinstance(condition, Mapping):
        raise _Unsafe
    for key, value in condition.items():
        if key in LOGICAL:
            for part in value if isinstance(value, list) else [value]:
                _walk(part, feature, out)
        elif key == "$not":
            _walk(value, feature, out)
        elif key == feature:
            _value(value, out)


def _number(value: Any) -> float:
    number = js_to_number(value)
    if math.isnan(number) or math.isinf(number):
        raise _Unsafe
    return number


def _value(expected: Any, out: list[float]) -> None:
    if expected is None:
        return  # null-ness changes are always re-evaluated
    if isinstance(expected, bool):
        out.append(0.0)  # truthiness flips at 0
    elif isinstance(expected, int | float | str):
        out.append(_number(expected))
    elif isinstance(expected, Mapping) and expected and all(str(k)[:1] == "$" for k in expected):
        for op, arg in expected.items():
            _operator(str(op), arg, out)
    else:
        raise _Unsafe


def _operator(op: str, arg: Any, out: list[float]) -> None:
    if op in SAFE_NUMERIC_OPS:
        if isinstance(arg, bool) or arg is None:
            return  # a number is never === true/null: constant
        if not isinstance(arg, int | float | str):
            raise _Unsafe
        out.append(_number(arg))
    elif op in ("$in", "$nin"):
        if not isinstance(arg, list):
            raise _Unsafe
        # strict membership: only numbers can match a number
        out.extend(float(a) for a in arg if isinstance(a, int | float) and not isinstance(a, bool))
    elif op == "$not":
        _value(arg, out)
    elif op not in ("$exists", "$type"):
        raise _Unsafe
