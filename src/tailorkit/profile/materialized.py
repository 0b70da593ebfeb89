"""Profiles kept in the warehouse and brought forward person by person.

A batch from scratch (:func:`~tailorkit.profile.batch.profile_table`) reads
every event: tens of seconds at a million persons. Yet from one instant
``T0`` to a later ``T1`` a person's own row of
:func:`~tailorkit.profile.batch.person_aggregates` can change only if

* one of their events was stored since the row was written (by
  ``received_at``: late events included);
* one of their events has ``T0 < timestamp <= T1`` (it starts to count);
* one of their events leaves a window: ``window_start(T0, W) <= timestamp <
  window_start(T1, W)`` for a window ``W`` of the definitions;
* an identity merge since then moved events to or from them.

:func:`refresh_state` keeps those rows for every person in
``profile_state``, with a one-row ``profile_state_mark`` saying what they
are up to date with, and recomputes only such persons: a refresh minutes
later reads a few percent of the events. What the bot/outlier flags read is
kept the same way, per person (``profile_state_days``: events per day;
``profile_state_bots``: persons with a bot's agent). The steps that look
past one person run on every read, over the kept rows
(:func:`stored_profiles`): the flags (a median over everyone's days), then
RFM ranks, recency as of ``T1``, derived features, model scores
(:func:`~tailorkit.profile.batch.profiles_from`) and segments.

It falls back to a full recompute whenever it cannot prove the rows current:
no mark, other definitions, or events or identity merges deleted or stored
late (the count of rows received up to the mark's watermark changed: a
write committed more than :data:`GRACE` after its ``received_at``, or rows
deleted by hand). An erasure (:func:`erasing`) and a retention purge
(:func:`purging`) take what they delete out of the counts themselves: the
erased person's rows go with them, and the persons a purge took events from
are recomputed by the next refresh. An instant before the mark's is refused
(:func:`profiles_now` computes it from scratch, leaving the rows alone).

>>> from datetime import UTC, datetime
>>> from tailorkit.profile.definitions import parse_features
>>> from tailorkit.project.loader import QualitySettings
>>> from tailorkit.segment.online import events_table
>>> from tailorkit.store.warehouse import Warehouse
>>> wh = Warehouse("duckdb://:memory:")
>>> wh.insert(events_table([{"event_id": "e1", "type": "view", "user_id": "u1",
...     "timestamp": datetime(2024, 5, 1, tzinfo=UTC)}]))
>>> fs = parse_features({"features": {"views": {"count": {"events": ["view"]}}}})
>>> refresh_state(wh, fs, datetime(2024, 5, 2, tzinfo=UTC)).full
True
>>> refresh_state(wh, fs, datetime(2024, 5, 3, tzinfo=UTC))
Refresh(full=False, recomputed=1, reason='incremental')
>>> at = datetime(2024, 5, 3, tzinfo=UTC)
>>> stored_profiles(wh, fs, QualitySettings(), at).to_pyarrow().to_pylist()
[{'person_id': 'u1', 'views': 1}]
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.compute as pc

from tailorkit.collect.quality import (
    BOT_PATTERN,
    RULES_VERSION,
    SYSTEM_EVENT_TYPES,
    bot_persons,
    clean_events,
    daily_counts,
    flags_of,
)
from tailorkit.profile.batch import (
    person_aggregates,
    profile_table,
    profiles_from,
    scores_in,
)
from tailorkit.profile.definitions import Aggregate, FeatureSet
from tailorkit.profile.windows import window_start
from tailorkit.project.loader import QualitySettings
from tailorkit.store.warehouse import (
    KEPT_PROFILES,
    PROFILE_STATE,
    PROFILE_STATE_MARK,
    PROFILE_STATE_PURGED,
    Warehouse,
)

STATE, STATE_DAYS, STATE_BOTS = PROFILE_STATE
STATE_MARK = PROFILE_STATE_MARK
STATE_PURGED = PROFILE_STATE_PURGED
#: How long after its ``received_at`` an event may still be committed without forcing a
#: full recompute: the rows received in the last minute before a refresh are read again.
GRACE = timedelta(minutes=1)
#: Part of the mark: changing what a state row holds makes stored states stale.
VERSION = 1
# PostgreSQL advisory lock held while a refresh writes the state ("tkprof")
_PG_LOCK_KEY = 0x746B70726F66
#: The event columns the kept tables read (writing the others' values costs ~10 %)
_READ = ("person_id", "type", "timestamp", "event_id", "personalization", "properties", "context")
_PERSONS = pa.schema([pa.field("person_id", pa.string()), pa.field("stored", pa.bool_())])
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@dataclass(frozen=True)
class Mark:
    """What the stored rows are up to date with."""

    as_of: str  # ISO instant the rows are computed as of
    received: str | None  # every event received up to here is in the rows ...
    events: int  # ... and this many of them were stored then
    merged: str | None  # the same for identity merges
    identities: int
    definition: str  # fingerprint of the features and flag rules


_MARK_SCHEMA = pa.schema(
    {"as_of": pa.string(), "received": pa.string(), "events": pa.int64(),
     "merged": pa.string(), "identities": pa.int64(), "definition": pa.string()}
)  # fmt: skip


@dataclass(frozen=True)
class Refresh:
    """What one :func:`refresh_state` did."""

    full: bool  # recomputed every person (else only ``recomputed`` of them)
    recomputed: int  # persons whose rows were computed again (full: rows written)
    reason: str  # why a full recompute, or "incremental"


def refresh_state(wh: Warehouse, features: FeatureSet, at: datetime) -> Refresh:
    """Bring the kept rows to ``at``: recompute the persons that can have changed.

    Run it on a :func:`~tailorkit.segment.batch.reader` view beside
    ingestion. Raises ``ValueError`` for an ``at`` before the kept rows'
    instant (see :func:`can_refresh`).
    """
    with _exclusive(wh):
        old = _stored_mark(wh)
        new = _current_mark(wh, features, at)
        why = "no stored profiles" if old is None else _why_full(wh, old, new)
        if old is not None and not why and datetime.fromisoformat(old.as_of) > at:
            raise ValueError(f"the stored profiles are as of {old.as_of}, after {at.isoformat()}")
        persons = None if old is None or why else _changed_persons(wh, features, old, at)
        # one transaction: a reader beside sees the rows before or after, never a person
        # deleted and not yet written again; a crash leaves the previous rows and mark
        with wh.transaction():
            if persons is None:
                _write_all(wh, features, at)
                rows = int(wh.con.to_pyarrow(wh.con.table(STATE).count()).as_py())
                done = Refresh(True, rows, why)
            else:
                done = Refresh(False, _recompute(wh, features, at, persons), "incremental")
            _write_mark(wh, new)
            if STATE_PURGED in wh.con.list_tables():  # recomputed now
                wh.con.raw_sql(f'DELETE FROM "{STATE_PURGED}"')
        return done


def can_keep(wh: Warehouse) -> bool:
    """Whether rows derived from the whole store may be kept in it: on DuckDB and
    PostgreSQL (rewritten in one transaction), and for a whole store, not a view of
    part of it (its rows would be other ones)."""
    return wh.backend in ("duckdb", "postgres") and wh.complete


def can_refresh(wh: Warehouse, at: datetime) -> bool:
    """Whether :func:`refresh_state` may move the kept rows to ``at`` (none or older ones):
    where :func:`can_keep`."""
    if not can_keep(wh):
        return False
    old = _stored_mark(wh)
    return old is None or datetime.fromisoformat(old.as_of) <= at


def stored_profiles(
    wh: Warehouse,
    features: FeatureSet,
    quality: QualitySettings,
    at: datetime,
    flagged: pa.Table | None = None,
) -> ir.Table:
    """Profiles as of ``at`` from the rows :func:`refresh_state` brought to ``at``.

    The same rows as :func:`~tailorkit.profile.batch.profile_table` of
    :func:`~tailorkit.collect.quality.clean_events`: flagged persons are
    left out here, with flags computed from the kept days and bots
    (``flagged``: their ``person_id`` s when the caller read them already,
    :func:`read_kept_flags`).
    """
    rows = wh.con.table(STATE)
    if quality.exclude_flagged_users:
        if flagged is None:
            flagged = read_kept_flags(wh, quality)
        rows = rows.anti_join(ibis.memtable(flagged), "person_id")
    return profiles_from(features, rows, at, scores_in(wh.con))


def read_kept_flags(wh: Warehouse, quality: QualitySettings) -> pa.Table:
    """The persons (``person_id``) the bot/outlier flags of the kept rows flag, the same
    as a scan's, read into memory.

    Read once per read of the profiles: the ranks and the profiles both read
    the rows, and the engine would compute the medians behind the flags for each.
    """
    flags = flags_of(wh.con.table(STATE_BOTS), wh.con.table(STATE_DAYS), quality)
    return wh.con.to_pyarrow(flags.select("person_id").distinct())


def profiles_now(
    wh: Warehouse, features: FeatureSet, quality: QualitySettings, at: datetime
) -> ir.Table:
    """Profiles as of ``at``: from the kept rows brought forward where :func:`can_refresh`.

    Otherwise (a past instant, a view, Spark) from scratch.
    """
    if not can_refresh(wh, at):
        return profile_table(features, clean_events(wh, quality), at)
    refresh_state(wh, features, at)
    return stored_profiles(wh, features, quality, at)


# -- the mark ------------------------------------------------------------------------


def fingerprint(features: FeatureSet) -> str:
    """What the rows are computed with: a change makes the kept rows stale.

    >>> from tailorkit.profile.definitions import parse_features
    >>> views = parse_features({"features": {"views": {"count": {"events": ["view"]}}}})
    >>> buys = parse_features({"features": {"views": {"count": {"events": ["buy"]}}}})
    >>> fingerprint(views) == fingerprint(buys)
    False
    """
    text = repr((VERSION, RULES_VERSION, BOT_PATTERN, features))
    return hashlib.sha256(text.encode()).hexdigest()


def _current_mark(wh: Warehouse, features: FeatureSet, at: datetime) -> Mark:
    """The store's watermark now, read *before* the rows are computed.

    Rows received after it are read again by the next refresh, so rows
    arriving while this one computes are never missed.
    """
    ev, ids = wh.events, wh.identities
    latest = ev.aggregate(received=ev.received_at.max()).cross_join(
        ids.aggregate(merged=ids.merged_at.max())
    )
    row = wh.con.to_pyarrow(latest).to_pylist()[0]
    received = row["received"] - GRACE if row["received"] is not None else None
    merged = row["merged"] - GRACE if row["merged"] is not None else None
    events, identities = _counts(wh, received, merged)
    return Mark(
        as_of=at.isoformat(),
        received=received.isoformat() if received else None,
        events=events,
        merged=merged.isoformat() if merged else None,
        identities=identities,
        definition=fingerprint(features),
    )


def _counts(wh: Warehouse, received: datetime | None, merged: datetime | None) -> tuple[int, int]:
    """Events received and identities merged up to the given instants (0 for ``None``)."""
    ev, ids = wh.events, wh.identities
    never = ibis.literal(False)
    n_events = ev.count(where=ev.received_at <= received if received else never)
    n_ids = ids.count(where=ids.merged_at <= merged if merged else never)
    row = wh.con.to_pyarrow(ibis.memtable({"x": [0]}).select(e=n_events, i=n_ids)).to_pylist()
    return int(row[0]["e"]), int(row[0]["i"])


def _stored_mark(wh: Warehouse) -> Mark | None:
    tables = set(wh.con.list_tables())
    if not {*PROFILE_STATE, STATE_MARK} <= tables:
        return None
    rows = wh.con.to_pyarrow(wh.con.table(STATE_MARK)).to_pylist()
    try:
        return Mark(**rows[0]) if len(rows) == 1 else None
    except TypeError:  # a mark written by another version
        return None


@contextmanager
def erasing(wh: Warehouse) -> Iterator[Callable[[str, list[str], ir.Table], None]]:
    """Around the erasure of a person: yields ``forget(user_id, anonymous_ids, events)``,
    which takes their ``events`` and identity merges out of the mark's counts (call it
    holding ``wh.lock``, before deleting them).

    The erasure deletes the person's events, identity merges and kept rows
    (:data:`~tailorkit.store.warehouse.PERSON_TABLES`); no other person's row
    reads them, so once the counts agree the next refresh stays incremental
    instead of recomputing everyone (45 s at a million persons). The block
    holds the refresh lock (:func:`_exclusive`), taken before the store's
    lock, so no refresh counts in between and a refresh running meanwhile
    does not stall ingestion. An anonymous id also merged into another user
    (whose row read its events) leaves the counts alone: the next refresh
    recomputes everything.
    """
    with _exclusive(wh):
        yield partial(_forget, wh)


def _forget(wh: Warehouse, user_id: str, anonymous_ids: list[str], events: ir.Table) -> None:
    mark = _stored_mark(wh)
    if mark is None or mark.received is None:
        return
    ids = wh.identities
    if anonymous_ids:
        shared = ids.filter(ids.anonymous_id.isin(anonymous_ids) & (ids.user_id != user_id))
        if int(wh.con.to_pyarrow(shared.count()).as_py()):
            return
    _write_mark(wh, _without(wh, mark, events, ids.filter(ids.user_id == user_id)))


@contextmanager
def purging(wh: Warehouse) -> Iterator[Callable[[ir.Table], None]]:
    """Around a retention purge: yields ``forget(events)``, which notes the persons of
    the ``events`` about to be deleted in ``profile_state_purged`` (the next refresh
    recomputes them) and takes the events out of the mark's counts (call it holding
    ``wh.lock``, before deleting). Held as one refresh, like :func:`erasing`.
    """
    with _exclusive(wh):
        yield partial(_forget_purged, wh)


def _forget_purged(wh: Warehouse, events: ir.Table) -> None:
    mark = _stored_mark(wh)
    if mark is None or mark.received is None:
        return
    persons = wh.con.to_pyarrow(_persons(wh, [events.select("user_id", "anonymous_id")]))
    left = _without(wh, mark, events)
    with wh.transaction():
        wh.append(STATE_PURGED, persons)
        _write_mark(wh, left)


def _without(wh: Warehouse, mark: Mark, events: ir.Table, merges: ir.Table | None = None) -> Mark:
    """``mark`` with ``events`` and identity ``merges`` about to be deleted out of its counts
    (those received, or merged, up to its watermark)."""
    received = datetime.fromisoformat(mark.received or "")
    n_events = int(wh.con.to_pyarrow(events.count(where=events.received_at <= received)).as_py())
    n_ids = 0
    if merges is not None and mark.merged:
        merged = datetime.fromisoformat(mark.merged)
        n_ids = int(wh.con.to_pyarrow(merges.count(where=merges.merged_at <= merged)).as_py())
    return replace(mark, events=mark.events - n_events, identities=mark.identities - n_ids)


def _write_mark(wh: Warehouse, mark: Mark) -> None:
    table = pa.Table.from_pylist([asdict(mark)], schema=_MARK_SCHEMA)
    wh.con.create_table(STATE_MARK, table, overwrite=True)


def _why_full(wh: Warehouse, old: Mark, new: Mark) -> str:
    """Why the kept rows cannot be brought forward ("" when they can)."""
    if old.definition != new.definition:
        return "definitions changed"
    if old.received is None:
        return "no events stored before"
    received = datetime.fromisoformat(old.received)
    merged = datetime.fromisoformat(old.merged) if old.merged else None
    if _counts(wh, received, merged) != (old.events, old.identities):
        return "events or identity merges deleted or stored late"
    return ""


# -- incremental ---------------------------------------------------------------------


def _windows(features: FeatureSet) -> set[int]:
    found = {f.window for f in features.features.values() if isinstance(f, Aggregate)}
    if features.rfm is not None:
        found.add(features.rfm.window)
    return {w for w in found if w is not None}


def _changed_persons(wh: Warehouse, features: FeatureSet, old: Mark, at: datetime) -> pa.Table:
    """Every person whose row can differ between the mark's instant and ``at``.

    ``person_id``, and ``stored``: whether their stored events changed (new
    arrivals, identity merges) rather than only which of them count at ``at``.
    """
    t0, received = datetime.fromisoformat(old.as_of), datetime.fromisoformat(old.received or "")
    ev = wh.events
    # one filtered scan per range, not one scan with their disjunction: a single range is
    # checked inside the scan (on DuckDB against each row group's min and max first) before
    # any id is read; system events are kept (filtering them costs more than recomputing
    # the few persons who have nothing else in the ranges: they get no row, as before)
    ranges = [(ev.timestamp > t0) & (ev.timestamp <= at)]
    for minutes in sorted(_windows(features)):
        lo, hi = window_start(t0, minutes), window_start(at, minutes)
        if lo < hi:
            ranges.append((ev.timestamp >= lo) & (ev.timestamp < hi))
    # a merge since the mark moves the anonymous id's events to its (new) user
    ids = wh.identities
    since = ids if old.merged is None else ids.filter(ids.merged_at > old.merged)
    touched = ids.filter(ids.anonymous_id.isin(since.anonymous_id))
    stored = [
        _persons(wh, [ev.filter(ev.received_at > received).select("user_id", "anonymous_id")]),
        since.select(person_id=since.anonymous_id.cast("string")),
        touched.select(person_id=touched.user_id.cast("string")),
    ]
    if STATE_PURGED in wh.con.list_tables():  # persons a purge took events from
        purged = wh.con.table(STATE_PURGED)
        stored.append(purged.select(person_id=purged.person_id.cast("string")))
    timed = _persons(wh, [ev.filter(r).select("user_id", "anonymous_id") for r in ranges])
    changed = ibis.union(*stored, distinct=True).mutate(stored=True)
    both = ibis.union(changed, timed.mutate(stored=False))
    found = both.group_by("person_id").aggregate(stored=both.stored.any())
    return wh.con.to_pyarrow(found).cast(_PERSONS)


def _persons(wh: Warehouse, ids: list[ir.Table]) -> ir.Table:
    """Distinct ``person_id`` of raw id rows (``user_id``, ``anonymous_id``)."""
    return wh.resolve(ibis.union(*ids, distinct=True)).select("person_id")


def _kept_rows(features: FeatureSet, events: ir.Table, at: datetime) -> dict[str, ir.Table]:
    """Each kept table's rows for the persons of resolved ``events`` (all their events)."""
    own = events.filter(events.type.notin(sorted(SYSTEM_EVENT_TYPES)))
    return {
        STATE: person_aggregates(features, events, at),
        STATE_DAYS: daily_counts(own),
        STATE_BOTS: bot_persons(own),
    }


