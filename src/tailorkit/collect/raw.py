"""Turn request bodies and files into the *raw batch*: one row per event, text columns.

The raw batch is the single input of the vectorized validator
(:mod:`tailorkit.collect.validate`), whatever the source: HTTP JSON, NDJSON,
Segment payloads, CSV or Parquet files. Problems found before validation
(not JSON, not an object, wrong JSON type, too deep, too large) are recorded
per row in ``_error`` so that the validator reports them with the row's index.
Parsed JSON items become raw batches through :mod:`tailorkit.collect.jsonlines`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import pyarrow as pa

from tailorkit.project.loader import Limits

ID_FIELDS = ("event_id", "type", "user_id", "anonymous_id", "timestamp", "sent_at")
JSON_FIELDS = ("properties", "context", "consent")
RAW_SCHEMA = pa.schema(
    [("_index", pa.int64()), ("_error", pa.string())]
    + [(name, pa.string()) for name in ID_FIELDS + JSON_FIELDS]
)


class PayloadError(ValueError):
    """The request as a whole is unusable; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def parse_body(body: bytes, content_type: str, limits: Limits) -> list[Any]:
    """Parse a JSON array, a single JSON object, or NDJSON into a list of items.

    A malformed NDJSON line becomes an :class:`Invalid` item so the other lines
    still count.

    >>> parse_body(b'[{"a": 1}]', "application/json", Limits())
    [{'a': 1}]
    >>> parse_body(b'{"a": 1}\\n{"b": 2}', "application/x-ndjson", Limits())
    [{'a': 1}, {'b': 2}]
    """
    if len(body) > limits.max_request_bytes:
        raise PayloadError(413, f"request body over {limits.max_request_bytes} bytes")
    stripped = body.strip()
    if "ndjson" in content_type or "jsonl" in content_type or _looks_ndjson(stripped):
        items: list[Any] = [_parse_line(line, n) for n, line in enumerate(stripped.splitlines())]
        items = [item for item in items if item is not _BLANK]
    else:
        try:
            doc = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(422, f"body is not valid JSON: {exc}") from exc
        if isinstance(doc, dict) and isinstance(doc.get("batch"), list):
            items = doc["batch"]
        else:
            items = doc if isinstance(doc, list) else [doc]
    if len(items) > limits.max_batch_events:
        raise PayloadError(413, f"{len(items)} events; at most {limits.max_batch_events}")
    return items


class Invalid:
    """An item known to be bad before validation (e.g. an NDJSON line that is
    not JSON), kept in place so its index is reported with the reason."""

    def __init__(self, message: str) -> None:
        self.message = message


_BLANK = object()


def _parse_line(line: bytes, n: int) -> Any:
    if not line.strip():
        return _BLANK
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return Invalid(f"line {n + 1}: not valid JSON ({exc})")


def _looks_ndjson(body: bytes) -> bool:
    return body.startswith(b"{") and b"\n{" in body


def depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping early once past ``limit``.

    >>> depth({"a": {"b": [1]}}, 10)
    3
    """
    if isinstance(value, dict):
        children: Iterable[Any] = value.values()
    elif isinstance(value, list):
        children = value
    else:
        return 0
    deepest = 0
    for child in children:
        # Only containers add depth; skipping scalars here keeps this cheap.
        if isinstance(child, dict | list):
            deepest = max(deepest, depth(child, limit - 1))
            if deepest >= limit:
                break
    return 1 + deepest


def raw_from_arrow(table: pa.Table, first_index: int = 0) -> pa.Table:
    """Build the raw batch from an Arrow table of events (columns named as in the model).

    ``timestamp``/``sent_at`` may be timestamp columns (rendered as ISO-8601 in
    UTC) or strings; JSON columns must already be JSON text.
    """

    n = table.num_rows
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "_index": pa.array(range(first_index, first_index + n), pa.int64()),
        "_error": pa.nulls(n, pa.string()),
    }
    for name in ID_FIELDS + JSON_FIELDS:
        if name not in table.column_names:
            columns[name] = pa.nulls(n, pa.string())
            continue
        column = table[name]
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("us", "UTC"))  # renders as "... hh:mm:ss.ffffffZ"
        columns[name] = column.cast(pa.string())
    return pa.table(columns, schema=RAW_SCHEMA)
