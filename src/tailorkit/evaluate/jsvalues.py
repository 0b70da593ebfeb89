"""JavaScript value semantics for JSON-shaped Python values.

GrowthBook's cross-SDK suite follows the JavaScript SDK, which compares and
coerces values the way JavaScript does (``null < 10`` and ``"8" > 5`` are
true, ``{"n": 10}`` matches the string ``"10"``).  This module is the single
place where tailorkit reproduces those rules for Python values that came from
JSON: ``None`` is ``null``, ``bool`` is boolean, ``int``/``float`` are
numbers, ``str`` is a string, ``list``/``tuple`` are arrays and ``dict`` is an
object.  Other Python types are treated as opaque objects.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = [
    "js_json",
    "js_less_than",
    "js_number_to_string",
    "js_str_compare",
    "js_to_number",
    "js_to_string",
    "js_truthy",
    "js_type",
]

# ECMAScript WhiteSpace and LineTerminator code points (trimmed by Number("..."))
JS_WHITESPACE = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)")
_RADIX = {"x": (16, re.compile(r"[0-9a-fA-F]+")), "o": (8, re.compile(r"[0-7]+")),
          "b": (2, re.compile(r"[01]+"))}  # fmt: skip
_NAN = float("nan")
_MAX_SAFE = 2**53


def js_truthy(value: Any) -> bool:
    """Return JavaScript truthiness (``[]`` and ``{}`` are truthy, ``NaN`` is not).

    >>> [js_truthy(v) for v in (0, "", None, [], {}, "0")]
    [False, False, False, True, True, True]
    """
    if value is None or value is False or value is True:
        return value is True
    if isinstance(value, (int, float)):
        return value != 0 and value == value
    if isinstance(value, str):
        return value != ""
    return True


def js_type(value: Any) -> str:
    """Return the GrowthBook ``$type`` name of a value.

    >>> [js_type(v) for v in (None, True, 1.5, "a", [1], {"a": 1})]
    ['null', 'boolean', 'number', 'string', 'array', 'object']
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "unknown"


def js_number_to_string(value: float) -> str:
    """Format a number like JavaScript's ``String(number)``.

    >>> [js_number_to_string(v) for v in (5.0, 0.1, 1e21, 1.5e-7, -0.0, 2**60)]
    ['5', '0.1', '1e+21', '1.5e-7', '0', '1152921504606847000']
    """
    if isinstance(value, int) and -_MAX_SAFE < value < _MAX_SAFE:
        return str(int(value))
    try:
        x = float(value)
    except OverflowError:
        x = math.inf if value > 0 else -math.inf
    if x != x:
        return "NaN"
    if x == 0:
        return "0"
    if x < 0:
        return "-" + js_number_to_string(-x)
    if x == math.inf:
        return "Infinity"
    if x.is_integer() and x < _MAX_SAFE:
        return str(int(x))
    return _format_shortest(x)


def _format_shortest(x: float) -> str:
    """Lay out the shortest round-trip digits of ``x`` as ECMAScript does."""
    # repr gives the shortest round-trip digits, e.g. "1.5e-07" or "0.001"
    mantissa, _, exp = repr(x).partition("e")
    whole, _, fraction = mantissa.partition(".")
    if fraction == "0":
        fraction = ""
    padded = (whole + fraction).lstrip("0")
    digits = padded.rstrip("0")
    k = len(digits)
    # x = 0.d1..dk * 10**n
    n = int(exp or "0") - len(fraction) + len(padded)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return head + "e" + ("+" if n > 0 else "-") + str(abs(n - 1))