def _write_all(wh: Warehouse, features: FeatureSet, at: datetime) -> None:
    for name, rows in _kept_rows(features, wh.resolved_events(), at).items():
        wh.con.create_table(name, rows, overwrite=True)


def _recompute(wh: Warehouse, features: FeatureSet, at: datetime, persons: pa.Table) -> int:
    """Replace the kept rows of ``persons`` with their rows as of ``at``; returns how many persons.

    Their events are read once, into a temporary table. The flags' rows
    (days, bots) are replaced only for the persons whose stored events changed.
    """
    if not persons.num_rows:
        return 0
    name = f"_tk_changed_{uuid.uuid4().hex[:12]}"
    changed = wh.con.create_table(name, persons, temp=True)
    events = wh.resolved_events(persons=changed).select(*_READ)
    picked = wh.con.create_table(f"{name}_events", events, temp=True)
    try:
        for table, rows in _kept_rows(features, picked, at).items():
            which = "" if table == STATE else " WHERE stored"
            if which and not pc.any(persons["stored"]).as_py():
                continue
            if which:
                rows = rows.semi_join(changed.filter(changed.stored), "person_id")
            wh.con.raw_sql(
                f'DELETE FROM "{table}" WHERE person_id IN (SELECT person_id FROM "{name}"{which})'
            )
            wh.con.insert(table, rows.select(*wh.con.table(table).columns))
    finally:
        wh.con.drop_table(name, force=True)
        wh.con.drop_table(f"{name}_events", force=True)
    return persons.num_rows


@contextmanager
def _exclusive(wh: Warehouse) -> Iterator[None]:
    """One refresh at a time per store: in this process, and on PostgreSQL across processes.

    The advisory lock is tried, not waited for: a connection waiting in
    ``pg_advisory_lock`` is busy, and an erasure holds the writer's own.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(wh.url, threading.Lock())
    with lock:
        if wh.backend != "postgres":
            yield
            return
        raw: Any = wh.con.con
        while True:
            with raw.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (_PG_LOCK_KEY,))
                if cur.fetchone()[0]:
                    break
            time.sleep(0.05)
        try:
            yield
        finally:
            with raw.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (_PG_LOCK_KEY,))


__all__ = [
    "GRACE",
    "KEPT_PROFILES",
    "STATE",
    "Mark",
    "Refresh",
    "can_keep",
    "can_refresh",
    "fingerprint",
    "profiles_now",
    "read_kept_flags",
    "refresh_state",
    "stored_profiles",
]
