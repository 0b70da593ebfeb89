"""JSON lines → raw batch inside DuckDB, for files and HTTP bodies alike.

Field extraction and JSON type checks run as one columnar query, so the
per-event Python work on the hot path is a single ``orjson.dumps``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from tailorkit.collect.raw import ID_FIELDS, JSON_FIELDS, RAW_SCHEMA, Invalid, depth
from tailorkit.project.loader import Limits


def _string_checks(doc: str) -> str:
    checks = [
        f"WHEN json_type({doc}, '$.{name}') NOT IN ('VARCHAR', 'NULL') "
        f"THEN '{name}: must be a string'"
        for name in ID_FIELDS
    ] + [
        f"WHEN json_type({doc}, '$.{name}') NOT IN ('OBJECT', 'NULL') "
        f"THEN '{name}: must be an object'"
        for name in JSON_FIELDS
    ]
    return "\n".join(checks)


def ndjson_sql(limits: Limits) -> str:
    """Query turning ``$chunk`` (newline-separated JSON) into raw-batch rows."""
    fields = ", ".join(f"json_extract_string(doc, '$.{n}') AS {n}" for n in ID_FIELDS)
    objects = ", ".join(f"json_extract(doc, '$.{n}')::VARCHAR AS {n}" for n in JSON_FIELDS)
    return f"""
    WITH lines AS (
      SELECT unnest(string_split($chunk, chr(10))) AS line,
             unnest(generate_series(0, len(string_split($chunk, chr(10))) - 1)) AS _index
    ), docs AS (
      SELECT *, CASE WHEN json_valid(line) THEN line END AS doc FROM lines
    )
    SELECT _index,
      CASE
        WHEN length(line) > {limits.max_event_bytes}
          THEN 'event: over the limit of {limits.max_event_bytes} bytes'
        WHEN doc IS NULL THEN 'not valid JSON'
        WHEN json_type(doc) <> 'OBJECT' THEN 'event: must be a JSON object'
        {_string_checks("doc")}
      END AS _error,
      {fields}, {objects}
    FROM docs WHERE trim(line) <> ''
    """


class JsonLinesReader:
    """Runs :func:`ndjson_sql` on text chunks. Not thread-safe: one per thread."""

    def __init__(self, limits: Limits) -> None:
        self.db = duckdb.connect()
        self.db.execute("SET threads TO 1")
        self.sql = ndjson_sql(limits)

    def read(self, text: str) -> pa.Table:
        """Raw batch of the non-blank lines of ``text``; ``_index`` is the line index."""
        return self.db.execute(self.sql, {"chunk": text}).to_arrow_table().cast(RAW_SCHEMA)


@dataclass
class EncodedBatch:
    """Items of one request as JSON lines, plus errors found before SQL."""

    text: str
    count: int
    errors: dict[int, str] = field(default_factory=dict)


def _too_deep(item: dict[str, Any], line: bytes, limits: Limits) -> str | None:
    # A line with few brackets cannot be deep; only the rest is walked.
    if line.count(b"{") + line.count(b"[") <= limits.max_depth:
        return None
    for name in JSON_FIELDS:
        value = item.get(name)
        if isinstance(value, dict) and depth(value, limits.max_depth + 1) > limits.max_depth:
            return f"{name}: nested deeper than {limits.max_depth} levels"
    return None


def encode_items(items: list[Any], limits: Limits) -> EncodedBatch:
    """One JSON line per item (``null`` for unusable ones, with the reason kept).

    >>> encode_items([{"a": 1}, 5], Limits()).text
    '{"a":1}\\nnull'
    """
    lines: list[bytes] = []
    errors: dict[int, str] = {}
    for i, item in enumerate(items):
        if isinstance(item, Invalid):
            errors[i] = item.message
            lines.append(b"null")
            continue
        if not isinstance(item, dict):
            lines.append(b"null")  # the query answers "event: must be a JSON object"
            continue
        try:
            line = orjson.dumps(item)
        except orjson.JSONEncodeError as exc:  # Python callers: lone surrogates, huge ints
            errors[i] = f"event: not representable as JSON ({exc})"
            lines.append(b"null")
            continue
        deep = _too_deep(item, line, limits)
        if deep:
            errors[i] = deep
        lines.append(line)
    return EncodedBatch(b"\n".join(lines).decode(), len(items), errors)


def decode_batches(reader: JsonLinesReader, batches: list[EncodedBatch]) -> list[pa.Table]:
    """Raw batches for several encoded requests, read with one query."""
    if not batches:
        return []
    table = reader.read("\n".join(b.text for b in batches))
    out, offset = [], 0
    for batch in batches:
        part = table.slice(offset, batch.count)
        part = part.set_column(0, "_index", pa.array(range(batch.count), pa.int64()))
        if batch.errors:
            reasons = part["_error"].to_pylist()
            for index, reason in batch.errors.items():
                reasons[index] = reason
            part = part.set_column(1, "_error", pa.array(reasons, pa.string()))
        out.append(part)
        offset += batch.count
    assert offset == table.num_rows, "every item is one non-blank line"
    return out


_readers = threading.local()


def raw_from_items(items: list[Any], limits: Limits) -> pa.Table:
    """The raw batch of parsed JSON items, read now on this thread.

    The collector batches HTTP requests itself (:meth:`Collector.submit_items`);
    this is for code and tests that need one raw batch directly.

    >>> raw_from_items([{"event_id": "e1"}, 5], Limits())["_error"].to_pylist()
    [None, 'event: must be a JSON object']
    """
    readers: dict[Limits, JsonLinesReader] = _readers.__dict__.setdefault("by_limits", {})
    reader = readers.get(limits) or readers.setdefault(limits, JsonLinesReader(limits))
    (raw,) = decode_batches(reader, [encode_items(items, limits)])
    return raw
