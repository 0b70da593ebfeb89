"""The decision log: every assignment the platform makes, with its propensity.

Decisions are ordinary events (``type = "exposure"``) in the events table, so
they are deduplicated, pseudonymized, erased and retained like any other
event, and experiment analysis and off-policy evaluation read them with the
same Ibis code as behavioural events.

``properties`` of an exposure event:

``kind``            ``experiment`` | ``feature`` | ``bandit`` | ``rule`` |
                    ``recommendation`` | ``default``
``key``             experiment, bandit or placement key
``variation``       chosen variation index (experiments) or arm index (bandits)
``variation_key``   variation/arm/content key
``propensity``      probability with which this variation/arm was chosen for this user
``hash_attribute``  attribute used for hashing (experiments), e.g. ``id``
``hash_value``      its value
``feature``         feature key, when the exposure came from a feature rule
``placement``       placement key, when the decision filled a placement
``segment``         segment/context the bandit used, when any
``features``        a linear bandit's feature values by name (its context), when any
``model_version``   model or policy version, when any
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tailorkit.store.warehouse import EVENT_ARROW_SCHEMA, IDENTITY_SCHEMA

if TYPE_CHECKING:
    from tailorkit.collect.pipeline import Collector
    from tailorkit.store.warehouse import Warehouse

EXPOSURE = "exposure"
KINDS = ("experiment", "feature", "bandit", "rule", "recommendation", "default")
_NO_MERGES = IDENTITY_SCHEMA.to_pyarrow().empty_table()  # built once: Ibis's conversion is slow


def exposure_event(
    *,
    kind: str,
    key: str,
    variation: int,
    propensity: float,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    variation_key: str | None = None,
    timestamp: datetime | None = None,
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build one exposure event in the canonical event shape (a new random id by default).

    >>> e = exposure_event(kind="bandit", key="hero", variation=2, propensity=0.4,
    ...                    user_id="u1", segment="mobile")
    >>> e["type"], e["properties"]["propensity"], e["properties"]["segment"]
    ('exposure', 0.4, 'mobile')
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if not 0.0 <= propensity <= 1.0:
        raise ValueError(f"propensity must be in [0, 1], not {propensity}")
    properties: dict[str, Any] = {
        "kind": kind,
        "key": key,
        "variation": variation,
        "variation_key": variation_key if variation_key is not None else str(variation),
        "propensity": propensity,
    }
    properties.update({k: v for k, v in extra.items() if v is not None})
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "type": EXPOSURE,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "timestamp": (timestamp or datetime.now(UTC)).isoformat(),
        "properties": properties,
    }


#: A decision-log event as it waits for its flush: event id, user id, anonymous id,
#: timestamp (ISO 8601) and properties (JSON). Only strings and bytes: the garbage
#: collector stops tracking such a tuple the first time it looks at it, while an
#: event dict holding a properties dict is scanned at every collection until the
#: flush (at 1,000 first-visit decides a second, young collections took 20 % less time).
ExposureRow = tuple[str, str | None, str | None, str, bytes]


def exposure_row(event: Mapping[str, Any], hidden: Collection[str] = ()) -> ExposureRow:
    """An exposure event (as :func:`exposure_event` builds it) as an :data:`ExposureRow`.

    The hash value of an experiment hashed on a personal attribute (in
    ``hidden``: ``pii.fields``, e.g. ``email``) is left out.

    >>> e = exposure_event(kind="experiment", key="t", variation=1, propensity=0.5,
    ...     user_id="u1", hash_attribute="email", hash_value="a@b.c", event_id="e1",
    ...     timestamp=datetime(2026, 1, 2, tzinfo=UTC))
    >>> row = exposure_row(e, hidden=("email",))
    >>> row[:4], orjson.loads(row[4])["hash_attribute"], "hash_value" in orjson.loads(row[4])
    (('e1', 'u1', None, '2026-01-02T00:00:00+00:00'), 'email', False)
    """
    props = event["properties"]
    if hidden and props.get("hash_attribute") in hidden and "hash_value" in props:
        props = {k: v for k, v in props.items() if k != "hash_value"}
    return (
        event["event_id"],
        event.get("user_id"),
        event.get("anonymous_id"),
        event["timestamp"],
        orjson.dumps(props),  # UTF-8 bytes: Arrow takes them as strings
    )


def exposures_table(rows: Sequence[ExposureRow], source: str, received: datetime) -> pa.Table:
    """Exposure rows as rows of the events table, without the HTTP path's checks.

    Decision-log events are built by tailorkit itself (by :func:`exposure_event`
    or in the same shape), so they skip the JSON round trip and the validator
    that events from outside go through.

    >>> e = exposure_event(kind="rule", key="hero", variation=1, propensity=1.0,
    ...                    user_id="u1", timestamp=datetime(2026, 1, 2, tzinfo=UTC))
    >>> t = exposures_table([exposure_row(e)], "decide", datetime(2026, 1, 2, 0, 0, 1, tzinfo=UTC))
    >>> t.num_rows, t["source"][0].as_py(), t["timestamp"][0].as_py().isoformat()
    (1, 'decide', '2026-01-02T00:00:00+00:00')
    """
    n = len(rows)
    schema = EVENT_ARROW_SCHEMA
    ids, users, anonymous, stamps, properties = zip(*rows, strict=True) if rows else ([],) * 5

    def same(name: str, value: Any) -> pa.Array:  # one value in every row, built by Arrow
        return pa.repeat(pa.scalar(value, schema.field(name).type), n)

    columns = {
        "event_id": pa.array(ids, pa.string()),
        "type": same("type", EXPOSURE),
        "user_id": pa.array(users, pa.string()),
        "anonymous_id": pa.array(anonymous, pa.string()),
        "timestamp": _timestamps(list(stamps)),
        "received_at": same("received_at", received),
        "clock_skew_ms": same("clock_skew_ms", None),
        "source": same("source", source),
        "properties": pa.array(properties, pa.string()),
        "context": same("context", None),
        "personalization": same("personalization", True),  # no consent: nothing is logged
    }
    return pa.Table.from_arrays(list(columns.values()), schema=schema)


def _timestamps(texts: list[str]) -> pa.Array:
    """ISO 8601 timestamps as UTC microseconds: Arrow parses those with a zone offset.

    >>> [t.isoformat() for t in _timestamps(["2026-01-02T03:00:00+02:00"]).to_pylist()]
    ['2026-01-02T01:00:00+00:00']
    >>> texts = ["2026-01-02T03:00:00+02:00", "2026-01-02T01:00:00"]  # the Python fallback
    >>> [t.isoformat() for t in _timestamps(texts).to_pylist()]
    ['2026-01-02T01:00:00+00:00', '2026-01-02T01:00:00+00:00']
    """
    kind = EVENT_ARROW_SCHEMA.field("timestamp").type
    try:
        return pa.array(texts, pa.string()).cast(kind)
    except pa.ArrowInvalid:  # no offset (taken as UTC), or finer than microseconds
        return pa.array([datetime.fromisoformat(t) for t in texts], kind)


class StoredToday:
    """The ids of one source's events stored each UTC day, kept by the store's only writer.

    The exposure log's ids are derived from the UTC day, so a flush can only
    repeat that day's events; asking the store scans every event stored that
    day, on every flush (20 ms at 1M events, 50 ms at 3M: a server logging
    all day would spend a core on it). Here a day's ids are read from the
    store once, then kept up to date with what is stored. An embedded DuckDB
    file admits one writing process, so nothing else adds to them; an
    erasure or a purge (:attr:`Warehouse.deletions`) makes the next check
    read them again. A day with more than ``max_ids`` stored is checked in
    the store, as without this. Ids stored under another source are not
    seen (only an import of exported exposures could repeat one).
    """

    def __init__(self, source: str, max_ids: int = 500_000) -> None:
        self.source = source
        self.max_ids = max_ids
        self._days: dict[date, set[str] | None] = {}  # None: too many, ask the store
        self._deletions = -1

    def stored(
        self, warehouse: Warehouse, ids: list[str], days: list[date]
    ) -> frozenset[str] | None:
        """Those of ``ids`` (of events of ``days``) already stored; ``None``: ask the store.

        Call it holding :meth:`Warehouse.exclusive`, then :meth:`add` what was stored.
        """
        if warehouse.deletions != self._deletions:
            self._days.clear()
            self._deletions = warehouse.deletions
        held: dict[date, set[str]] = {}
        for day in set(days):
            known = self._ids_of(warehouse, day)
            if known is None:
                return None
            held[day] = known
        return frozenset(i for i, day in zip(ids, days, strict=True) if i in held[day])

    def add(self, ids: list[str], days: list[date]) -> None:
        """Remember ids just stored."""
        for i, day in zip(ids, days, strict=True):
            known = self._days.get(day)
            if known is not None:
                known.add(i)
                if len(known) > self.max_ids:
                    self._days[day] = None

    def _ids_of(self, warehouse: Warehouse, day: date) -> set[str] | None:
        if day not in self._days:
            for old in [d for d in self._days if d < day - timedelta(days=1)]:
                del self._days[old]  # a flush spans at most today and yesterday
            start = datetime.combine(day, time(), UTC)
            ids = warehouse.event_ids(self.source, start, start + timedelta(days=1))
            self._days[day] = ids if len(ids) <= self.max_ids else None
        return self._days[day]


def store_exposures(
    collector: Collector,
    events: Sequence[Mapping[str, Any] | ExposureRow],
    source: str = "decide",
    fresh_ids: bool = False,
    daily_ids: bool = False,
    stored_today: StoredToday | None = None,
) -> int:
    """Store decision-log events now, or publish them to the event bus; returns how many.

    ``events``: dicts, or :data:`ExposureRow` s as
    :class:`~tailorkit.decide.service.ExposureLogger` queues them.

    One transaction with their ingest statistics; called from a background
    thread, never on the request path. Deduplicated against the store like any
    event unless ``fresh_ids`` says their ids are new random UUIDs (the
    decision engine's), which skips a scan of every stored id. ``daily_ids``
    says an id is derived from the UTC day of the event's timestamp (the
    exposure log's), so it can only repeat an event of that day: the check
    then looks at events from the start of the earliest event's day on,
    not at every stored id, or (with ``stored_today``, on DuckDB) at
    :class:`StoredToday`'s ids in memory.
    """
    from tailorkit.collect.pipeline import Part  # late: the pipeline imports much
    from tailorkit.collect.validate import Validated

    received = datetime.now(UTC)
    hidden = collector.settings.pii.fields
    rows = [e if isinstance(e, tuple) else exposure_row(e, hidden) for e in events]
    table = exposures_table(rows, source, received)
    part = Part(source, received, Validated(table, list(range(len(events))), identities=_NO_MERGES))
    if collector.publish is not None:
        collector.publish([part])
        return len(events)
    if daily_ids and stored_today is not None and collector.warehouse.backend == "duckdb":
        ids = table["event_id"].to_pylist()
        days = pc.cast(table["timestamp"], pa.date32()).to_pylist()
        with collector.warehouse.exclusive():
            known = stored_today.stored(collector.warehouse, ids, days)
            if known is not None:
                skipped = collector.store_parts([part], duplicates=known)
                stored_today.add(ids, days)
                return len(events) - len(skipped)
    since = _day_start(table["timestamp"]) if daily_ids and events else None
    return len(events) - len(collector.store_parts([part], dedup=not fresh_ids, dedup_since=since))


def _day_start(timestamps: pa.ChunkedArray) -> datetime:
    """Midnight UTC of the earliest timestamp.

    >>> _day_start(pa.chunked_array([[datetime(2026, 1, 2, 5, tzinfo=UTC)]]))
    datetime.datetime(2026, 1, 2, 0, 0, tzinfo=datetime.timezone.utc)
    """
    earliest = pc.min(timestamps).value  # microseconds since the epoch, UTC
    day = datetime.fromtimestamp(earliest // 1_000_000, UTC)
    return day.replace(hour=0, minute=0, second=0, microsecond=0)
