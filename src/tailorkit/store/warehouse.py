"""The warehouse: events and identities in any Ibis backend.

DuckDB (a file in the project folder) is the embedded default; PostgreSQL and
other Ibis backends are reached by URL. Every query is an Ibis expression so
the same code runs on each backend; only connection set-up differs.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.parquet as pq
import sqlglot

EVENTS = "events"
IDENTITIES = "identities"
INGEST_STATS = "ingest_stats"
#: Stored bot/outlier flags and their watermark (written by ``tailorkit.collect.quality``)
FLAGGED_USERS = "flagged_users"
PROFILE_SCORES = "profile_scores"  # written by tailorkit.learn.scores
#: Per-person rows kept for batch profiles (written by ``tailorkit.profile.materialized``)
PROFILE_STATE = ("profile_state", "profile_state_days", "profile_state_bots")
PROFILE_STATE_MARK = "profile_state_mark"  # what they are up to date with
PROFILE_STATE_PURGED = "profile_state_purged"  # persons a purge took events from
#: Every table the kept profiles use
KEPT_PROFILES = (*PROFILE_STATE, PROFILE_STATE_MARK, PROFILE_STATE_PURGED)
#: Recorded segment sizes of past days (written by ``tailorkit.segment.batch``)
SEGMENT_SIZES = "segment_sizes"
#: Derived tables keyed by ``person_id``: erasure deletes the person's rows there too.
PERSON_TABLES = (FLAGGED_USERS, PROFILE_SCORES, *PROFILE_STATE, PROFILE_STATE_PURGED)
FLAGS_STATE = "flagged_users_state"

EVENT_SCHEMA = ibis.schema(
    {
        "event_id": "!string",
        "type": "!string",
        "user_id": "string",
        "anonymous_id": "string",
        "timestamp": "!timestamp('UTC')",
        "received_at": "!timestamp('UTC')",
        "clock_skew_ms": "int64",
        "source": "!string",
        "properties": "string",
        "context": "string",
        "personalization": "!boolean",
    }
)
IDENTITY_SCHEMA = ibis.schema(
    {"anonymous_id": "!string", "user_id": "!string", "merged_at": "!timestamp('UTC')"}
)
INGEST_STATS_SCHEMA = ibis.schema(
    {
        "day": "!date",
        "source": "!string",
        "outcome": "!string",
        "reason": "string",
        "n": "!int64",
    }
)
EVENT_ARROW_SCHEMA = EVENT_SCHEMA.to_pyarrow()

# PostgreSQL advisory lock id held while deduplicating and inserting ("tkwrite").
WRITE_LOCK_KEY = 0x746B7772697465
_POSTGRES = re.compile(r"^postgres(ql)?://")
#: Where DuckDB writes stage their rows: in memory where the OS offers it
_SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def connect_url(url: str) -> ibis.BaseBackend:
    """Open an Ibis backend from a store URL.

    ``duckdb:///abs/path.duckdb`` (or ``duckdb://:memory:``),
    ``postgres://user@host:port/db`` and ``pyspark:///abs/warehouse/dir``
    (:mod:`tailorkit.store.spark`) are tested; other Ibis URLs are passed
    through to :func:`ibis.connect` (see ``docs/warehouses.md``).

    >>> connect_url("duckdb://:memory:").name
    'duckdb'
    """
    if url.startswith("duckdb://"):
        path = url.removeprefix("duckdb://")
        if path not in ("", ":memory:"):
            path = "/" + path.lstrip("/")
        return ibis.duckdb.connect(path or ":memory:")
    if _POSTGRES.match(url):
        return ibis.connect(_POSTGRES.sub("postgres://", url))
    if url.startswith("pyspark://"):
        from tailorkit.store import spark  # late: imports pyspark

        return spark.connect(url)
    return ibis.connect(url)


def check_id(user_id: str) -> None:
    """Refuse an id that no stored row can have: one with a NUL character.

    Ibis writes literals into SQL text, where a NUL ends the statement
    (a syntax error, never a changed query), and PostgreSQL cannot store
    NUL in text; ingestion refuses such ids, so this says why clearly.

    >>> check_id("u1")
    >>> check_id("u" + chr(0))
    Traceback (most recent call last):
    ...
    ValueError: user id must not contain NUL characters
    """
    if "\x00" in user_id:
        raise ValueError("user id must not contain NUL characters")


class Warehouse:
    """Event store over an Ibis backend; one writer at a time per process.

    >>> wh = Warehouse("duckdb://:memory:")
    >>> wh.count_events()
    0
    """

    #: ``resolved_events()`` holds every stored event, so tables derived from all of them
    #: (the stored ``flagged_users``) describe it; a view that hides some events says False
    complete = True

    def __init__(self, url: str) -> None:
        self.url = url
        self.con = connect_url(url)
        self.backend = self.con.name
        # Ibis connections are not thread-safe; the HTTP writer thread and
        # admin requests share one connection through this lock.
        self.lock = threading.RLock()
        #: events deleted (erasure, retention) by this connection so far: caches of
        #: stored ids (:class:`~tailorkit.decide.log.StoredToday`) read them again
        self.deletions = 0
        self.ensure_schema()

    def close(self) -> None:
        """Release the connection (a DuckDB file admits one writing process)."""
        self.con.disconnect()

    def ensure_schema(self) -> None:
        """Create the tables that do not exist yet.

        A new events table starts a new store: kept profiles and recorded
        segment sizes left from another one (its events dropped) are dropped too.
        """
        existing = set(self.con.list_tables())
        if EVENTS not in existing:
            for name in (*KEPT_PROFILES, SEGMENT_SIZES):
                if name in existing:
                    self.con.drop_table(name, force=True)
        for name, schema in (
            (EVENTS, EVENT_SCHEMA),
            (IDENTITIES, IDENTITY_SCHEMA),
            (INGEST_STATS, INGEST_STATS_SCHEMA),
        ):
            if name not in existing:
                try:
                    self.con.create_table(name, schema=schema)
                except Exception:
                    # another process (a worker started beside a server) won the race
                    if name not in self.con.list_tables():
                        raise

    @property
    def events(self) -> ir.Table:
        """The raw events table (ids as sent)."""
        return self.con.table(EVENTS)

    @property
    def identities(self) -> ir.Table:
        """Anonymous id → user id merges from ``identify`` and ``alias``."""
        return self.con.table(IDENTITIES)

    def resolved_events(
        self,
        types: Sequence[str] | None = None,
        without: Sequence[str] | None = None,
        persons: ir.Table | None = None,
    ) -> ir.Table:
        """Events with ``person_id``: the known user id, merging anonymous history.

        An anonymous id that was later identified or aliased resolves to that
        user, so a user's profile includes what they did before logging in.
        ``types`` keeps only those event types, filtered *before* the identity
        join (two differently filtered uses in one query then stay two cheap
        scans instead of one shared, materialized join of the whole table);
        ``without`` leaves those types out the same way. ``persons`` (a table
        with ``person_id``) keeps only their events, also before the join: by
        the raw ids that can resolve to them.
        """
        events = self.events
        if types is not None:
            events = events.filter(events.type.isin(list(types)))
        if without is not None:
            events = events.filter(events.type.notin(list(without)))
        if persons is not None:
            events = self._events_of(events, persons)
        resolved = self.resolve(events)
        if persons is not None:
            resolved = resolved.filter(resolved.person_id.isin(persons.person_id))
        return resolved

    def resolve(self, rows: ir.Table) -> ir.Table:
        """``rows`` (with ``user_id`` and ``anonymous_id``) plus their ``person_id``."""
        ids = self.identities.group_by("anonymous_id").aggregate(
            merged_user_id=self.identities.user_id.max()
        )
        joined = rows.left_join(ids, rows.anonymous_id == ids.anonymous_id)
        person = ibis.coalesce(joined.user_id, joined.merged_user_id, joined.anonymous_id)
        return joined.select(*rows.columns, person_id=person)

    def _events_of(self, events: ir.Table, persons: ir.Table) -> ir.Table:
        """``events`` whose raw ids can resolve to one of ``persons`` (a superset).

        An event's person is its ``user_id`` when set, else its anonymous id's
        merged user or the anonymous id itself: so one probe of
        ``coalesce(user_id, anonymous_id)`` into the persons and the anonymous
        ids merged into them finds every event of theirs (one semi-join: a
        probe per event is most of the cost).
        """
        ids = self.identities
        merged = ids.filter(ids.user_id.isin(persons.person_id))
        raw = ibis.union(
            persons.select(raw_id=persons.person_id.cast("string")),
            merged.select(raw_id=merged.anonymous_id.cast("string")),
            distinct=True,
        )
        key = ibis.coalesce(events.user_id, events.anonymous_id)
        return events.semi_join(raw, key == raw.raw_id)

    def count_events(self) -> int:
        """Number of stored events."""
        with self.lock:
            return int(self.events.count().execute())

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside commit together, or not at all (DuckDB, PostgreSQL; Spark: as they go)."""
        raw: Any = getattr(self.con, "con", None)  # DuckDB's and psycopg's (Spark has none)
        if self.backend == "duckdb":
            raw.begin()
            try:
                yield
                raw.commit()
            except BaseException:
                raw.rollback()
                raise
        elif self.backend == "postgres":
            with raw.transaction():  # nested in exclusive(): a savepoint
                yield
        else:
            yield

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the write lock: check-then-insert (dedup) stays atomic.

        In-process writers share :attr:`lock`. On PostgreSQL several
        processes (``tailorkit worker`` s) may write, so this also opens a
        transaction holding an advisory lock until it commits. A DuckDB file
        admits one writing process anyway.
        """
        with self.lock:
            if self.backend != "postgres":
                yield
                return
            raw: Any = self.con.con
            with raw.transaction(), raw.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK_KEY,))
                yield

    def stored_ids(self, event_ids: pa.Array, since: datetime | None = None) -> frozenset[str]:
        """The subset of ``event_ids`` already in the store (exact dedup).

        ``since`` looks only at events with a timestamp from then on, for ids
        that cannot repeat an older event's (ids derived from the day). Without
        it every stored id is scanned; with it DuckDB skips the row groups
        whose timestamps all lie before (its min/max statistics), which are
        nearly all of them as events arrive roughly in time order.
        """
        ids = pa.table({"event_id": event_ids.cast(pa.string())})
        with self.lock:
            if self.backend == "duckdb":
                return self._duckdb_stored_ids(ids, since)
            staging = ibis.memtable(ids)
            stored = self.events
            if since is not None:
                stored = stored.filter(stored.timestamp >= since)
            found = staging.semi_join(stored, staging.event_id == stored.event_id)
            return frozenset(self.con.to_pyarrow(found.event_id).to_pylist())

    def event_ids(self, source: str, start: datetime, end: datetime) -> set[str]:
        """Ids of the stored events of ``source`` with a timestamp in ``[start, end)``."""
        events = self.events
        expr = events.filter(
            (events.source == source) & (events.timestamp >= start) & (events.timestamp < end)
        ).event_id
        with self.lock:
            return set(self.con.to_pyarrow(expr).to_pylist())

    def append(self, name: str, rows: pa.Table) -> None:
        """Add ``rows`` to the derived table ``name``, created with their schema if missing."""
        if name in self.con.list_tables():
            self.con.insert(name, ibis.memtable(rows))
        else:
            self.con.create_table(name, rows)

    def insert(
        self, events: pa.Table, identities: pa.Table | None = None, stats: pa.Table | None = None
    ) -> None:
        """Write new events, identity merges and ingest statistics in one transaction.

        Callers deduplicate first (:meth:`stored_ids`) inside :meth:`exclusive`;
        when this returns, everything is durable.
        """
        tables = {
            EVENTS: events.select(EVENT_ARROW_SCHEMA.names).cast(EVENT_ARROW_SCHEMA),
            IDENTITIES: identities,
            INGEST_STATS: stats,
        }
        with self.lock, self.transaction():
            for name, table in tables.items():
                if table is None or not table.num_rows:
                    continue
                if self.backend == "duckdb" and name == INGEST_STATS:
                    self._duckdb_insert_rows(name, table)
                elif self.backend == "duckdb":
                    self._duckdb_append(name, table)
                else:
                    self.con.insert(name, ibis.memtable(table))

    # DuckDB fast paths: on the ingestion hot path Ibis's per-call schema
    # look-ups cost more than the insert itself. Rows go in through a Parquet
    # file, not a registered pyarrow table: DuckDB scans the latter holding
    # the GIL (it builds and reads a pyarrow dataset scanner), which stalls
    # the server's event loop, while pyarrow writes and DuckDB reads Parquet
    # without it.
    def _duckdb_stored_ids(self, ids: pa.Table, since: datetime | None) -> frozenset[str]:
        raw: Any = self.con.con
        query = (
            "SELECT event_id FROM events WHERE event_id IN (SELECT event_id FROM read_parquet(?))"
        )
        params: list[Any] = []
        if since is not None:
            query += " AND timestamp >= ?"
            params.append(since)
        with _parquet_file(ids) as path:
            found = raw.execute(query, [path, *params]).fetchall()
        return frozenset(row[0] for row in found)

    def _duckdb_append(self, name: str, table: pa.Table) -> None:
        raw: Any = self.con.con
        columns = ", ".join(f'"{c}"' for c in table.column_names)
        with _parquet_file(table) as path:
            raw.execute(
                f'INSERT INTO "{name}" ({columns}) SELECT {columns} FROM read_parquet(?)', [path]
            )

    def _duckdb_insert_rows(self, name: str, table: pa.Table) -> None:
        """Insert a few rows (the ingest statistics of a store: one to a handful) as
        parameters: a scratch Parquet file costs ~0.4 ms more per store, in part holding
        the GIL (the writer's set-up is Python)."""
        raw: Any = self.con.con
        columns = ", ".join(f'"{c}"' for c in table.column_names)
        row = f"({', '.join('?' * table.num_columns)})"
        values = [value for r in table.to_pylist() for value in r.values()]
        raw.execute(
            f'INSERT INTO "{name}" ({columns}) VALUES {", ".join([row] * table.num_rows)}', values
        )

    def user_anonymous_ids(self, user_id: str) -> list[str]:
        """Anonymous ids merged into ``user_id``."""
        check_id(user_id)
        ids = self.identities
        expr = ids.filter(ids.user_id == user_id).select("anonymous_id").distinct()
        with self.lock:
            return [str(v) for v in self.con.to_pyarrow(expr).column(0).to_pylist()]

    def erase_user(self, user_id: str) -> int:
        """Delete every event and identity row of a user and their anonymous ids, and
        their rows in derived tables (:data:`PERSON_TABLES`).

        Returns the number of events deleted. Kept profiles stay incremental
        (:func:`tailorkit.profile.materialized.erasing`).
        """
        from tailorkit.profile.materialized import erasing  # late: it imports this module

        with erasing(self) as forget, self.lock:
            anon = self.user_anonymous_ids(user_id)
            events = self.events
            cond = events.user_id == user_id
            if anon:
                cond = cond | events.anonymous_id.isin(anon)
            forget(user_id, anon, events.filter(cond))
            n = int(events.filter(cond).count().execute())
            self._delete(EVENTS, events, cond)
            ids = self.identities
            self._delete(IDENTITIES, ids, ids.user_id == user_id)
            existing = set(self.con.list_tables())
            for name in PERSON_TABLES:  # derived, but they name the person
                if name in existing:
                    rows = self.con.table(name)
                    self._delete(name, rows, rows.person_id.isin([user_id, *anon]))
            return n

    def purge_before(self, cutoff: datetime) -> int:
        """Delete events with a timestamp before ``cutoff`` (retention).

        Kept profiles recompute only the persons who lost events
        (:func:`tailorkit.profile.materialized.purging`).
        """
        from tailorkit.profile.materialized import purging  # late: it imports this module

        with purging(self) as forget, self.lock:
            events = self.events
            cond = events.timestamp < cutoff
            forget(events.filter(cond))
            n = int(events.filter(cond).count().execute())
            self._delete(EVENTS, events, cond)
            return n

    def _delete(self, name: str, table: ir.Table, cond: ir.BooleanValue) -> None:
        if name == EVENTS:
            self.deletions += 1
        # Ibis has no DELETE: compile the predicate with Ibis (so quoting and
        # literals follow the backend's dialect) and wrap it with sqlglot.
        select = self.con.compiler.to_sqlglot(table.filter(cond))
        where = select.args["where"].this.transform(_unqualify)
        stmt = sqlglot.exp.delete(sqlglot.exp.to_table(name, quoted=True), where=where)
        self.con.raw_sql(stmt.sql(dialect=self.con.dialect))


@contextmanager
def _parquet_file(table: pa.Table) -> Iterator[str]:
    """The path of a scratch Parquet file holding ``table``, removed afterwards.

    >>> with _parquet_file(pa.table({"n": [1, 2]})) as path:
    ...     pq.read_table(path)["n"].to_pylist()
    [1, 2]
    """
    fd, path = tempfile.mkstemp(prefix="tailorkit-", suffix=".parquet", dir=_SCRATCH)
    os.close(fd)
    try:
        pq.write_table(table, path, compression="none")
        yield path
    finally:
        os.remove(path)


def _unqualify(node: sqlglot.exp.Expression) -> sqlglot.exp.Expression:
    if isinstance(node, sqlglot.exp.Column) and node.table:
        return sqlglot.exp.column(node.name, quoted=True)
    return node
