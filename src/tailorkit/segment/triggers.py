"""When can a change of one numeric feature change a segment's condition?

A condition that reads a numeric feature only through comparisons with
numbers (``$gt``, ``$gte``, ``$lt``, ``$lte``, ``$eq``, ``$ne``, ``$in``,
``$nin``, plain values, ``$exists``, ``$type``, and ``$not``/``$and``/
``$or``/``$nor`` of those) is a boolean function of a few *atoms* — the
truth of each comparison. If no atom changes its truth between the old and
the new value, the condition cannot change, and the online executor skips
re-evaluating it. Atoms follow the reference evaluator's JavaScript rules
(``null`` is 0 in ``$lt``/``$gt`` and in plain equality, never ``===`` a
number). Anything else (regular expressions, strings compared as text) is
*unsafe*: every change re-evaluates.

>>> atoms({"views": {"$gt": 3}, "buys": 0}, "views")
(('gt', 3.0),)
>>> flips((("gt", 3.0),), 2, 3), flips((("gt", 3.0),), 3, 4), flips((("gt", 3.0),), None, 0)
(False, True, False)
>>> atoms({"views": {"$regex": "^1"}}, "views") is None
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tailorkit.evaluate.jsvalues import js_to_number
from tailorkit.profile.generated import define

LOGICAL = ("$or", "$nor", "$and")
RELATIONS = {"$lt": "lt", "$lte": "le", "$gt": "gt", "$gte": "ge"}
#: (kind, number): ``gt``/``ge``/``lt``/``le``/``eq`` compare with null as 0,
#: ``seq`` is strict equality, ``null`` is null-ness, ``truthy`` JavaScript truthiness.
Atom = tuple[str, float]


class _Unsafe(Exception):
    pass


def atoms(condition: Mapping[str, Any], feature: str) -> tuple[Atom, ...] | None:
    """The comparisons of ``feature`` a condition depends on; ``None``: unsafe."""
    found: list[Atom] = []
    try:
        _walk(condition, feature, found)
    except _Unsafe:
        return None
    return tuple(sorted(set(found)))


def truth(atom: Atom, value: float | None) -> bool:
    """One comparison, with the reference evaluator's rules for numbers and null.

    >>> truth(("lt", 7.0), None), truth(("seq", 0.0), None), truth(("eq", 0.0), None)
    (True, False, True)
    """
    kind, c = atom
    if kind == "null":
        return value is None
    if kind == "truthy":
        return value is not None and value != 0
    if kind == "seq":
        return value is not None and value == c
    x = 0.0 if value is None else value
    if kind == "gt":
        return x > c
    if kind == "ge":
        return x >= c
    if kind == "lt":
        return x < c
    if kind == "le":
        return x <= c
    return x == c


def flips(found: tuple[Atom, ...], old: float | None, new: float | None) -> bool:
    """Whether going from ``old`` to ``new`` changes the truth of any atom."""
    return any(truth(atom, old) != truth(atom, new) for atom in found)


def integer_bounds(found: tuple[Atom, ...]) -> tuple[int, ...]:
    """For a feature whose values are integers that are never null (a count): the
    integers ``b`` where some atom is true at ``b - 1`` and false at ``b``, or the reverse.

    A count that falls can change a condition only by falling below one of
    them, so the online executor wakes exactly then, not at every value near
    a threshold (``$gt: 3`` changes between 3 and 4, not between 2 and 3).

    >>> integer_bounds((("gt", 3.0), ("ge", 2.5), ("seq", 0.0), ("eq", 1.5), ("null", 0.0)))
    (0, 1, 3, 4)
    >>> integer_bounds((("lt", 7.0), ("le", 7.0), ("truthy", 0.0)))
    (1, 7, 8)
    """
    bounds: set[int] = set()
    for kind, c in found:
        if kind in ("gt", "le"):  # x > c and x <= c: between floor(c) and floor(c) + 1
            bounds.add(math.floor(c) + 1)
        elif kind in ("ge", "lt"):  # x >= c and x < c: between ceil(c) - 1 and ceil(c)
            bounds.add(math.ceil(c))
        elif kind in ("eq", "seq") and c == math.floor(c):  # true at c only
            bounds.update((int(c), int(c) + 1))
        elif kind == "truthy":  # x != 0
            bounds.add(1)
    return tuple(sorted(bounds))


def _walk(condition: Any, feature: str, out: list[Atom]) -> None:
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


def _number(value: Any) -> float | None:
    """A finite JavaScript number for the literal, or ``None`` (NaN: always false)."""
    number = js_to_number(value)
    return None if math.isnan(number) or math.isinf(number) else number


def _value(expected: Any, out: list[Atom]) -> None:
    if expected is None:
        out.append(("null", 0.0))
    elif isinstance(expected, bool):
        out.extend((("truthy", 0.0), ("null", 0.0)))  # {"f": false} needs a non-null value
    elif isinstance(expected, int | float):
        out.append(("eq", float(expected)))
    elif isinstance(expected, str):
        number = _number(expected)
        if number is None or expected.strip() != expected or not expected:
            raise _Unsafe  # String(number) === text: only canonical numbers are simple
        out.append(("eq", number))
    elif isinstance(expected, Mapping) and expected and all(str(k)[:1] == "$" for k in expected):
        for op, arg in expected.items():
            _operator(str(op), arg, out)
    else:
        raise _Unsafe


def _operator(op: str, arg: Any, out: list[Atom]) -> None:
    if op in RELATIONS:
        if isinstance(arg, bool) or not isinstance(arg, int | float | str):
            raise _Unsafe
        number = _number(arg)
        if number is not None:  # NaN comparisons are always false: no atom
            out.append((RELATIONS[op], number))
    elif op in ("$eq", "$ne"):
        if arg is None:
            out.append(("null", 0.0))
        elif isinstance(arg, int | float) and not isinstance(arg, bool):
            out.append(("seq", float(arg)))
        elif not isinstance(arg, bool | str):
            raise _Unsafe  # (strings and booleans are never === a number: constant)
    elif op in ("$in", "$nin"):
        if not isinstance(arg, list):
            raise _Unsafe
        for item in arg:
            if item is None:
                out.append(("null", 0.0))
            elif isinstance(item, int | float) and not isinstance(item, bool):
                out.append(("seq", float(item)))
    elif op in ("$exists", "$type"):
        out.append(("null", 0.0))
    elif op == "$not":
        _value(arg, out)
    else:
        raise _Unsafe


#: The Python expression of each atom kind over a value ``v`` (``x``: ``v`` with null as 0).
_EXPRESSIONS = {
    "null": "({v} is None)",
    "truthy": "({v} is not None and {v} != 0)",
    "seq": "({v} is not None and {v} == {c})",
    "gt": "({x} > {c})",
    "ge": "({x} >= {c})",
    "lt": "({x} < {c})",
    "le": "({x} <= {c})",
    "eq": "({x} == {c})",
}


def flip_mask(readers: tuple[tuple[int, tuple[Atom, ...] | None], ...]) -> Any:
    """``fn(old, new) -> mask``: the bits whose atoms change truth from ``old`` to ``new``.

    ``readers``: ``(bit, atoms or None)`` per segment reading the feature;
    ``None`` (unsafe) flips on any change. Compiled once, so that a refresh
    tests each distinct comparison once instead of walking the atoms.

    >>> f = flip_mask(((0, (("gt", 3.0),)), (2, (("gt", 3.0), ("null", 0.0))), (3, None)))
    >>> f(2, 3), f(3, 4), f(None, 0)
    (8, 13, 12)
    """
    lines, names = flip_source(readers, "f")
    return define(["def flip(o, n):", "    m = 0", *["    " + line for line in lines],
                   "    return m"], names, "flip")  # fmt: skip


def flip_source(
    readers: tuple[tuple[int, tuple[Atom, ...] | None], ...],
    tag: str,
    old: str = "o",
    new: str = "n",
    into: str = "m",
    nullable: bool = True,
) -> tuple[list[str], dict[str, Any]]:
    """:func:`flip_mask` as lines adding the bits to ``into`` from the values ``old`` and
    ``new`` (variable names; the lines may also set ``xo`` and ``xn``), for inlining; the
    numbers they use are returned with the ``tag`` prefix. Not ``nullable``: the
    values are never ``None`` (null tests cannot change, null is not mapped to 0)."""
    constant = 0
    by_atom: dict[Atom, int] = {}
    for bit, found in readers:
        if found is None:
            constant |= 1 << bit
        else:
            for atom in found:
                by_atom[atom] = by_atom.get(atom, 0) | 1 << bit
    lines = [f"{into} |= {constant}"] if constant else []
    if not nullable:
        by_atom = {atom: bits for atom, bits in by_atom.items() if atom[0] != "null"}
    xo, xn = ("xo", "xn") if nullable else (old, new)
    if nullable and any(kind not in ("null", "truthy", "seq") for kind, _ in by_atom):
        lines.append(f"xo = 0.0 if {old} is None else {old}")
        lines.append(f"xn = 0.0 if {new} is None else {new}")
    names: dict[str, Any] = {}
    for i, ((kind, c), bits) in enumerate(by_atom.items()):
        names[f"{tag}c{i}"] = c  # passed by name: no repr round trip of the number
        before = _EXPRESSIONS[kind].format(v=old, x=xo, c=f"{tag}c{i}")
        after = _EXPRESSIONS[kind].format(v=new, x=xn, c=f"{tag}c{i}")
        lines.append(f"if {before} != {after}:")
        lines.append(f"    {into} |= {bits}")
    return lines, names
