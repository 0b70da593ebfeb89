"""Vectorized validation, consent, clock-skew correction and PII pseudonymization.

One DuckDB query over the raw batch (see :mod:`tailorkit.collect.raw`) does
all per-event work for every source, so HTTP batches and bulk files follow the
same rules and bulk loads run at columnar speed. DuckDB is used here as an
in-process vectorized engine, independent of the warehouse backend.

PII: configured keys (``pii.fields``) in ``properties`` and ``context.traits``,
and trait keys (``pii.trait_fields``) in identify traits and ``context.traits``, are replaced by
HMAC-SHA256(key, value) as lowercase hex; ``context.ip`` is truncated (IPv4 to
/24, IPv6 to /48). HMAC is computed in SQL from two SHA-256 passes
(RFC 2104), which a test checks against Python's :mod:`hmac`.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tailorkit.collect.raw import RAW_SCHEMA
from tailorkit.project.loader import PiiSettings
from tailorkit.store.warehouse import EVENT_ARROW_SCHEMA, IDENTITY_SCHEMA

TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9_ .:/-]{0,63}$"
ID_MAX = 200
# ISO-8601 date-time with an explicit offset (Z or ±hh:mm / ±hhmm).
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|z|[+-]\d{2}:?\d{2})$"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_]+$")

REASONS = f"""
CASE
  WHEN _error IS NOT NULL THEN _error
  WHEN event_id IS NULL OR trim(event_id) = '' THEN 'event_id: required'
  WHEN length(event_id) > {ID_MAX} THEN 'event_id: longer than {ID_MAX} characters'
  WHEN type IS NULL OR type = '' THEN 'type: required'
  WHEN NOT regexp_full_match(type, '{TYPE_PATTERN}')
    THEN 'type: must start with a letter; letters, digits, space and _ . : / - (max 64)'
  WHEN coalesce(user_id, '') = '' AND coalesce(anonymous_id, '') = ''
    THEN 'user_id/anonymous_id: at least one is required'
  WHEN length(user_id) > {ID_MAX} OR length(anonymous_id) > {ID_MAX}
    THEN 'user_id/anonymous_id: longer than {ID_MAX} characters'
  WHEN contains(event_id || coalesce(user_id, '') || coalesce(anonymous_id, ''), chr(0))
    THEN 'event_id/user_id/anonymous_id: must not contain NUL characters'
  WHEN timestamp IS NULL THEN 'timestamp: required'
  WHEN NOT regexp_full_match(timestamp, '{TIMESTAMP_PATTERN}') OR _ts IS NULL
    THEN 'timestamp: must be ISO-8601 with a UTC offset, e.g. 2026-01-31T12:00:00Z'
  WHEN sent_at IS NOT NULL AND (NOT regexp_full_match(sent_at, '{TIMESTAMP_PATTERN}')
       OR _sent IS NULL) THEN 'sent_at: must be ISO-8601 with a UTC offset'
  WHEN properties IS NOT NULL AND coalesce(json_type(properties), '') <> 'OBJECT'
    THEN 'properties: must be an object'
  WHEN context IS NOT NULL AND coalesce(json_type(context), '') <> 'OBJECT'
    THEN 'context: must be an object'
  WHEN consent IS NOT NULL AND coalesce(json_type(consent), '') <> 'OBJECT'
    THEN 'consent: must be an object'
