"""Typed values from a JSON text column, fast on DuckDB and the same everywhere.

Ibis' generic JSON access (``col.cast("json")["key"].str``) compiles on
DuckDB to ``CAST(col AS JSON)`` — a full parse *and* re-serialization of the
document — repeated for the type check and for the value. Over tens of
millions of events that dominates an experiment analysis. On DuckDB this
module extracts the field's JSON fragment with one ``json_extract`` (one
parse, no re-serialization) and types the small fragment; other backends use
Ibis' generic operations. The typing rules are Ibis' own on every backend: a
string field must be a JSON string, a number a JSON number (integers: digits
only), a boolean ``true``/``false``; anything else is NULL.

>>> import ibis
>>> t = ibis.memtable({"p": ['{"k": "a", "v": 2, "n": {"x": 1.5}}', '{"k": 3}']})
>>> f = JsonFields(t.p, "duckdb")
>>> t.select(k=f.text("k"), v=f.integer("v"), x=f.number("n.x")).to_pyarrow().to_pylist()
[{'k': 'a', 'v': 2, 'x': 1.5}, {'k': None, 'v': None, 'x': None}]
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import ibis
import ibis.expr.types as ir

from tailorkit.profile.sqlconditions import json_fragment

NUMBER_GROUP = r"^(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?)$"
DIGITS_GROUP = r"^([0-9]+)$"
#: strings whose JSON encoding is just the quoted text (nothing to escape)
PLAIN = re.compile(r"^[A-Za-z0-9 _.:/@+-]*$")


@ibis.udf.scalar.builtin(name="json_extract_string")
def _unquote(doc: str, path: str) -> str:  # type: ignore[empty-body]
    """DuckDB: a JSON string fragment's text."""


class JsonFields:
    """Typed accessors for dotted paths of one JSON text column."""

    def __init__(self, column: ir.StringValue, backend: str) -> None:
        self.column = column
        self.fast = backend == "duckdb"
        self._parsed = None if self.fast else column.cast("json")

    def _node(self, path: str) -> Any:
        node: Any = self._parsed
        for part in path.split("."):
            node = node[part]
        return node

    def _frag(self, path: str) -> ir.StringValue:
        frag: ir.StringValue = json_fragment(self.column, "$." + path)
        return frag

    def text(self, path: str) -> ir.StringValue:
        """The value if it is a JSON string, else NULL."""
        if not self.fast:
            value: ir.StringValue = self._node(path).str
            return value
        frag = self._frag(path)
        return ibis.ifelse(frag.startswith('"'), _unquote(frag, "$"), ibis.null("string"))

    def comparable(self, path: str, values: Sequence[str]) -> tuple[ir.StringValue, list[str]]:
        """A column and ``values`` encoded so that equality means "is that JSON string".

        On DuckDB the field's JSON fragment is compared with the quoted value
        (no unquoting per row) when the values need no escaping.

        >>> import ibis
        >>> t = ibis.memtable({"p": ['{"k": "a"}', '{"k": 1}', '{"k": "b"}']})
        >>> col, (a,) = JsonFields(t.p, "duckdb").comparable("k", ["a"])
        >>> a, t.select(hit=col == a).to_pyarrow().column("hit").to_pylist()
        ('"a"', [True, False, False])
        """
        if self.fast and all(PLAIN.match(v) for v in values):
            return self._frag(path), [json.dumps(v) for v in values]
        return self.text(path), list(values)

    def number(self, path: str) -> ir.FloatingValue:
        """The value if it is a JSON number, else NULL."""
        if not self.fast:
            number: ir.FloatingValue = self._node(path).float
            return number
        # one extraction: the regex keeps a number's text, anything else becomes ''
        text = self._frag(path).re_extract(NUMBER_GROUP, 1).nullif("")
        return text.cast("float64")

    def integer(self, path: str) -> ir.IntegerValue:
        """The value if it is a non-negative JSON integer, else NULL."""
        if not self.fast:
            integer: ir.IntegerValue = self._node(path).int
            return integer
        return self._frag(path).re_extract(DIGITS_GROUP, 1).nullif("").cast("int64")

    def boolean(self, path: str) -> ir.BooleanValue:
        """The value if it is a JSON boolean, else NULL."""
        if not self.fast:
            flag: ir.BooleanValue = self._node(path).bool
            return flag
        frag = self._frag(path)
        return ibis.cases((frag == "true", True), (frag == "false", False), else_=None)
