"""GrowthBook conditions compiled to Ibis boolean expressions (the batch side).

The online executor evaluates conditions with the reference evaluator,
:func:`tailorkit.evaluate.conditions.compile_condition`. The batch executor
must give the same answer inside the warehouse, so this module translates a
condition into one SQL boolean per row, reproducing the reference's
JavaScript semantics for JSON scalars:

* a value is split into typed *slots* (:class:`SqlValue`): number, string,
  boolean, array/object; a missing key and JSON ``null`` are both ``null``;
* plain values compare with JavaScript coercion (``{"n": 10}`` matches
  ``"10"``, ``null`` is 0 in ``$lt``/``$gt``), ``$eq``/``$ne`` are strict,
  ``$in``/``$nin`` compare by type;
* every leaf is ``COALESCE(..., FALSE)``, so SQL's three-valued logic never
  leaks into ``$not``/``$nor``.

What is not translated is refused when definitions load
(:class:`UnsupportedCondition`): ``$elemMatch``, ``$size``, ``$all``,
versions, saved groups, arrays or objects as literal values, array index
paths. Known departures (documented in ``docs/profiles.md``): array/object
*values* never match a leaf in batch; numeric strings are parsed by a decimal
pattern (no hex, no ``Infinity``); regular expressions run on the warehouse's
engine; ``$ini`` lower-cases with SQL ``lower``.

>>> import ibis
>>> t = ibis.table({"views": "int64"}, name="profiles")
>>> expr = compile_sql({"views": {"$gte": 3}}, lambda path: SqlValue(number=t[path]))
>>> "COALESCE" in ibis.to_sql(t.filter(expr), dialect="duckdb")
True
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce
from typing import Any

import ibis
import ibis.expr.types as ir

from tailorkit.evaluate.jsvalues import js_number_to_string, js_to_number, js_truthy
from tailorkit.evaluate.safe_regex import compile_js_regex

__all__ = [
    "Resolver",
    "SqlValue",
    "UnsupportedCondition",
    "compile_sql",
    "json_fragment",
    "json_value",
]

# A decimal number, as JavaScript's Number() reads it (hex and Infinity are left out).
# Only spaces around it: TRIM removes those, so the cast that follows cannot fail.
NUMERIC_TEXT = r"^ *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *$"
BLANK_TEXT = r"^\s*$"
PATH_PART = re.compile(r"^[A-Za-z_$@-][A-Za-z0-9_$@-]*$")
_TRUE = ibis.literal(True)
_FALSE = ibis.literal(False)


class UnsupportedCondition(ValueError):
    """A condition (part) the batch executor cannot translate; ``path`` says where."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}" if path else reason)


@dataclass(frozen=True)
class SqlValue:
    """One attribute as SQL sees it, split by JSON type.

    A slot is ``None`` when that type cannot occur (a typed column); otherwise
    it is non-null exactly when the value has that type. ``json_text`` is the
    JSON text of the value (only for JSON sources) and ``is_text`` says
    whether it is a string without unescaping it.
    """

    number: ir.NumericValue | None = None
    text: ir.StringValue | None = None
    flag: ir.BooleanValue | None = None
    json_text: ir.StringValue | None = None
    is_text: ir.BooleanValue | None = None

    def has(self, slot: ir.Value | None) -> ir.BooleanValue:
        """Whether the value has the type of ``slot``."""
        if slot is None:
            return _FALSE
        if slot is self.text and self.is_text is not None:
            return self.is_text
        return slot.notnull()

    @property
    def nested(self) -> ir.BooleanValue:
        """An array or object (only JSON sources have them)."""
        if self.json_text is None:
            return _FALSE
        head = self.json_text.substr(0, 1)
        return (head == "[") | (head == "{")

    @property
    def is_null(self) -> ir.BooleanValue:
        """Missing or JSON ``null``."""
        if self.json_text is not None:
            return self.json_text.isnull() | (self.json_text == "null")
        present = [self.has(s) for s in (self.number, self.text, self.flag)]
        return ~reduce(lambda a, b: a | b, present).fill_null(False)


Resolver = Callable[[str], SqlValue]
#: A JSON number, as JSON writes it.
JSON_NUMBER = r"^-?(0|[1-9][0-9]*)([.][0-9]+)?([eE][+-]?[0-9]+)?$"