END
"""


@dataclass
class Validated:
    """Outcome of validating one raw batch; indexes refer to the raw ``_index``."""

    accepted: pa.Table
    accepted_index: list[int]
    rejected: list[tuple[int, str]] = field(default_factory=list)
    duplicate_index: list[int] = field(default_factory=list)
    consent_dropped: list[int] = field(default_factory=list)
    identities: pa.Table | None = None


def _hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def _hmac_sql(value: str) -> str:
    return f"sha256($opad || unhex(sha256($ipad || encode({value}))))"


def _pii_patch(column: str, path: str, keys: tuple[str, ...]) -> str:
    """A JSON merge patch replacing each PII key under ``path`` by its HMAC.

    Absent keys give ``null`` members, which a merge patch ignores, so one
    flat patch handles every key (no nesting, SQL size linear in the keys).
    """
    members = []
    for key in keys:
        if not _SAFE_KEY.match(key):  # the schema enforces this; never interpolate others
            raise ValueError(f"unsafe PII key {key!r}")
        value = f"json_extract_string({column}, '{path}.{key}')"
        members.append(f"'{key}', {_hmac_sql(value)}")
    return f"json_object({', '.join(members)})"


def _mentions(column: str, keys: tuple[str, ...]) -> str:
    """A cheap text pre-check: does the JSON text contain any of ``keys`` as a key?

    Most events carry no PII; skipping the JSON rewrite for them is what keeps
    bulk loads at columnar speed.
    """
    return f"""regexp_matches({column}, '"({"|".join(keys)})"\\s*:')"""


def _pii_sql(pii: PiiSettings) -> tuple[str, str]:
    """SQL expressions for pseudonymized ``properties`` and ``context``."""
    person_keys = pii.fields + pii.trait_fields
    everywhere = _pii_patch("properties", "$", pii.fields)
    as_traits = _pii_patch("properties", "$", person_keys)
    patch = f"CASE WHEN type IN ('identify', 'alias') THEN {as_traits} ELSE {everywhere} END"
    props = (
        f"CASE WHEN properties IS NULL THEN '{{}}' "
        f"WHEN NOT {_mentions('properties', person_keys)} THEN properties "
        f"ELSE json_merge_patch(properties, {patch})::VARCHAR END"
    )
    traits = _pii_patch("context", "$.traits", person_keys)
    ctx_keys = tuple(k for k in pii.fields if k != "ip" or not pii.truncate_ip)
    ctx = f"json_merge_patch(context, {_pii_patch('context', '$', ctx_keys)})"
    ctx = (
        f"CASE WHEN json_type(context, '$.traits') = 'OBJECT' "
        f"THEN json_merge_patch({ctx}, json_object('traits', {traits})) ELSE {ctx} END"
    )
    ctx = (
        f"CASE WHEN context IS NULL THEN '{{}}' "
        f"WHEN NOT {_mentions('context', (*ctx_keys, 'traits'))} THEN context "
        f"ELSE ({ctx})::VARCHAR END"
    )
    return props, ctx


# The IP is found once with a regex, truncated as a short string, and put back
# with a plain substring replace: no JSON parse of the whole context.
IP_SQL = r"""
CASE
  WHEN _ip = '' THEN ctx
  ELSE replace(ctx, '"' || _ip || '"', '"' || (CASE
    WHEN contains(_ip, ':') THEN regexp_extract(_ip, '^([0-9a-fA-F]*:){0,3}') || ':'
    ELSE regexp_replace(_ip, '\.\d+$', '.0') END) || '"')
END
"""
# Compact JSON (what our parsers write) is found with plain string search;
# other spacing falls back to a regex.
IP_FIND = r"""
CASE
  WHEN strpos(ctx, '"ip":"') > 0 THEN
    split_part(substr(ctx, strpos(ctx, '"ip":"') + 6), '"', 1)
  WHEN regexp_matches(ctx, '"ip"\s*:') THEN regexp_extract(ctx, '"ip"\s*:\s*"([^"]*)"', 1)
  ELSE ''
