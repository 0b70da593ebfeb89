"""MongoDB-style targeting conditions, GrowthBook-compatible.

A condition is compiled once into a predicate (a closure tree) and then
called with an attribute document.  Semantics follow GrowthBook's
JavaScript SDK, which the cross-SDK suite encodes:

* a plain value compares with JavaScript coercion: ``{"n": 10}`` matches
  ``"10"``, ``{"flag": true}`` matches any truthy value except ``null``;
  arrays and non-operator objects compare as ``JSON.stringify`` output;
* ``$lt``/``$lte``/``$gt``/``$gte`` use JavaScript's relational comparison
  (``null`` is 0, numeric strings are numbers, two strings compare by UTF-16
  code units);
* ``$eq``/``$ne`` are strict (``===``); ``$in``/``$nin`` use
  ``Array.prototype.includes`` and intersect when the attribute is an array;
* a missing attribute is ``null``; a dotted path walks objects and arrays
  (``tags.0``, ``tags.length``);
* an unknown operator is false (so ``$not`` of it is true);
* ``$regex``/``$regexi`` patterns are JavaScript patterns run through
  :mod:`tailorkit.evaluate.safe_regex` (bounded time, compiled once).

Saved groups (``$inGroup``/``$notInGroup``) are resolved when compiling, so
compile again when the groups change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from tailorkit.evaluate.jsvalues import (
    js_json,
    js_less_than,
    js_number_to_string,
    js_str_compare,
    js_to_number,
    js_to_string,
    js_truthy,
    js_type,
)
from tailorkit.evaluate.safe_regex import compile_js_regex

__all__ = [
    "Predicate",
    "compile_condition",
    "eval_condition",
    "padded_version_string",
]

#: A compiled condition: attribute document in, match out.
Predicate = Callable[[Any], bool]
ValueTest = Callable[[Any], bool]
SavedGroups = Mapping[str, Any]


class _Malformed(Exception):
    """A condition that JavaScript could not evaluate (it would throw)."""


def _false(_: Any) -> bool:
    return False


def _true(_: Any) -> bool:
    return True


def eval_condition(
    attributes: Mapping[str, Any],
    condition: Mapping[str, Any],
    saved_groups: SavedGroups | None = None,
) -> bool:
    """Evaluate a condition against attributes (compiles on every call).

    For repeated use, call :func:`compile_condition` once instead.

    >>> eval_condition({"country": "DE", "age": "30"},
    ...                {"country": {"$in": ["DE", "AT"]}, "age": {"$gt": 18}})
    True
    >>> eval_condition({}, {"age": {"$lt": 10}})  # null < 10, like JavaScript
    True
    """
    return compile_condition(condition, saved_groups)(attributes)


def compile_condition(condition: Any, saved_groups: SavedGroups | None = None) -> Predicate:
    """Compile a condition into a predicate over an attribute document.

    A malformed condition (one the JavaScript SDK would throw on) never
    matches.

    >>> is_cart_abandoner = compile_condition(
    ...     {"segments": {"$elemMatch": {"$eq": "cart_abandoners"}}})
    >>> is_cart_abandoner({"segments": ["vip", "cart_abandoners"]})
    True
    """
    groups: SavedGroups = saved_groups or {}
    try:
        return _compile_object(condition, groups)
    except _Malformed:
        return _false


# --------------------------------------------------------------------------
# Conditions (objects of paths and logical operators)


def _condition_items(condition: Any) -> list[tuple[str, Any]]:
    """The entries JavaScript's ``Object.entries`` would give."""
    if isinstance(condition, Mapping):
        return [(k if isinstance(k, str) else js_to_string(k), v) for k, v in condition.items()]
    if condition is None:
        raise _Malformed("null condition")
    if isinstance(condition, (str, list, tuple)):
        return [(str(i), v) for i, v in enumerate(condition)]
    return []  # numbers and booleans have no own properties


def _compile_object(condition: Any, groups: SavedGroups) -> Predicate:
    tests = [_compile_entry(key, value, groups) for key, value in _condition_items(condition)]
    return _all_of(tests)


def _compile_entry(key: str, value: Any, groups: SavedGroups) -> Predicate:
    if key == "$or":
        return _any_of([_compile_object(c, groups) for c in _as_list(value)], empty=True)
    if key == "$nor":
        return _negate(_any_of([_compile_object(c, groups) for c in _as_list(value)], empty=True))
    if key == "$and":
        return _all_of([_compile_object(c, groups) for c in _as_list(value)])
    if key == "$not":
        return _negate(_compile_object(value, groups))
    return _on_path(key, compile_value(value, groups))


