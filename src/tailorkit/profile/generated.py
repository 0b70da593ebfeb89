"""Functions generated from Python source (the online executors' inlined hot paths).

The source is built by our code from indexes, numbers and names passed in
``names`` (never from user text), and the same source recurs for every
engine built from the same definitions: its compilation is cached.

>>> double = define(["def double(x):", "    return k * x"], {"k": 2}, "double")
>>> double(21)
42
"""

from __future__ import annotations

from functools import lru_cache
from types import CodeType
from typing import Any

from tailorkit.evaluate.conditions import compile_value

_RELATIONS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


@lru_cache(maxsize=4096)
def _compiled(source: str) -> CodeType:
    return compile(source, "<generated>", "exec")


def define(lines: list[str], names: dict[str, Any], function: str) -> Any:
    """Run ``lines`` (defining ``function``) with ``names`` as globals; return the function."""
    exec(_compiled("\n".join(lines)), names)  # source built by the callers, see above
    return names[function]


def condition_source(condition: Any, names: dict[str, Any], obj: str, tag: str) -> str:
    """A Python expression equal to ``compile_condition(condition)(obj)`` for a dict ``obj``.

    ``obj`` is the variable's name. Handles objects of top-level keys and
    ``$and``/``$or``/``$nor``/``$not``; a numeric ``$gt``/``$gte``/``$lt``/
    ``$lte`` or plain number is compared inline for int/float values (as the
    compiled test does first), ``None`` gives the test's answer for null
    (computed once), anything else calls the compiled value test
    (:func:`compile_value`). The values it uses are added to ``names``
    (prefixed ``tag``). Raises ``ValueError`` for other shapes.

    >>> names = {}
    >>> expr = condition_source({"n": {"$gte": 2}, "$not": {"m": 0}}, names, "doc", "t")
    >>> [eval(expr, names, {"doc": d}) for d in ({"n": 2, "m": 1}, {"n": 2}, {"n": "2", "m": 1})]
    [True, False, True]
    """
    if type(condition) is not dict or not condition:
        raise ValueError("not a plain non-empty object")
    parts = []
    for key, value in condition.items():
        if key in ("$and", "$or", "$nor"):
            if type(value) is not list or not value:
                raise ValueError(key)
            joined = (" and " if key == "$and" else " or ").join(
                condition_source(c, names, obj, tag) for c in value
            )
            parts.append(f"(not ({joined}))" if key == "$nor" else f"({joined})")
        elif key == "$not":
            parts.append(f"(not {condition_source(value, names, obj, tag)})")
        elif type(key) is not str or key.startswith("$") or "." in key:
            raise ValueError(key)
        else:
            parts.append(_value_source(key, value, names, obj, tag))
    return f"({' and '.join(parts)})"


def _value_source(key: str, expected: Any, names: dict[str, Any], obj: str, tag: str) -> str:
    """One key's test: numeric comparisons inline, the compiled value test otherwise."""
    operators = (
        type(expected) is dict
        and expected
        and all(type(k) is str and k.startswith("$") for k in expected)
    )
    parts = []
    for op, arg in (expected if operators else {None: expected}).items():
        i = len(names)
        k, c, v, n = f"{tag}k{i}", f"{tag}c{i}", f"{tag}v{i}", f"{tag}n{i}"
        test = compile_value(expected if op is None else {op: arg}, {})
        names[k], names[c], names[v], names[f"{n}_null"] = key, arg, test, bool(test(None))
        value = f"({n} := {obj}.get({k}))"
        other = f"({n}_null if {n} is None else {v}({n}))"
        compare = "==" if op is None else _RELATIONS.get(op)
        if (type(arg) is int or type(arg) is float) and compare is not None:
            parts.append(
                f"({n} {compare} {c} if (t := type{value}) is int or t is float else {other})"
            )
        else:
            parts.append(f"({n}_null if {value} is None else {v}({n}))")
    return f"({' and '.join(parts)})"