END
"""


class Validator:
    """Validate raw batches into storable events. Not thread-safe: one per thread.

        >>> from tailorkit.collect.raw import RAW_SCHEMA
    from tailorkit.project.loader import PiiSettings
        >>> v = Validator(PiiSettings(hmac_key="k" * 16))
    """

    def __init__(self, pii: PiiSettings) -> None:
        self.pii = pii
        self.db = duckdb.connect()
        self.db.execute("SET threads TO 1")
        self._threads = 1
        ipad, opad = _hmac_pads(pii.hmac_key.encode())
        self.params = {"ipad": ipad, "opad": opad}
        self.sql = self._build_sql()
        # Planning the validation query costs tens of milliseconds; HTTP batches
        # are small, so it is prepared once over a staging table and reused.
        self.db.execute(f"CREATE TEMP TABLE raw ({_raw_columns()})")
        self.db.execute(f"PREPARE validate_batch AS {self.sql}")

    def _build_sql(self) -> str:
        props, ctx = _pii_sql(self.pii)
        ip = IP_SQL if self.pii.truncate_ip else "ctx"
        return f"""
        WITH parsed AS (
          SELECT *, try_cast(timestamp AS TIMESTAMPTZ) AS _ts,
                 try_cast(sent_at AS TIMESTAMPTZ) AS _sent
          FROM raw
        ), checked AS (
          SELECT *, {REASONS} AS _reason FROM parsed
        ), pseudonymized AS (
          SELECT *, CASE WHEN _reason IS NULL THEN {ctx} END AS ctx FROM checked
        ), with_ip AS (
          SELECT *, {IP_FIND if self.pii.truncate_ip else "''"} AS _ip FROM pseudonymized
        )
        SELECT _index, _reason,
          coalesce(json_extract_string(consent, '$.analytics'), 'true') <> 'false' AS _analytics,
          event_id, type,
          nullif(user_id, '') AS user_id, nullif(anonymous_id, '') AS anonymous_id,
          (_ts + CASE WHEN _sent IS NULL THEN INTERVAL 0 SECOND ELSE $received - _sent END)
            AS timestamp,
          $received AS received_at,
          CASE WHEN _sent IS NULL THEN NULL
               ELSE epoch_ms($received) - epoch_ms(_sent) END AS clock_skew_ms,
          $source AS source,
          CASE WHEN _reason IS NULL THEN {props} END AS properties,
          {ip} AS context,
          coalesce(json_extract_string(consent, '$.personalization'), 'true') <> 'false'
            AS personalization
        FROM with_ip
        """

    def validate(self, raw: pa.Table, received_at: datetime, source: str) -> Validated:
        """Validate a raw batch; see the module docstring for what is done."""
        # Small (HTTP) batches run on one thread beside the server; bulk loads use all cores.
        threads = 1 if raw.num_rows < 50_000 else max(1, os.cpu_count() or 1)
        if threads != self._threads:
            self.db.execute(f"SET threads TO {threads}")
            self._threads = threads
        self.db.register("raw_in", raw)
        try:
            self.db.execute("DELETE FROM raw; INSERT INTO raw SELECT * FROM raw_in")
            # EXECUTE takes no bound parameters, so values go in as escaped literals.
            quoted_source = source.replace("'", "''")
            out = self.db.execute(
                f"EXECUTE validate_batch(ipad := from_hex('{self.params['ipad'].hex()}'), "
                f"opad := from_hex('{self.params['opad'].hex()}'), "
                f"received := '{received_at.isoformat()}'::TIMESTAMPTZ, "
                f"source := '{quoted_source}')"
            ).to_arrow_table()
        finally:
            self.db.unregister("raw_in")
        return _split(out)


def _raw_columns() -> str:
    types = {pa.int64(): "BIGINT", pa.string(): "VARCHAR"}
    return ", ".join(f'"{f.name}" {types[f.type]}' for f in RAW_SCHEMA)


def _split(out: pa.Table) -> Validated:
    """Sort the query result into rejected, in-batch duplicates, consent drops and accepted."""
    out = out.sort_by("_index")
    bad = pc.is_valid(out["_reason"])
    valid = out.filter(pc.invert(bad)).select(["event_id", "_index"])
    first = valid.group_by("event_id", use_threads=False).aggregate([("_index", "min")])
    dup = pc.and_(pc.invert(bad), pc.invert(pc.is_in(out["_index"], first["_index_min"])))
    dropped = pc.and_(
        pc.and_(pc.invert(bad), pc.invert(dup)), pc.invert(pc.fill_null(out["_analytics"], True))
    )
    keep = pc.invert(pc.or_(pc.or_(bad, dup), dropped))
    rejected_rows = out.filter(bad)
    accepted = out.filter(keep)
    result = Validated(
        accepted=_events(accepted),
        accepted_index=accepted["_index"].to_pylist(),
        rejected=list(
            zip(
                rejected_rows["_index"].to_pylist(),
                rejected_rows["_reason"].to_pylist(),
                strict=True,
            )
        ),
        duplicate_index=out.filter(dup)["_index"].to_pylist(),
        consent_dropped=out.filter(dropped)["_index"].to_pylist(),
    )
    result.identities = identities_from(result.accepted)
    return result


def _events(table: pa.Table) -> pa.Table:
    return table.select(EVENT_ARROW_SCHEMA.names).cast(EVENT_ARROW_SCHEMA)


def identities_from(events: pa.Table) -> pa.Table:
    """Identity merges carried by ``identify``/``alias`` events with both ids.

    For ``alias``, ``properties.previous_id`` (Segment's ``previousId``) is the
    merged id when present, else ``anonymous_id``. Few events are identity
    events, so they are picked out with Arrow and read in Python.
    """
    mask = pc.and_(
        pc.is_in(events["type"], pa.array(["identify", "alias"])), pc.is_valid(events["user_id"])
    )
    rows = events.filter(mask).select(
        ["type", "user_id", "anonymous_id", "properties", "received_at"]
    )
    merges = {}
    for row in rows.to_pylist():
        anonymous = row["anonymous_id"]
        if row["type"] == "alias":
            previous = orjson.loads(row["properties"] or "{}").get("previous_id")
            # a NUL cannot be stored in PostgreSQL text (the ids themselves were checked)
            usable = isinstance(previous, str) and previous and "\x00" not in previous
            anonymous = previous if usable else anonymous
        if anonymous:
            merges[(anonymous, row["user_id"])] = row["received_at"]
    data = [{"anonymous_id": a, "user_id": u, "merged_at": t} for (a, u), t in merges.items()]
    return pa.Table.from_pylist(data, schema=IDENTITY_SCHEMA.to_pyarrow())