def _as_list(value: Any) -> list[Any]:
    """The elements a JavaScript loop over ``value.length`` would visit."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        return list(value)
    if value is None:
        raise _Malformed("null list")
    return []


def _all_of(tests: list[Predicate]) -> Predicate:
    if not tests:
        return _true
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests

        def both(obj: Any) -> bool:
            return first(obj) and second(obj)

        return both
    frozen = tuple(tests)

    def every(obj: Any) -> bool:
        # A plain loop: about twice as fast as all() over a generator
        for test in frozen:  # noqa: SIM110
            if not test(obj):
                return False
        return True

    return every


def _any_of(tests: list[Predicate], empty: bool) -> Predicate:
    if not tests:
        return _true if empty else _false
    if len(tests) == 1:
        return tests[0]
    frozen = tuple(tests)

    def some(obj: Any) -> bool:
        for test in frozen:  # noqa: SIM110
            if test(obj):
                return True
        return False

    return some


def _negate(test: Predicate) -> Predicate:
    if test is _true:
        return _false
    if test is _false:
        return _true

    def negated(obj: Any) -> bool:
        return not test(obj)

    return negated


# --------------------------------------------------------------------------
# Paths


def _step(current: Any, part: str) -> Any:
    """One step of a dotted path, with JavaScript's ``in`` on own keys."""
    if isinstance(current, Mapping):
        return current.get(part)
    if isinstance(current, (list, tuple)):
        if part == "length":
            return len(current)
        if part.isdigit() and part.isascii() and (part == "0" or part[0] != "0"):
            index = int(part)
            return current[index] if index < len(current) else None
    return None


def _on_path(path: str, test: ValueTest) -> Predicate:
    """Apply ``test`` to the value at ``path`` (``None`` when missing)."""
    parts = path.split(".")
    if len(parts) == 1:

        def at_key(obj: Any) -> bool:
            if type(obj) is dict:
                return test(obj.get(path))
            return test(_step(obj, path))

        return at_key

    def at_path(obj: Any) -> bool:
        current = obj
        for part in parts:
            current = _step(current, part)
            if current is None:
                break
        return test(current)

    return at_path


# --------------------------------------------------------------------------
# Values


def _is_operator_object(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) and k.startswith("$") for k in value)
    )


def compile_value(expected: Any, groups: SavedGroups, insensitive: bool = False) -> ValueTest:
    """Compile the condition for one attribute value (JavaScript's ``evalConditionValue``)."""
    if isinstance(expected, str):
        return _string_equals(expected, insensitive)
    if isinstance(expected, bool):
        return lambda v: v is not None and js_truthy(v) is expected
    if isinstance(expected, (int, float)):
        return _number_equals(expected)
    if expected is None:
        return lambda v: v is None
    if _is_operator_object(expected):
        return _all_of([_compile_operator(op, arg, groups) for op, arg in expected.items()])
    return _json_equals(expected)


def _string_equals(expected: str, insensitive: bool) -> ValueTest:
    if insensitive:
        folded = expected.lower()
        return lambda v: js_to_string(v).lower() == folded

    def equals(v: Any) -> bool:
        if type(v) is str:
            return v == expected
        return js_to_string(v) == expected

    return equals


def _number_equals(expected: float) -> ValueTest:
    def equals(v: Any) -> bool:
        kind = type(v)
        if kind is int or kind is float:
            return bool(v == expected)
        return js_to_number(v) == expected

    return equals


def _json_equals(expected: Any) -> ValueTest:
    target = js_json(expected)
    container = list if isinstance(expected, (list, tuple)) else dict

    def equals(v: Any) -> bool:
        if container is list and not isinstance(v, (list, tuple)):
            return False
        if container is dict and not isinstance(v, Mapping):
            return False
        return js_json(v) == target

    return equals


# --------------------------------------------------------------------------
# Operators


def _compile_operator(op: str, arg: Any, groups: SavedGroups) -> ValueTest:
    factory = _OPERATORS.get(op)
    if factory is None:
        return _false  # unknown operators never match
    return factory(arg, groups)


def _op_eq(arg: Any, _: SavedGroups) -> ValueTest:
    return _strict_equals(arg)


def _op_ne(arg: Any, _: SavedGroups) -> ValueTest:
    return _negate(_strict_equals(arg))


def _strict_equals(arg: Any) -> ValueTest:
    """JavaScript ``===``; objects from separate JSON documents are never equal."""
    if isinstance(arg, (list, tuple, Mapping)):
        return _false
    if arg is None:
        return lambda v: v is None
    if isinstance(arg, bool):
        return lambda v: v is arg
    if isinstance(arg, str):
        return lambda v: type(v) is str and v == arg
    if isinstance(arg, (int, float)):
        return lambda v: type(v) in (int, float) and v == arg
    return lambda v: v is arg