def js_to_string(value: Any) -> str:
    """Convert a value to a string like JavaScript's ``value + ""``.

    >>> [js_to_string(v) for v in (None, True, 10.0, [1, None, "a"], {"a": 1})]
    ['null', 'true', '10', '1,,a', '[object Object]']
    """
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return js_number_to_string(value)
    if isinstance(value, (list, tuple)):
        return ",".join("" if v is None else js_to_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def _string_to_number(text: str) -> float:
    """JavaScript ``Number(string)``: decimal, Infinity and 0x/0o/0b literals."""
    s = text.strip(JS_WHITESPACE)
    if not s:
        return 0.0
    if _DECIMAL.fullmatch(s):
        return float(s)
    if len(s) > 2 and s[0] == "0" and s[1] in "xXoObB":
        base, digits = _RADIX[s[1].lower()]
        if digits.fullmatch(s, 2):
            return float(int(s[2:], base))
    return _NAN


def js_to_number(value: Any) -> float:
    """Convert a value to a number like JavaScript's ``value * 1``.

    >>> [js_to_number(v) for v in (None, True, " 12 ", "0x10", [5], "abc")]
    [0.0, 1.0, 12.0, 16.0, 5.0, nan]
    """
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if value is None:
        return 0.0
    if isinstance(value, str):
        return _string_to_number(value)
    if isinstance(value, (list, tuple)):
        return _string_to_number(js_to_string(value))
    return _NAN


def js_str_compare(a: str, b: str) -> int:
    """Compare two strings by UTF-16 code units, as JavaScript does.

    >>> js_str_compare("\\U0001F600", "\\uffff")  # a surrogate pair sorts first
    -1
    """
    if not (a.isascii() and b.isascii()):
        # Big-endian UTF-16 bytes compare in code-unit order
        a_units = a.encode("utf-16-be", "surrogatepass")
        b_units = b.encode("utf-16-be", "surrogatepass")
        return (a_units > b_units) - (a_units < b_units)
    return (a > b) - (a < b)


def _to_primitive(value: Any) -> Any:
    """ToPrimitive for JSON values: arrays and objects become strings."""
    if isinstance(value, (list, tuple, dict)):
        return js_to_string(value)
    return value


def js_less_than(a: Any, b: Any) -> bool | None:
    """JavaScript's abstract relational comparison ``a < b``.

    Returns ``None`` for "undefined" (a NaN was involved), which makes every
    relational operator false.

    >>> js_less_than(None, 10), js_less_than("5", 8), js_less_than("abc", 1)
    (True, True, None)
    """
    pa = _to_primitive(a)
    pb = _to_primitive(b)
    if isinstance(pa, str) and isinstance(pb, str):
        return js_str_compare(pa, pb) < 0
    na = js_to_number(pa)
    nb = js_to_number(pb)
    if na != na or nb != nb:
        return None
    return na < nb


def _js_keys(obj: dict[Any, Any]) -> list[Any]:
    """Object keys in JavaScript property order: integer-like keys first."""
    index_keys = []
    other_keys = []
    for key in obj:
        text = key if isinstance(key, str) else js_to_string(key)
        canonical = text.isdigit() and text.isascii() and (text == "0" or text[0] != "0")
        if canonical and int(text) < 2**32 - 1:
            index_keys.append(key)
            continue
        other_keys.append(key)
    if not index_keys:
        return other_keys
    index_keys.sort(key=lambda k: int(k if isinstance(k, str) else js_to_string(k)))
    return index_keys + other_keys


def js_json(value: Any) -> str:
    """Serialize like ``JSON.stringify`` closely enough to compare for equality.

    Equal outputs mean ``JSON.stringify`` would produce equal outputs: numbers
    are written as JavaScript writes them, ``NaN``/``Infinity`` become ``null``
    and object keys follow JavaScript property order.

    >>> js_json({"b": [1.0, None], "2": True, "1": "x"})
    '{"1":"x","2":true,"b":[1,null]}'
    """
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        text = js_number_to_string(value)
        return "null" if text in ("NaN", "Infinity", "-Infinity") else text
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(js_json(v) for v in value) + "]"
    if isinstance(value, dict):
        parts = [
            js_json(k if isinstance(k, str) else js_to_string(k)) + ":" + js_json(value[k])
            for k in _js_keys(value)
        ]
        return "{" + ",".join(parts) + "}"
    return json.dumps(str(value))
