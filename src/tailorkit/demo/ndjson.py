"""Events tables as canonical event dicts and NDJSON, for HTTP and file ingestion tests.

The canonical event dict has the keys of the events table; ``properties``,
``context`` and ``consent`` are objects and ``timestamp`` is an ISO-8601 string
with offset (``2024-05-31T18:04:11.250000+00:00``). Both functions build the
JSON lines column-wise with Arrow, so writing millions of events stays fast,
and :func:`iter_event_dicts` parses exactly the lines :func:`write_ndjson` writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tailorkit.demo.strings import join

_BATCH_ROWS = 200_000


def _quoted(column: pa.Array) -> pa.Array:
    """JSON string values (the ids carry no characters that need escaping), or null."""
    return pc.fill_null(join('"', column, '"'), "null")


def _iso(column: pa.Array) -> pa.Array:
    utc = column.cast(pa.timestamp("us", tz="UTC"))
    return join(pc.strftime(utc, format="%Y-%m-%dT%H:%M:%S"), "+00:00")


def _lines(batch: pa.RecordBatch) -> pa.Array:
    """One JSON object per row, each followed by a newline."""
    col = batch.column
    return join(
        '{"event_id":', _quoted(col("event_id")), ',"type":', _quoted(col("type")),
        ',"user_id":', _quoted(col("user_id")), ',"anonymous_id":', _quoted(col("anonymous_id")),
        ',"timestamp":"', _iso(col("timestamp")),
        '","properties":', pc.fill_null(col("properties"), "null"),
        ',"context":', pc.fill_null(col("context"), "null"),
        ',"consent":', pc.fill_null(col("consent"), "null"), "}\n",
    )  # fmt: skip


def _text(lines: pa.Array) -> memoryview:
    """The concatenated characters of a string array, without copying them into Python."""
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    return memoryview(data)[bounds[0] : bounds[-1]]


def write_ndjson(table: pa.Table, path: str | Path) -> int:
    """Write an events table as NDJSON (one canonical event per line); returns the row count.

    >>> import tempfile
    >>> from tailorkit.demo import generate_shop
    >>> events = generate_shop(n_users=50, days=2, seed=1).events
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_ndjson(events, f"{tmp}/events.ndjson") == events.num_rows
    True
    """
    with open(path, "wb") as out:
        for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
            out.write(_text(_lines(batch)))
    return table.num_rows


def iter_event_dicts(table: pa.Table) -> Iterator[dict[str, Any]]:
    """Yield each row of an events table as a canonical event dict.

    >>> from tailorkit.demo import generate_shop
    >>> event = next(iter_event_dicts(generate_shop(n_users=50, days=2, seed=1).events))
    >>> sorted(event)[:3], event["timestamp"].endswith("+00:00")
    (['anonymous_id', 'consent', 'context'], True)
    """
    for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
        for line in _lines(batch).to_pylist():
            yield orjson.loads(line)