def _relational(op: str) -> Callable[[Any, SavedGroups], ValueTest]:
    """Build ``$lt``/``$lte``/``$gt``/``$gte`` with JavaScript coercion."""

    def factory(arg: Any, _: SavedGroups) -> ValueTest:
        slow = _slow_relation(op, arg)
        if isinstance(arg, (int, float)) and not isinstance(arg, bool):
            return _numeric_relation(op, arg, slow)
        if isinstance(arg, str):
            return _string_relation(op, arg, slow)
        return slow

    return factory


def _slow_relation(op: str, arg: Any) -> ValueTest:
    if op == "$lt":
        return lambda v: js_less_than(v, arg) is True
    if op == "$gt":
        return lambda v: js_less_than(arg, v) is True
    if op == "$lte":
        return lambda v: js_less_than(arg, v) is False
    return lambda v: js_less_than(v, arg) is False


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "$lt": lambda a, b: bool(a < b),
    "$lte": lambda a, b: bool(a <= b),
    "$gt": lambda a, b: bool(a > b),
    "$gte": lambda a, b: bool(a >= b),
}


def _numeric_relation(op: str, arg: float, slow: ValueTest) -> ValueTest:
    # Python's comparisons of int/float match JavaScript's (NaN is never ordered)
    if op == "$lt":

        def lt(v: Any) -> bool:
            kind = type(v)
            return bool(v < arg) if kind is int or kind is float else slow(v)

        return lt
    if op == "$gt":

        def gt(v: Any) -> bool:
            kind = type(v)
            return bool(v > arg) if kind is int or kind is float else slow(v)

        return gt
    compare = _COMPARE[op]

    def other(v: Any) -> bool:
        kind = type(v)
        return compare(v, arg) if kind is int or kind is float else slow(v)

    return other


def _string_relation(op: str, arg: str, slow: ValueTest) -> ValueTest:
    sign_ok = {"$lt": (-1,), "$lte": (-1, 0), "$gt": (1,), "$gte": (1, 0)}[op]

    def relation(v: Any) -> bool:
        if type(v) is str:
            return js_str_compare(v, arg) in sign_ok
        return slow(v)

    return relation


def _version_op(op: str) -> Callable[[Any, SavedGroups], ValueTest]:
    signs = {
        "$veq": (0,),
        "$vne": (-1, 1),
        "$vgt": (1,),
        "$vgte": (1, 0),
        "$vlt": (-1,),
        "$vlte": (-1, 0),
    }[op]

    def factory(arg: Any, _: SavedGroups) -> ValueTest:
        expected = padded_version_string(arg)
        return lambda v: js_str_compare(padded_version_string(v), expected) in signs

    return factory


def _op_exists(arg: Any, _: SavedGroups) -> ValueTest:
    if js_truthy(arg):
        return lambda v: v is not None
    return lambda v: v is None


def _op_type(arg: Any, _: SavedGroups) -> ValueTest:
    return lambda v: js_type(v) == arg


def _op_not(arg: Any, groups: SavedGroups) -> ValueTest:
    return _negate(compile_value(arg, groups))


def _op_size(arg: Any, groups: SavedGroups) -> ValueTest:
    test = compile_value(arg, groups)
    return lambda v: isinstance(v, (list, tuple)) and test(len(v))


def _op_elem_match(arg: Any, groups: SavedGroups) -> ValueTest:
    check: ValueTest
    check = compile_value(arg, groups) if _is_operator_object(arg) else _compile_object(arg, groups)

    def elem_match(v: Any) -> bool:
        if not isinstance(v, (list, tuple)):
            return False
        # JavaScript skips falsy elements (0, "", false, null)
        return any(js_truthy(item) and check(item) for item in v)

    return elem_match


def _all_factory(insensitive: bool) -> Callable[[Any, SavedGroups], ValueTest]:
    def factory(arg: Any, groups: SavedGroups) -> ValueTest:
        if not isinstance(arg, (list, tuple)):
            return _false
        checks = [compile_value(item, groups, insensitive) for item in arg]

        def contains_all(v: Any) -> bool:
            if not isinstance(v, (list, tuple)):
                return False
            return all(any(check(item) for item in v) for check in checks)

        return contains_all

    return factory


