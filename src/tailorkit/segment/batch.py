"""Batch executor for segments: membership as of any instant, sizes, overlap, history.

:func:`membership_table` compiles every segment condition (with
:mod:`tailorkit.profile.sqlconditions`) over the profile table of
:func:`tailorkit.profile.batch.profile_table` and applies exclusive groups:
a segment holds only if no higher-priority member of its group holds. The
result has one boolean column per segment, named by its key.

>>> import ibis
>>> from datetime import datetime, UTC
>>> from tailorkit.segment.definitions import parse_definitions
>>> d = parse_definitions({"features": {"views": {"count": {"events": ["page_view"]}}},
...     "segments": {"viewers": {"condition": {"views": {"$gte": 1}}}}})
>>> events = ibis.table({"person_id": "string", "type": "string", "event_id": "string",
...     "timestamp": "timestamp('UTC')", "properties": "string",
...     "personalization": "boolean"}, name="events")
>>> membership_table(d, events, datetime(2024, 6, 1, tzinfo=UTC)).columns
('person_id', 'viewers')
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from tailorkit.collect.quality import clean_events, flagged_users
from tailorkit.profile.batch import latest_scores, profile_rows, profile_table, scores_in
from tailorkit.profile.definitions import RFM_FEATURES, FeatureSet
from tailorkit.profile.materialized import (
    can_keep,
    can_refresh,
    fingerprint,
    profiles_now,
    read_kept_flags,
    refresh_state,
    stored_profiles,
)
from tailorkit.profile.sqlconditions import compile_sql
from tailorkit.profile.windows import to_us
from tailorkit.project.loader import QualitySettings
from tailorkit.segment.definitions import ENTERED, EXITED, Definitions, typed_value
from tailorkit.segment.online import Change, SegmentEngine
from tailorkit.store.warehouse import EVENTS, SEGMENT_SIZES, Warehouse

log = logging.getLogger(__name__)


def with_segments(definitions: Definitions, profiles: ir.Table) -> ir.Table:
    """``profiles`` plus one boolean column per segment (exclusive groups applied)."""
    features = definitions.features

    def resolve(name: str) -> Any:
        return typed_value(profiles, name, features.value_type(name))

    raw = {s.key: compile_sql(s.condition, resolve) for s in definitions.segments}
    final = dict(raw)
    for members in definitions.groups().values():
        for i, seg in enumerate(members):
            for better in members[:i]:
                final[seg.key] = final[seg.key] & ~raw[better.key]
    return profiles.mutate(**final)


def membership_table(
    definitions: Definitions, events: ir.Table, at: datetime, rows: ir.Table | None = None
) -> ir.Table:
    """``person_id`` and one boolean per segment, for every profiled person as of ``at``.

    ``rows``: :func:`tailorkit.profile.batch.profile_rows` of ``events``, if computed already.
    """
    return members_of(definitions, profile_table(definitions.features, events, at, rows=rows))


def members_of(definitions: Definitions, profiles: ir.Table) -> ir.Table:
    """``person_id`` and one boolean per segment (exclusive groups applied) of profiles."""
    keys = [s.key for s in definitions.segments]
    return with_segments(definitions, profiles).select("person_id", *keys)


def stored_membership(
    definitions: Definitions, wh: Warehouse, quality: QualitySettings, at: datetime
) -> ir.Table:
    """:func:`membership_table` of the clean events as of ``at``, from profiles kept in the store.

    The stored rows are brought to ``at`` first, recomputing only the
    persons that can have changed (:mod:`tailorkit.profile.materialized`);
    an instant before theirs is computed from scratch.
    """
    return members_of(definitions, profiles_now(wh, definitions.features, quality, at))


def _sizes_expr(
    definitions: Definitions, events: ir.Table, at: datetime, rows: ir.Table | None = None
) -> ir.Table:
    return _sizes_of(definitions, membership_table(definitions, events, at, rows))


def _sizes_of(definitions: Definitions, members: ir.Table) -> ir.Table:
    """One row: profiled persons and members per segment of a :func:`membership_table`."""
    # int32: PostgreSQL casts a boolean to integer, not to bigint (the sums are int64)
    sums = {s.key: members[s.key].cast("int32").sum() for s in definitions.segments}
    return members.aggregate(profiles=members.count(), **sums)


def sizes(definitions: Definitions, events: ir.Table, at: datetime) -> dict[str, int]:
    """Members per segment as of ``at`` (plus ``profiles``: profiled persons).

    >>> from datetime import UTC
    >>> from tailorkit.segment.definitions import parse_definitions
    >>> from tailorkit.segment.online import events_table
    >>> wh = Warehouse("duckdb://:memory:")
    >>> wh.insert(events_table([{"event_id": "e1", "type": "view", "user_id": "u1",
    ...     "timestamp": datetime(2024, 5, 1, tzinfo=UTC)}]))
    >>> d = parse_definitions({"features": {"views": {"count": {"events": ["view"]}}},
    ...     "segments": {"viewers": {"condition": {"views": {"$gte": 1}}}}})
    >>> sizes(d, wh.resolved_events(), datetime(2024, 5, 2, tzinfo=UTC))
    {'profiles': 1, 'viewers': 1}
    """
    row = _sizes_expr(definitions, events, at).to_pyarrow().to_pylist()[0]
    return {k: int(v or 0) for k, v in row.items()}


def overlap(definitions: Definitions, events: ir.Table, at: datetime) -> dict[str, dict[str, int]]:
    """Persons in both segments, for every pair (the diagonal is the size)."""
    return _overlap_of(definitions, membership_table(definitions, events, at))


def _overlap_of(definitions: Definitions, members: ir.Table) -> dict[str, dict[str, int]]:
    """:func:`overlap` of a :func:`membership_table`."""
    keys = [s.key for s in definitions.segments]
    pairs = {
        f"{a}\x1f{b}": (members[a] & members[b]).cast("int32").sum()
        for i, a in enumerate(keys)
        for b in keys[i:]
    }
    if not pairs:
        return {}
    row = members.aggregate(**pairs).to_pyarrow().to_pylist()[0]
    matrix: dict[str, dict[str, int]] = {a: {} for a in keys}
    for name, value in row.items():
        a, b = name.split("\x1f")
        matrix[a][b] = matrix[b][a] = int(value or 0)
    return matrix


def history_instants(at: datetime, days: int) -> list[datetime]:
    """The instants of a ``days``-day size history ending at ``at``: the ``days``
    midnights (UTC) before ``at``, oldest first, then ``at``.

    >>> from datetime import UTC
    >>> [t.isoformat() for t in history_instants(datetime(2024, 6, 3, 15, tzinfo=UTC), 2)]
    ['2024-06-02T00:00:00+00:00', '2024-06-03T00:00:00+00:00', '2024-06-03T15:00:00+00:00']
    >>> midnight = datetime(2024, 6, 3, tzinfo=UTC)
    >>> [t.day for t in history_instants(midnight, 2)], history_instants(midnight, 0)
    ([1, 2, 3], [])
    """
    if days <= 0:
        return []
    at = at.astimezone(UTC)
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    last = midnight if midnight < at else midnight - timedelta(days=1)
    return [last - timedelta(days=d) for d in range(days - 1, -1, -1)] + [at]


def size_history(
    definitions: Definitions,
    events: ir.Table,
    instants: list[datetime],
    rows: ir.Table | None = None,
) -> list[dict[str, Any]]:
    """Sizes as of each of ``instants``, oldest first (one query)."""
    if not instants:
        return []
    parts = [
        _sizes_expr(definitions, events, moment, rows).mutate(as_of=ibis.literal(moment))
        for moment in instants
    ]
    return _history_rows(ibis.union(*parts).order_by("as_of"))


def _history_rows(table: ir.Table) -> list[dict[str, Any]]:
    """Rows of sizes with ``as_of`` in ISO 8601; a sum over no profiles (NULL) is 0."""
    return [
        {k: v.isoformat() if k == "as_of" else int(v or 0) for k, v in row.items()}
        for row in table.to_pyarrow().to_pylist()
    ]


def report(
    definitions: Definitions,
    events: ir.Table,
    at: datetime,
    days: int = 14,
    members: ir.Table | None = None,
    recorded: tuple[Warehouse, QualitySettings] | None = None,
) -> dict[str, Any]:
    """Sizes, overlap, size over time and ``min_users`` flags: ``tailorkit segments``.

    The size history has a row for each of the ``days`` midnights (UTC)
    before ``at`` and one for ``at`` (:func:`history_instants`).
    ``members``: the membership as of ``at`` if known (e.g.
    :func:`stored_membership`), else computed from ``events``. ``recorded``:
    the store (and the cleaning rules of ``events``) whose recorded sizes of
    past midnights are used, and where those computed now are recorded
    (:func:`record_sizes`). The cleaned events with their parsed properties
    are computed once into a temporary table when the history needs them:
    every instant of it reads them (JSON parsing, the identity join and the
    flags were most of each instant's cost), and the membership as of ``at``
    is read once for sizes, overlap and the history's last row.
    """
    past = history_instants(at, days)[:-1]
    known = {} if recorded is None else recorded_sizes(recorded[0], definitions, recorded[1], past)
    missing = [moment for moment in past if moment not in known]
    with ExitStack() as stack:
        rows = None
        if missing or members is None:
            rows = stack.enter_context(_temporary(profile_rows(definitions.features, events)))
        if members is None:
            members = membership_table(definitions, events, at, rows)
        members = stack.enter_context(_temporary(members))
        last = _history_rows(_sizes_of(definitions, members).mutate(as_of=ibis.literal(at)))
        computed = size_history(definitions, events, missing, rows)
        counts = {k: int(v or 0) for k, v in last[0].items() if k != "as_of"}
        overlap_matrix = _overlap_of(definitions, members)
    if recorded is not None:
        try:
            record_sizes(recorded[0], definitions, recorded[1], computed)
        except Exception:  # the report stands; the next one computes them again
            log.exception("could not record the segment sizes of %d past days", len(computed))
    history = sorted([*known.values(), *computed], key=lambda row: row["as_of"])
    history += last if days else []
    segments = []
    for seg in definitions.segments:
        size = counts.get(seg.key, 0)
        below = size < seg.min_users
        segments.append(
            {
                "key": seg.key,
                "description": seg.description,
                "owner": seg.owner,
                "priority": seg.priority,
                "exclusive_group": seg.group,
                "size": size,
                "min_users": seg.min_users,
                "below_min_users": below,
                "targetable": seg.force or not below,
                "forced": seg.force,
            }
        )
    return {
        "as_of": at.isoformat(),
        "profiles": counts.get("profiles", 0),
        "segments": segments,
        "below_min_users": [s["key"] for s in segments if s["below_min_users"]],
        "overlap": overlap_matrix,
        "size_over_time": history,
    }


def stored_report(
    definitions: Definitions, wh: Warehouse, quality: QualitySettings, at: datetime, days: int
) -> dict[str, Any]:
    """:func:`report` of the clean events, the membership as of ``at`` from kept profiles
    (:func:`stored_membership`): ``tailorkit segments``, the admin API and the dashboard.

    The past days' sizes are recorded in and read from the store (:func:`record_sizes`)
    where :func:`~tailorkit.profile.materialized.can_keep`: a view of part of it (a
    training view) has other sizes.
    """
    members = stored_membership(definitions, wh, quality, at)
    recorded = (wh, quality) if can_keep(wh) else None
    return report(definitions, clean_events(wh, quality), at, days, members, recorded)


# -- recorded sizes of past days ---------------------------------------------------

#: A midnight's sizes are recorded once it is this far in the past: events of the
#: day before it that arrive late (a phone coming back online) are counted first.
SETTLE = timedelta(hours=1)
_SIZES_SCHEMA = pa.schema(
    [
        ("definitions", pa.string()),
        ("as_of", pa.timestamp("us", tz="UTC")),
        ("segment", pa.string()),
        ("size", pa.int64()),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
    ]
)
_RECORD_LOCK = threading.Lock()


def sizes_fingerprint(definitions: Definitions, quality: QualitySettings) -> str:
    """What sizes are computed with: features, conditions, groups and the cleaning rules.

    Descriptions, owners, ``min_users`` and webhooks do not change a size.

    >>> from tailorkit.segment.definitions import parse_definitions
    >>> doc = {"features": {"n": {"count": {}}}, "segments": {"s": {"condition": {"n": 1}}}}
    >>> a = sizes_fingerprint(parse_definitions(doc), QualitySettings())
    >>> doc["segments"]["s"]["description"] = "renamed"
    >>> a == sizes_fingerprint(parse_definitions(doc), QualitySettings())
    True
    >>> doc["segments"]["s"]["condition"] = {"n": 2}
    >>> a == sizes_fingerprint(parse_definitions(doc), QualitySettings())
    False
    """
    segments = [(s.key, s.condition, s.priority, s.group) for s in definitions.segments]
    text = repr((fingerprint(definitions.features), segments, quality))
    return hashlib.sha256(text.encode()).hexdigest()


def recorded_sizes(
    wh: Warehouse, definitions: Definitions, quality: QualitySettings, instants: list[datetime]
) -> dict[datetime, dict[str, Any]]:
    """History rows of ``instants`` recorded with the same definitions (:func:`record_sizes`)."""
    if not instants or SEGMENT_SIZES not in wh.con.list_tables():
        return {}
    table = wh.con.table(SEGMENT_SIZES)
    key = sizes_fingerprint(definitions, quality)
    found = table.filter(table.definitions == key, table.as_of.isin(instants))
    rows: dict[datetime, dict[str, Any]] = {}
    for row in found.order_by("recorded_at").to_pyarrow().to_pylist():
        moment = row["as_of"].astimezone(UTC)  # PostgreSQL answers in its session's zone
        rows.setdefault(moment, {"as_of": moment.isoformat()})[row["segment"]] = row["size"]
    wanted = ["profiles", *(s.key for s in definitions.segments)]
    return {m: r for m, r in rows.items() if all(k in r for k in wanted)}


def record_sizes(
    wh: Warehouse, definitions: Definitions, quality: QualitySettings, rows: list[dict[str, Any]]
) -> int:
    """Record history rows of settled midnights (older than :data:`SETTLE`); returns how many.

    Recorded sizes are read instead of computed again: the size of a past
    day is what was known once it settled, as in an audience-size chart,
    and does not change with a later merge, erasure or purge. Other
    definitions start another series.
    """
    now = datetime.now(UTC)
    settled = [r for r in rows if datetime.fromisoformat(r["as_of"]) <= now - SETTLE]
    if not settled:
        return 0
    key = sizes_fingerprint(definitions, quality)
    records = [
        {"definitions": key, "as_of": datetime.fromisoformat(r["as_of"]), "segment": name,
         "size": int(size or 0), "recorded_at": now}
        for r in settled for name, size in r.items() if name != "as_of"
    ]  # fmt: skip
    table = pa.Table.from_pylist(records, schema=_SIZES_SCHEMA)
    with _RECORD_LOCK, wh.transaction():
        wh.append(SEGMENT_SIZES, table)
    return len(settled)


@contextmanager
def _temporary(table: ir.Table) -> Iterator[ir.Table]:
    """``table`` computed once into a temporary table of its backend, dropped afterwards.

    An expression without a backend (unbound, as in examples) is used as it is.
    """
    try:
        con: Any = ibis.get_backend(table)
    except ibis.common.exceptions.IbisError:
        yield table
        return
    name = f"_tk_profile_rows_{uuid.uuid4().hex[:12]}"
    created = con.create_table(name, table, temp=True)
    try:
        yield created
    finally:
        con.drop_table(name, force=True)


# -- reading beside the writer ----------------------------------------------------


@contextmanager
def reader(warehouse: Warehouse) -> Iterator[Warehouse]:
    """The warehouse through a second connection, for long reads beside ingestion.

    The warehouse's own connection is shared with the collector's writer
    under a lock; a report holding that lock for seconds would stall
    ingestion. DuckDB serves a second connection to the same database
    (MVCC snapshot reads); other backends get a fresh connection.
    """
    if warehouse.backend == "duckdb":
        with warehouse.lock:
            cursor = warehouse.con.con.cursor()
        view = copy.copy(warehouse)
        view.con = ibis.duckdb.from_connection(cursor)
        view.lock = threading.RLock()
    else:
        view = Warehouse(warehouse.url)
    try:
        yield view
    finally:
        view.con.disconnect()


# -- batch -> online --------------------------------------------------------------


def refresh_online(
    engine: SegmentEngine, warehouse: Warehouse, quality: QualitySettings, at: datetime
) -> dict[str, int]:
    """Push what only batch can compute into the online profiles: flags, RFM, model scores."""
    features = engine.definitions.features
    with reader(warehouse) as view:
        flagged: set[str] = set()
        needed = quality.exclude_flagged_users or features.rfm is not None
        kept = needed and can_refresh(view, at)
        if kept:  # kept profiles: only the persons that changed are read
            refresh_state(view, features, at)
        kept_flagged = None  # read once, for the flagged set and the kept profiles
        if quality.exclude_flagged_users:
            if kept:
                kept_flagged = read_kept_flags(view, quality)
                flagged = set(kept_flagged["person_id"].to_pylist())
            else:
                flags = flagged_users(view, quality)
                flagged = set(view.con.to_pyarrow(flags.person_id).to_pylist())
        rows: dict[str, dict[str, Any]] = {}
        if features.rfm is not None:
            if kept:
                table = stored_profiles(view, features, quality, at, kept_flagged)
            else:
                table = profile_table(features, clean_events(view, quality), at)
            rfm = table.select("person_id", *RFM_FEATURES).filter(table.rfm_r.notnull())
            for row in rfm.to_pyarrow().to_pylist():
                rows[row.pop("person_id")] = row
        scored = model_score_rows(features, scores_in(view.con))
    for person, values in scored.items():
        rows.setdefault(person, {}).update(values)
    engine.advance_to(at)
    changes = len(engine.set_flagged(flagged))
    changes += len(engine.set_batch_features(rows))
    return {
        "flagged": len(flagged),
        "rfm_profiles": sum(1 for r in rows.values() if "rfm_r" in r),
        "scored_profiles": len(scored),
        "changes": changes,
    }


def model_score_rows(features: FeatureSet, scores: ir.Table) -> dict[str, dict[str, Any]]:
    """``{person: {feature: value}}`` of the ``model_score`` features, as batch reads them."""
    wanted = features.model_scores
    if not wanted:
        return {}
    names = sorted(set(wanted.values()))
    out: dict[str, dict[str, Any]] = {}
    for row in latest_scores(scores, names).to_pyarrow().to_pylist():
        values = {}
        for name, score in wanted.items():
            value = row[f"_ms_{score}"]
            if value is not None:
                values[name] = int(value) if features.value_type(name) == "int" else value
        if values:
            out[row["person_id"]] = values
    return out


def stored_events(warehouse: Warehouse) -> pa.Table:
    """Every stored event in time order, read whole (a snapshot to rebuild online state)."""
    with warehouse.lock:
        events = warehouse.con.table(EVENTS)
        # a fully read result: a streaming reader would hold the connection's pending query
        return warehouse.con.to_pyarrow(events.order_by([events.timestamp, events.event_id]))


def rebuild_online(
    engine: SegmentEngine,
    warehouse: Warehouse,
    until: datetime,
    on_changes: Callable[[list[Change]], None] | None = None,
    events: pa.Table | None = None,
    chunk: int = 50_000,
) -> int:
    """Replay the warehouse (or ``events``, a :func:`stored_events` snapshot) into ``engine``.

    Returns events read. The replay's membership changes go to ``on_changes``
    (by default nowhere: a restart must not report them again), not to the
    engine's own receiver.
    """
    table = stored_events(warehouse) if events is None else events
    report_to, engine.on_changes = engine.on_changes, on_changes
    try:
        for start in range(0, table.num_rows, chunk):
            engine.process(table.slice(start, chunk))
        engine.advance_to(to_us(until))
        return table.num_rows
    finally:
        engine.on_changes = report_to


def has_segment_events(warehouse: Warehouse) -> bool:
    """Whether any ``segment_entered``/``segment_exited`` event is stored."""
    with warehouse.lock:
        events = warehouse.con.table(EVENTS)
        found = events.filter(events.type.isin([ENTERED, EXITED])).limit(1).count()
        return bool(found.to_pyarrow().as_py())