@ibis.udf.scalar.builtin(name="json_extract")
def json_fragment(doc: str, path: str) -> str:  # type: ignore[empty-body]
    """DuckDB: the JSON text of the value at ``path`` (one parse of ``doc``, no cast to JSON)."""


def json_slots(node: Any) -> dict[str, ir.Value]:
    """Slot expressions of a JSON value: one extraction of its text feeds all but strings.

    ``j``: JSON text; ``n``: number; ``b``: boolean; ``t``: is a string;
    ``s``: the string itself (unescaped by a second extraction only if needed).
    """
    return text_slots(node.cast("string"), lambda: node.str)


def text_slots(j: ir.StringValue, unescaped: Callable[[], ir.StringValue]) -> dict[str, ir.Value]:
    """Slots derived from a value's JSON text ``j`` with string operations only."""
    is_text = j.substr(0, 1) == '"'
    # a string without escapes is its JSON text minus the quotes; others need a parse
    plain = is_text & ~j.contains("\\")
    return {
        "j": j,
        "n": ibis.cases((j.re_search(JSON_NUMBER), j.cast("float64")), else_=ibis.null("float64")),
        "b": ibis.cases((j == "true", True), (j == "false", False), else_=ibis.null("boolean")),
        "t": is_text,
        "s": ibis.cases(
            (plain, j.substr(1, j.length() - 2)), (is_text, unescaped()), else_=ibis.null("string")
        ),
    }


def json_value(column: ir.StringValue, path: str) -> SqlValue:
    """The slots of the value at dotted ``path`` inside a JSON-text column.

    >>> t = ibis.table({"properties": "string"}, name="events")
    >>> v = json_value(t.properties, "price")
    >>> v.number is not None and v.text is not None
    True
    """
    node: Any = column.cast("json")
    for part in path.split("."):
        node = node[part]
    slots = json_slots(node)
    return SqlValue(
        number=slots["n"],
        text=slots["s"],
        flag=slots["b"],
        json_text=slots["j"],
        is_text=slots["t"].fill_null(False),
    )


def check_path(path: str, where: str) -> None:
    """Refuse paths the warehouse cannot walk (array indexes, odd characters).

    >>> check_path("product.price", "where")
    >>> check_path("tags.0", "where")
    Traceback (most recent call last):
    ...
    tailorkit.profile.sqlconditions.UnsupportedCondition: where: path 'tags.0': use object keys \
of letters, digits, _ $ @ - (no indexes)
    """
    for part in path.split("."):
        if not PATH_PART.match(part) or part == "length":
            raise UnsupportedCondition(
                where, f"path {path!r}: use object keys of letters, digits, _ $ @ - (no indexes)"
            )


def compile_sql(condition: Any, resolve: Resolver, where: str = "") -> ir.BooleanValue:
    """Translate a condition into a non-null Ibis boolean over ``resolve``'d attributes.

    Raises :class:`UnsupportedCondition` naming the part it cannot translate.
    """
    if not isinstance(condition, Mapping):
        raise UnsupportedCondition(where, "a condition must be an object")
    if not where:
        _refuse_nul(condition, where)
    tests = [_entry(str(k), v, resolve, _join(where, str(k))) for k, v in condition.items()]
    return _all(tests)