class _Membership:
    """``Array.prototype.includes`` over JSON primitives, precomputed as sets."""

    __slots__ = ("bools", "has_null", "numbers", "strings")

    def __init__(self, values: Any, insensitive: bool) -> None:
        self.strings: set[str] = set()
        self.numbers: set[float] = set()
        self.bools: set[bool] = set()
        self.has_null = False
        for value in values:
            if isinstance(value, str):
                self.strings.add(value.lower() if insensitive else value)
            elif isinstance(value, bool):
                self.bools.add(value)
            elif isinstance(value, (int, float)):
                self.numbers.add(value)
            elif value is None:
                self.has_null = True
            # objects and arrays are compared by reference in JS: never equal

    def contains(self, v: Any) -> bool:
        kind = type(v)
        if kind is str:
            return v in self.strings
        if kind is int or kind is float:
            return v in self.numbers
        if kind is bool:
            return v in self.bools
        if v is None:
            return self.has_null
        return False


def _membership_test(values: Any, insensitive: bool) -> ValueTest:
    members = _Membership(values, insensitive)
    contains = members.contains

    def is_in(v: Any) -> bool:
        if isinstance(v, (list, tuple)):
            if insensitive:
                return any(contains(x.lower() if type(x) is str else x) for x in v)
            return any(contains(x) for x in v)
        if insensitive and type(v) is str:
            return contains(v.lower())
        return contains(v)

    return is_in


def _in_factory(negated: bool, insensitive: bool) -> Callable[[Any, SavedGroups], ValueTest]:
    def factory(arg: Any, _: SavedGroups) -> ValueTest:
        if not isinstance(arg, (list, tuple)):
            return _false
        test = _membership_test(arg, insensitive)
        return _negate(test) if negated else test

    return factory


def _group_values(groups: SavedGroups, group_id: Any) -> list[Any]:
    """A saved group's values: a list, or ``{"values": [...]}`` (typed groups)."""
    key = group_id if isinstance(group_id, str) else js_to_string(group_id)
    entry = groups.get(key)
    if isinstance(entry, (list, tuple)):
        return list(entry)
    if isinstance(entry, Mapping) and isinstance(entry.get("values"), (list, tuple)):
        return list(entry["values"])
    return []


def _group_factory(negated: bool) -> Callable[[Any, SavedGroups], ValueTest]:
    def factory(arg: Any, groups: SavedGroups) -> ValueTest:
        test = _membership_test(_group_values(groups, arg), False)
        return _negate(test) if negated else test

    return factory


def _regex_factory(ignore_case: bool) -> Callable[[Any, SavedGroups], ValueTest]:
    def factory(arg: Any, _: SavedGroups) -> ValueTest:
        if not isinstance(arg, str):
            return _false
        regex = compile_js_regex(arg, ignore_case)
        if regex is None:
            return _false
        test = regex.test
        # RegExp.prototype.test converts its argument to a string
        return lambda v: test(v if type(v) is str else js_to_string(v))

    return factory


_OPERATORS: dict[str, Callable[[Any, SavedGroups], ValueTest]] = {
    "$eq": _op_eq,
    "$ne": _op_ne,
    "$lt": _relational("$lt"),
    "$lte": _relational("$lte"),
    "$gt": _relational("$gt"),
    "$gte": _relational("$gte"),
    "$veq": _version_op("$veq"),
    "$vne": _version_op("$vne"),
    "$vgt": _version_op("$vgt"),
    "$vgte": _version_op("$vgte"),
    "$vlt": _version_op("$vlt"),
    "$vlte": _version_op("$vlte"),
    "$exists": _op_exists,
    "$type": _op_type,
    "$not": _op_not,
    "$size": _op_size,
    "$elemMatch": _op_elem_match,
    "$all": _all_factory(False),
    "$alli": _all_factory(True),
    "$in": _in_factory(False, False),
    "$nin": _in_factory(True, False),
    "$ini": _in_factory(False, True),
    "$nini": _in_factory(True, True),
    "$inGroup": _group_factory(False),
    "$notInGroup": _group_factory(True),
    "$regex": _regex_factory(False),
    "$regexi": _regex_factory(True),
}


# --------------------------------------------------------------------------
# Versions

_VERSION_STRIP = re.compile(r"^v|\+[^\n\r\u2028\u2029]*\Z")
_VERSION_SPLIT = re.compile(r"[-.]")


def padded_version_string(value: Any) -> str:
    """Normalize a version so that string order is version order.

    Build metadata and a leading ``v`` are dropped, numeric parts are padded
    to five characters and a release sorts after its pre-releases.

    >>> padded_version_string("v1.2.3+build") < padded_version_string("1.10.0-rc.1")
    True
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = js_number_to_string(value)
    if not isinstance(value, str) or not value:
        value = "0"
    return _padded(value)


@lru_cache(maxsize=4096)
def _padded(value: str) -> str:
    parts = _VERSION_SPLIT.split(_VERSION_STRIP.sub("", value))
    if len(parts) == 3:
        parts.append("~")  # "~" sorts after every pre-release tag
    return "-".join(p.rjust(5) if p.isdigit() and p.isascii() else p for p in parts)
