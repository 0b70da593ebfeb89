"""Where the official ``growthbook`` Python SDK (4.0.0) departs from the suite.

GrowthBook's cross-SDK suite and its JavaScript SDK are authoritative; the
Python SDK differs from them on a few classes of inputs.  The differential
test skips exactly those inputs and everything else must agree.  A class is
recognised from the input alone: its shape, and (for the coercion classes)
whether JavaScript's answer for the mismatched types differs from the fixed
answer the Python SDK gives them — never by comparing the two
implementations.  Each class, and why:

``relational-coercion``
    ``$lt $lte $gt $gte`` whose operands are not both numbers or both
    strings.  JavaScript coerces (``null < 10``, ``"8" > 5``); the Python SDK
    compares only number with number and string with string.  The suite's
    three evalCondition cases the Python SDK fails are in this class.
``loose-equality``
    A plain string, number or boolean condition value (also inside ``$all``,
    ``$alli``, ``$size``) against an attribute of another type.  JavaScript
    compares ``value + "" === "10"``, ``value * 1 === 10`` and
    ``!!value === true``; the Python SDK requires equal types.
``empty-object-value``
    ``{"attr": {}}``.  JavaScript compares ``JSON.stringify`` output (only
    ``{}`` matches); the Python SDK treats ``{}`` as an operator object with
    no operators (everything matches).
``regex-non-string``
    ``$regex``/``$regexi`` on a non-string attribute.  ``RegExp.test``
    converts ``null`` to ``"null"`` and ``5`` to ``"5"``; the Python SDK
    never matches.
``elem-match-falsy``
    ``$elemMatch`` over an array with ``0``, ``""`` or ``false`` elements,
    which JavaScript skips and the Python SDK tests.
``elem-match-logical``
    ``$elemMatch`` with a logical operator (``$or``...) as its only kind of
    key.  JavaScript treats it as an operator object (unknown operator:
    false); the Python SDK as a condition on each element.
``version-coercion``
    Version operators whose operands are not both strings or both numbers.
    JavaScript pads ``String(value)`` (``null`` becomes ``"0"``); the Python
    SDK returns false (true for ``$vne``).
``negated-unknown-operator``
    An unknown operator under ``$not``/``$nor``.  JavaScript evaluates the
    unknown operator to false, so its negation is true; the Python SDK
    propagates "undecided" and the whole condition fails.
``rollout-boundary``
    A percentage rollout where the user's hash equals the coverage exactly.
    JavaScript includes the user (``n <= coverage``); the Python SDK excludes
    them (``n < coverage``).
``sticky-fallback-merge`` (stored documents only; results are compared)
    Sticky-bucket documents exist for both the hash attribute and the
    fallback attribute.  The Python SDK merges the fallback document's
    assignments into the hash attribute's document object in place and
    persists them with its next write; JavaScript merges into a fresh object.

Not generated at all (documented, not tested): boolean or object hash
attribute values (JavaScript hashes ``"true"``; the Python SDK refuses),
negative or non-finite weights (the Python SDK falls back to equal weights,
JavaScript buckets on them), ``force: null`` rules (JavaScript forces
``null``; the Python SDK ignores the rule), forced variations on an
experiment rule whose condition fails (the Python SDK checks the condition
first), non-string saved-group ids, and the Python SDK's extensions
(``$savedGroup``, typed saved groups).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tailorkit.evaluate.conditions import padded_version_string
from tailorkit.evaluate.jsvalues import js_less_than, js_to_number, js_to_string, js_truthy
from tailorkit.evaluate.safe_regex import compile_js_regex

_LOGICAL = ("$or", "$nor", "$and", "$not")
_RELATIONAL = ("$lt", "$lte", "$gt", "$gte")
_VERSION = ("$veq", "$vne", "$vgt", "$vgte", "$vlt", "$vlte")
KNOWN_OPERATORS = frozenset(
    _RELATIONAL
    + _VERSION
    + (
        "$eq", "$ne", "$in", "$nin", "$ini", "$nini", "$all", "$alli", "$elemMatch",
        "$size", "$exists", "$type", "$regex", "$regexi", "$not", "$inGroup", "$notInGroup",
    )
)  # fmt: skip

CLASSES = (
    "relational-coercion",
    "loose-equality",
    "empty-object-value",
    "regex-non-string",
    "elem-match-falsy",
    "elem-match-logical",
    "version-coercion",
    "negated-unknown-operator",
    "rollout-boundary",
    "sticky-fallback-merge",
)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _get_path(obj: Any, path: str) -> Any:
    current = obj
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part == "length":
            current = len(current)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def _is_operator_object(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(k.startswith("$") for k in value)


def condition_classes(condition: Any, obj: Any, negated: bool = False) -> Iterator[str]:
    """The departure classes a condition falls into for one attribute document."""
    if not isinstance(condition, Mapping):
        return
    for key, value in condition.items():
        if key in ("$or", "$and", "$nor"):
            for sub in value if isinstance(value, list) else []:
                yield from condition_classes(sub, obj, negated or key == "$nor")
        elif key == "$not":
            yield from condition_classes(value, obj, True)
        else:
            yield from value_classes(value, _get_path(obj, key), negated)


def value_classes(expected: Any, actual: Any, negated: bool) -> Iterator[str]:
    """Departure classes of one ``evalConditionValue``."""
    if isinstance(expected, (str, bool, int, float)):
        if _kind(expected) != _kind(actual) and _loosely_equal(expected, actual):
            yield "loose-equality"
        return
    if isinstance(expected, Mapping) and not expected:
        yield "empty-object-value"
        return
    if not _is_operator_object(expected):
        return
    for op, arg in expected.items():
        yield from _operator_classes(op, arg, actual, negated)


def _loosely_equal(expected: Any, actual: Any) -> bool:
    """JavaScript's plain-value comparison (the SDK's ``evalConditionValue``)."""
    if isinstance(expected, str):
        return js_to_string(actual) == expected
    if isinstance(expected, bool):
        return actual is not None and js_truthy(actual) is expected
    return js_to_number(actual) == expected


def _js_relation(op: str, actual: Any, arg: Any) -> bool:
    if op == "$lt":
        return js_less_than(actual, arg) is True
    if op == "$gt":
        return js_less_than(arg, actual) is True
    if op == "$lte":
        return js_less_than(arg, actual) is False
    return js_less_than(actual, arg) is False


def _js_version(op: str, actual: Any, arg: Any) -> bool:
    a, b = padded_version_string(actual), padded_version_string(arg)
    return {
        "$veq": a == b, "$vne": a != b, "$vgt": a > b,
        "$vgte": a >= b, "$vlt": a < b, "$vlte": a <= b,
    }[op]  # fmt: skip


def _operator_classes(op: str, arg: Any, actual: Any, negated: bool) -> Iterator[str]:
    # Each class is flagged only where JavaScript's answer differs from the
    # fixed answer the Python SDK gives for mismatched types
    orderable = {_kind(arg), _kind(actual)} in ({"number"}, {"string"})
    if op in _RELATIONAL and not orderable and _js_relation(op, actual, arg):
        yield "relational-coercion"
    elif op in _VERSION and not orderable and _js_version(op, actual, arg) != (op == "$vne"):
        yield "version-coercion"
    elif op in ("$regex", "$regexi") and not isinstance(actual, str) and isinstance(arg, str):
        regex = compile_js_regex(arg, op == "$regexi")
        if regex is not None and regex.test(js_to_string(actual)):
            yield "regex-non-string"
    elif op == "$not":
        yield from value_classes(arg, actual, not negated)
    elif op == "$size" and isinstance(actual, list):
        yield from value_classes(arg, len(actual), negated)
    elif op in ("$all", "$alli") and isinstance(actual, list) and isinstance(arg, list):
        for item in arg:
            for element in actual:
                yield from value_classes(item, element, negated)
    elif op == "$elemMatch" and isinstance(actual, list):
        yield from _elem_match_classes(arg, actual, negated)
    elif op not in KNOWN_OPERATORS and negated:
        yield "negated-unknown-operator"


def _elem_match_classes(arg: Any, actual: list[Any], negated: bool) -> Iterator[str]:
    if any(isinstance(item, (bool, int, float, str)) and not item for item in actual):
        yield "elem-match-falsy"
    if _is_operator_object(arg) and any(k in _LOGICAL for k in arg):
        yield "elem-match-logical"
        return
    for item in actual:
        if _is_operator_object(arg):
            yield from value_classes(arg, item, negated)
        else:
            yield from condition_classes(arg, item, negated)
