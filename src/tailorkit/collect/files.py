"""Bulk files (NDJSON, CSV, Parquet) → raw batches, with line numbers.

Files are read by DuckDB, so parsing is columnar and a malformed line is a
row with an ``_error`` (its line number in the reason) rather than a failed
load. NDJSON chunks are split on newlines inside DuckDB so that every line,
blank or not, keeps its number.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from tailorkit.collect.jsonlines import JsonLinesReader
from tailorkit.collect.raw import ID_FIELDS, JSON_FIELDS, RAW_SCHEMA
from tailorkit.project.loader import Limits

CHUNK_BYTES = 64 * 1024 * 1024


@dataclass
class RawChunk:
    """A raw batch and the 1-based file line of its first row (``_index`` 0)."""

    raw: pa.Table
    first_line: int
    bytes_read: int


def _split_chunks(path: Path) -> Iterator[tuple[str, int, int]]:
    """Yield (text, first line number, bytes) pieces ending on a newline."""
    line = 1
    with path.open("rb") as handle:
        carry = b""
        while True:
            block = handle.read(CHUNK_BYTES)
            if not block:
                break
            block = carry + block
            cut = block.rfind(b"\n")
            if cut < 0:
                carry = block
                continue
            piece, carry = block[: cut + 1], block[cut + 1 :]
            yield _decode(piece), line, len(piece)
            line += piece.count(b"\n")
        if carry:
            yield _decode(carry), line, len(carry)


#: What a line with bytes that are not UTF-8 becomes: not JSON, so it is refused
#: with its line number (as over HTTP) instead of stored with U+FFFD in place.
_NOT_UTF8 = "\ufffd not UTF-8"


def _decode(piece: bytes) -> str:
    """UTF-8 text of whole lines; a line that is not UTF-8 is replaced by :data:`_NOT_UTF8`."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        lines = piece.split(b"\n")
        return "\n".join(_decode_line(raw) for raw in lines)


def _decode_line(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _NOT_UTF8


def read_ndjson(path: Path, limits: Limits) -> Iterator[RawChunk]:
    """Raw batches from an NDJSON file; ``_index`` counts lines within the chunk."""
    reader = JsonLinesReader(limits)
    for text, first_line, size in _split_chunks(path):
        yield RawChunk(reader.read(text), first_line, size)


def read_tabular(path: Path, limits: Limits) -> Iterator[RawChunk]:
    """Raw batches from a CSV or Parquet file (one row per event, header line 1)."""
    db = duckdb.connect()
    is_csv = path.suffix.lower() in (".csv", ".tsv")
    source = (
        "read_csv($path, all_varchar = true, header = true)" if is_csv else "read_parquet($path)"
    )
    columns = {
        row[0]: row[1]
        for row in db.execute(f"DESCRIBE SELECT * FROM {source}", {"path": str(path)}).fetchall()
    }
    exprs: dict[str, str] = {}
    for name in ID_FIELDS:
        exprs[name] = f'"{name}"::VARCHAR' if name in columns else "NULL::VARCHAR"
    for name in JSON_FIELDS:
        if name not in columns:
            exprs[name] = "NULL::VARCHAR"
        elif columns[name] == "VARCHAR":
            exprs[name] = f'"{name}"'
        else:
            exprs[name] = f'to_json("{name}")::VARCHAR'
    checks = " ".join(
        f"WHEN {exprs[n]} IS NOT NULL AND NOT json_valid({exprs[n]}) THEN '{n}: not valid JSON'"
        for n in JSON_FIELDS
        if n in columns
    )
    error = f"CASE {checks} END" if checks else "NULL::VARCHAR"
    select = ", ".join(f"{expr} AS {name}" for name, expr in exprs.items())
    sql = f"""
    SELECT (row_number() OVER () - 1)::BIGINT AS _index, {error} AS _error, {select}
    FROM {source}
    """
    table = db.execute(sql, {"path": str(path)}).to_arrow_table().cast(RAW_SCHEMA)
    first_line = 2 if is_csv else 1
    step = 500_000
    for start in range(0, max(table.num_rows, 1), step):
        part = table.slice(start, step)
        yield RawChunk(
            part, first_line + start, path.stat().st_size * part.num_rows // max(table.num_rows, 1)
        )


def read_file(path: Path, limits: Limits) -> Iterator[RawChunk]:
    """Raw batches from any supported file, chosen by extension."""
    suffix = path.suffix.lower()
    if suffix in (".ndjson", ".jsonl", ".json"):
        return read_ndjson(path, limits)
    if suffix in (".csv", ".tsv", ".parquet", ".pq"):
        return read_tabular(path, limits)
    raise ValueError(f"{path}: unsupported file type {suffix!r} (ndjson, jsonl, csv, parquet)")