def _refuse_nul(value: Any, where: str) -> None:
    """NUL characters cannot travel in SQL text (the parser stops there) and PostgreSQL
    cannot store them, so a condition holding one is refused rather than half-compiled."""
    if isinstance(value, str) and "\x00" in value:
        raise UnsupportedCondition(where, "NUL characters in strings are not supported")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_nul(str(key), where)
            _refuse_nul(item, _join(where, str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_nul(item, _join(where, str(i)))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _all(tests: list[ir.BooleanValue]) -> ir.BooleanValue:
    return reduce(lambda a, b: a & b, tests) if tests else _TRUE


def _any(tests: list[ir.BooleanValue]) -> ir.BooleanValue:
    return reduce(lambda a, b: a | b, tests) if tests else _FALSE


def _entry(key: str, value: Any, resolve: Resolver, where: str) -> ir.BooleanValue:
    if key in ("$or", "$nor", "$and"):
        if not isinstance(value, list):
            raise UnsupportedCondition(where, f"{key} needs a list of conditions")
        parts = [compile_sql(c, resolve, f"{where}.{i}") for i, c in enumerate(value)]
        if key == "$and":
            return _all(parts)
        either = _any(parts) if parts else _TRUE  # an empty $or is true, like the SDK
        return either if key == "$or" else ~either
    if key == "$not":
        return ~compile_sql(value, resolve, where)
    if key.startswith("$"):
        raise UnsupportedCondition(where, f"unknown logical operator {key}")
    return _value_test(value, resolve(key), where)


def _is_operator_object(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(str(k)[0:1] == "$" for k in value)


def _value_test(expected: Any, v: SqlValue, where: str) -> ir.BooleanValue:
    if isinstance(expected, str):
        return _equals_string(v, expected)
    if isinstance(expected, bool):
        return (~v.is_null) & (_truthy(v) if expected else ~_truthy(v))
    if isinstance(expected, int | float):
        return _relation(v, "==", float(expected))
    if expected is None:
        return v.is_null
    if _is_operator_object(expected):
        return _all(
            [_operator(str(op), arg, v, _join(where, str(op))) for op, arg in expected.items()]
        )
    raise UnsupportedCondition(where, "arrays and objects as values are not supported in batch")


# -- JavaScript coercions as SQL ------------------------------------------------


def _leaf(expr: ir.BooleanValue) -> ir.BooleanValue:
    return expr.fill_null(False)


def _parse_number(text: ir.StringValue) -> ir.FloatingValue:
    """JavaScript ``Number(text)`` for decimal text; NULL stands for NaN."""
    return ibis.cases(
        (text.re_search(BLANK_TEXT), ibis.literal(0.0)),
        (text.re_search(NUMERIC_TEXT), text.strip().cast("float64")),
        else_=ibis.null("float64"),
    )


def _to_number(v: SqlValue) -> ir.FloatingValue:
    """JavaScript's ``ToNumber``: null is 0, booleans are 0/1; NULL stands for NaN."""
    branches: list[tuple[ir.BooleanValue, ir.Value]] = []
    if v.number is not None:
        branches.append((v.has(v.number), v.number.cast("float64")))
    if v.flag is not None:
        branches.append((v.has(v.flag), ibis.cases((v.flag, 1.0), else_=0.0)))
    if v.text is not None:
        branches.append((v.has(v.text), _parse_number(v.text)))
    if v.json_text is not None:
        branches.append((v.nested, ibis.null("float64")))
    if not branches:
        return ibis.literal(0.0)
    return ibis.cases(*branches, else_=ibis.literal(0.0))


def _truthy(v: SqlValue) -> ir.BooleanValue:
    tests = [v.nested]
    if v.number is not None:
        tests.append(v.number != 0)
    if v.text is not None:
        tests.append(v.text != "")
    if v.flag is not None:
        tests.append(v.flag)
    return _leaf(_any(tests))


def _relation(v: SqlValue, op: str, arg: float) -> ir.BooleanValue:
    number = _to_number(v)
    compare: dict[str, Callable[[ir.NumericValue], ir.BooleanValue]] = {
        "==": lambda x: x == arg,
        "$lt": lambda x: x < arg,
        "$lte": lambda x: x <= arg,
        "$gt": lambda x: x > arg,
        "$gte": lambda x: x >= arg,
    }
    return _leaf(compare[op](number))


def _canonical_number(text: str) -> float | None:
    """The number whose JavaScript string form is ``text``, if any."""
    number = js_to_number(text)
    if math.isnan(number) or math.isinf(number):
        return None
    return number if js_number_to_string(number) == text else None


def _equals_string(v: SqlValue, expected: str) -> ir.BooleanValue:
    """JavaScript ``String(value) === expected``."""
    tests: list[ir.BooleanValue] = []
    if v.text is not None:
        tests.append(v.text == expected)
    if v.flag is not None and expected in ("true", "false"):
        tests.append(v.flag == (expected == "true"))
    number = _canonical_number(expected)
    if v.number is not None and number is not None:
        tests.append(v.number == number)
    if expected == "null":
        tests.append(v.is_null)
    return _leaf(_any(tests))


def _strict_equals(v: SqlValue, arg: Any) -> ir.BooleanValue:
    if arg is None:
        return v.is_null
    if isinstance(arg, bool):
        return _leaf(v.flag == arg) if v.flag is not None else _FALSE
    if isinstance(arg, int | float):
        return _leaf(v.number == arg) if v.number is not None else _FALSE
    if isinstance(arg, str):
        return _leaf(v.text == arg) if v.text is not None else _FALSE
    return _FALSE  # objects from separate documents are never === equal


# -- operators -------------------------------------------------------------------


def _operator(op: str, arg: Any, v: SqlValue, where: str) -> ir.BooleanValue:
    if op in ("$eq", "$ne"):
        if isinstance(arg, list | dict):
            raise UnsupportedCondition(where, f"{op} with an array or object")
        same = _strict_equals(v, arg)
        return same if op == "$eq" else ~same
    if op in ("$lt", "$lte", "$gt", "$gte"):
        return _ordering(op, arg, v, where)
    if op in ("$in", "$nin", "$ini", "$nini"):
        return _membership(op, arg, v, where)
    if op == "$exists":
        return ~v.is_null if js_truthy(arg) else v.is_null
    if op == "$type":
        return _type_is(v, arg)
    if op == "$not":
        return ~_value_test(arg, v, where)
    if op in ("$regex", "$regexi"):
        if not isinstance(arg, str):
            raise UnsupportedCondition(where, f"{op} needs a pattern string")
        return _regex(v, arg, op == "$regexi")
    raise UnsupportedCondition(where, f"operator {op} is not supported in batch")


def _regex(v: SqlValue, pattern: str, ignore_case: bool) -> ir.BooleanValue:
    """JavaScript ``RegExp.test(String(value))``; null and booleans are decided here."""
    regex = compile_js_regex(pattern, ignore_case)
    if regex is None:
        return _FALSE  # invalid or unsafe patterns never match, as in the evaluator
    sql_pattern = ("(?i)" + pattern) if ignore_case else pattern
    tests: list[ir.BooleanValue] = []
    if v.text is not None:
        tests.append(v.text.re_search(sql_pattern))
    if v.number is not None:
        # the number as text: JSON text for properties (canonical numbers only)
        text = v.json_text if v.json_text is not None else v.number.cast("string")
        tests.append(v.has(v.number) & text.re_search(sql_pattern))
    if v.flag is not None:
        if regex.test("true"):
            tests.append(v.flag)
        if regex.test("false"):
            tests.append(~v.flag)
    if regex.test("null"):
        tests.append(v.is_null)
    return _leaf(_any(tests))


def _ordering(op: str, arg: Any, v: SqlValue, where: str) -> ir.BooleanValue:
    if isinstance(arg, bool) or not isinstance(arg, int | float | str):
        raise UnsupportedCondition(where, f"{op} needs a number or a string")
    if isinstance(arg, int | float):
        return _relation(v, op, float(arg))
    as_number = js_to_number(arg)
    numeric = _FALSE if math.isnan(as_number) else _relation(v, op, as_number)
    if v.text is None:
        return numeric
    text = v.text
    strings = {
        "$lt": text < arg,
        "$lte": text <= arg,
        "$gt": text > arg,
        "$gte": text >= arg,
    }[op]
    # A string attribute compares as text; anything else as a number
    return _leaf(ibis.cases((v.has(text), strings), else_=numeric))


def _membership(op: str, arg: Any, v: SqlValue, where: str) -> ir.BooleanValue:
    if not isinstance(arg, list):
        raise UnsupportedCondition(where, f"{op} needs a list")
    insensitive = op in ("$ini", "$nini")
    strings = [a for a in arg if isinstance(a, str)]
    numbers = [a for a in arg if isinstance(a, int | float) and not isinstance(a, bool)]
    flags = [a for a in arg if isinstance(a, bool)]
    tests: list[ir.BooleanValue] = []
    if v.text is not None and strings:
        if insensitive:
            tests.append(v.text.lower().isin(sorted({s.lower() for s in strings})))
        else:
            tests.append(v.text.isin(strings))
    if v.number is not None and numbers:
        tests.append(v.number.isin(numbers))
    if v.flag is not None and flags:
        tests.append(v.flag.isin(flags))
    if any(a is None for a in arg):
        tests.append(v.is_null)
    found = _leaf(_any(tests))
    return ~found if op in ("$nin", "$nini") else found


def _type_is(v: SqlValue, arg: Any) -> ir.BooleanValue:
    if arg == "null":
        return v.is_null
    slots = {"number": v.number, "string": v.text, "boolean": v.flag}
    if arg in slots:
        return v.has(slots[arg])
    if arg in ("array", "object") and v.json_text is not None:
        return _leaf(v.json_text.substr(0, 1) == ("[" if arg == "array" else "{"))
    return _FALSE
