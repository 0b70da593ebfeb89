"""The event store behaves the same on DuckDB and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import tailorkit.store.warehouse as warehouse_module
from tailorkit.collect.jsonlines import raw_from_items
from tailorkit.collect.pipeline import Collector
from tailorkit.decide.exposures import exposure_event_for
from tailorkit.decide.log import StoredToday, store_exposures
from tailorkit.evaluate import ExposureRecord
from tailorkit.project.loader import PiiSettings, Settings
from tailorkit.store.warehouse import (
    EVENT_ARROW_SCHEMA,
    INGEST_STATS,
    INGEST_STATS_SCHEMA,
    Warehouse,
)
from tests.helpers import event

INGEST_STATS_ARROW_SCHEMA = INGEST_STATS_SCHEMA.to_pyarrow()


def collector(wh: Warehouse) -> Collector:
    return Collector(wh, Settings(store_url=wh.url, pii=PiiSettings(hmac_key="k" * 20)))


def ingest(wh: Warehouse, items: list) -> dict:
    return collector(wh).ingest(raw_from_items(items, Settings("x").limits), "test").to_dict()


def flag_exposure(user: str, at: datetime) -> dict:
    """The exposure log's event for one user's flag evaluation at ``at`` (a daily id)."""
    record = ExposureRecord("exp", 1, "b", "id", user, "f", 0.25, 0.5)
    return exposure_event_for(record, user_id=user, anonymous_id=None, timestamp=at)


def test_dedup_is_exact_across_batches(warehouse: Warehouse) -> None:
    items = [event() for _ in range(50)]
    assert ingest(warehouse, items)["accepted"] == 50
    again = ingest(warehouse, [*items[:10], event()])
    assert again["duplicates"] == 10 and again["accepted"] == 1
    assert again["statuses"][:10] == ["duplicate"] * 10
    assert warehouse.count_events() == 51


def test_anonymous_history_merges_into_known_user(warehouse: Warehouse) -> None:
    ingest(
        warehouse,
        [
            event(user_id=None, anonymous_id="anon-1"),
            event(user_id=None, anonymous_id="anon-1"),
            event(type="identify", user_id="alice", anonymous_id="anon-1"),
            event(user_id="alice"),
            event(user_id=None, anonymous_id="anon-2"),
        ],
    )
    counts = warehouse.resolved_events().person_id.value_counts().to_pyarrow().to_pylist()
    assert {r["person_id"]: r["person_id_count"] for r in counts} == {"alice": 4, "anon-2": 1}


def test_erase_removes_user_and_merged_anonymous_history(warehouse: Warehouse) -> None:
    ingest(
        warehouse,
        [
            event(user_id=None, anonymous_id="anon-1"),
            event(type="identify", user_id="alice", anonymous_id="anon-1"),
            event(user_id="alice"),
            event(user_id="bob"),
        ],
    )
    assert warehouse.erase_user("alice") == 3
    events = warehouse.events.to_pyarrow()
    assert events.column("user_id").to_pylist() == ["bob"]
    assert "anon-1" not in events.column("anonymous_id").to_pylist()
    assert warehouse.identities.count().execute() == 0


def test_erase_removes_the_persons_model_scores(warehouse: Warehouse) -> None:
    import pandas as pd

    from tailorkit.learn.scores import score_rows, write_scores

    ingest(warehouse, [event(type="identify", user_id="alice", anonymous_id="anon-1")])
    scores = pd.Series({"alice": 0.9, "anon-1": 0.8, "bob": 0.1})
    write_scores(warehouse, "churn_risk", scores, "churn@v1")
    warehouse.erase_user("alice")
    assert set(score_rows(warehouse)) == {"bob"}


def test_purge_removes_only_events_older_than_cutoff(warehouse: Warehouse) -> None:
    old = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    ingest(warehouse, [event(timestamp=old), event(timestamp=datetime.now(UTC).isoformat())])
    assert warehouse.purge_before(datetime.now(UTC) - timedelta(days=395)) == 1
    assert warehouse.count_events() == 1


def test_same_results_on_both_backends(tmp_path, pg_database: str) -> None:
    items = [event(user_id=f"u{i % 7}", properties={"price": i}) for i in range(200)]
    totals = {}
    for url in (f"duckdb://{tmp_path / 'a.duckdb'}", pg_database):
        wh = Warehouse(url)
        ingest(wh, items)
        t = wh.resolved_events()
        rows = (
            t.group_by("person_id")
            .aggregate(n=t.count(), price=t.properties.cast("json")["price"].int.sum())
            .order_by("person_id")
            .to_pyarrow()
            .to_pylist()
        )
        totals[wh.backend] = rows
        if wh.backend == "postgres":
            for table in ("events", "identities", "ingest_stats"):
                wh.con.drop_table(table, force=True)
    assert totals["duckdb"] == totals["postgres"]
    assert sum(r["n"] for r in totals["duckdb"]) == 200


def test_stored_ids_since_looks_only_at_events_from_then_on(warehouse: Warehouse) -> None:
    day = datetime(2026, 11, 20, tzinfo=UTC)
    older, same_day = event(timestamp="2026-11-19T23:59:59Z"), event(timestamp=day.isoformat())
    ingest(warehouse, [older, same_day])
    ids = pa.array([older["event_id"], same_day["event_id"], "never-stored"])
    assert warehouse.stored_ids(ids) == {older["event_id"], same_day["event_id"]}
    assert warehouse.stored_ids(ids, since=day) == {same_day["event_id"]}
    assert warehouse.stored_ids(ids, since=day + timedelta(microseconds=1)) == frozenset()


def test_daily_exposure_ids_are_deduplicated_across_midnight(warehouse: Warehouse) -> None:
    """A flush spanning midnight still finds a repeat of the earlier day's exposure."""
    store = collector(warehouse)
    late = datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC)
    assert store_exposures(store, [flag_exposure("u1", late)], "decision", daily_ids=True) == 1
    after_midnight = flag_exposure("u1", late + timedelta(seconds=2))
    repeat = flag_exposure("u1", late)
    assert after_midnight["event_id"] != repeat["event_id"]
    assert store_exposures(store, [after_midnight, repeat], "decision", daily_ids=True) == 1
    assert warehouse.count_events() == 2


def test_exposure_ids_held_in_memory_find_the_repeats_the_store_would(
    warehouse: Warehouse,
) -> None:
    """With :class:`StoredToday` (DuckDB: one writing process) the flag log's daily ids are
    checked in memory. Repeats of an earlier process's events (read once from the store) and
    of this one's are still skipped and counted, across midnight too, and an erased user's
    exposure is stored again. On PostgreSQL the store is asked, with the same results."""
    store = collector(warehouse)
    late = datetime(2026, 11, 20, 23, 59, 59, tzinfo=UTC)

    def log(*events: dict) -> int:
        return store_exposures(store, list(events), "decision", daily_ids=True, stored_today=today)

    assert store_exposures(store, [flag_exposure("u1", late)], "decision", daily_ids=True) == 1
    today = StoredToday("decision")  # a new process: u1's exposure was stored before it
    assert log(flag_exposure("u1", late), flag_exposure("u2", late)) == 1
    assert log(flag_exposure("u2", late - timedelta(hours=1)), flag_exposure("u3", late)) == 1
    after_midnight = late + timedelta(seconds=2)
    assert log(flag_exposure("u1", after_midnight), flag_exposure("u3", late)) == 1
    warehouse.erase_user("u2")
    assert log(flag_exposure("u2", late)) == 1
    assert warehouse.count_events() == 4  # u1 on both days, u2 again after its erasure, u3
    stats = warehouse.con.table(INGEST_STATS).to_pyarrow().to_pylist()
    assert sum(r["n"] for r in stats if r["outcome"] == "duplicate") == 3


def test_a_day_with_too_many_exposure_ids_for_memory_is_checked_in_the_store(
    warehouse: Warehouse,
) -> None:
    store = collector(warehouse)
    events = [flag_exposure(f"u{i}", datetime(2026, 11, 20, 12, tzinfo=UTC)) for i in range(3)]
    today = StoredToday("decision", max_ids=2)
    assert store_exposures(store, events[:2], "decision", daily_ids=True, stored_today=today) == 2
    assert store_exposures(store, events, "decision", daily_ids=True, stored_today=today) == 1
    assert store_exposures(store, events, "decision", daily_ids=True, stored_today=today) == 0
    assert warehouse.count_events() == 3


def test_insert_stores_exactly_the_rows_given(
    warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Values survive the write path unchanged (DuckDB stages them in a scratch Parquet file,
    which is removed, also when the insert fails and nothing is stored)."""
    monkeypatch.setattr(warehouse_module, "_SCRATCH", str(tmp_path))
    at = datetime(2026, 11, 20, 23, 59, 59, 123456, tzinfo=UTC)
    rows = [
        {"event_id": "e1", "type": "exposure", "user_id": "ü-1", "anonymous_id": None,
         "timestamp": at, "received_at": at + timedelta(microseconds=1), "clock_skew_ms": -5,
         "source": "decide", "properties": '{"k":"✓","p":1.0}', "context": None,
         "personalization": True},
        {"event_id": "e2", "type": "page_view", "user_id": None, "anonymous_id": "a 2",
         "timestamp": at - timedelta(days=400), "received_at": at, "clock_skew_ms": None,
         "source": "test", "properties": None, "context": "{}", "personalization": False},
    ]  # fmt: skip
    events = pa.Table.from_pylist(rows, schema=EVENT_ARROW_SCHEMA)
    warehouse.insert(events)
    stored = warehouse.con.to_pyarrow(warehouse.events.order_by("event_id"))
    assert stored.cast(EVENT_ARROW_SCHEMA).to_pylist() == rows
    broken = events.set_column(1, "type", pa.array([None, "x"], pa.string()))
    with pytest.raises(Exception, match=r"(?i)null"):
        warehouse.insert(broken.set_column(0, "event_id", pa.array(["e3", "e4"])))
    assert warehouse.count_events() == 2
    assert list(tmp_path.glob("tailorkit-*")) == []


def test_insert_stores_exactly_the_ingest_statistics_given(warehouse: Warehouse) -> None:
    """Statistics rows (a few per store; DuckDB binds them as parameters) are stored as given."""
    rows = [
        {"day": date(2026, 11, 20), "source": "decide", "outcome": "accepted", "reason": None,
         "n": 3},
        {"day": date(2026, 11, 21), "source": "ü", "outcome": "rejected", "reason": "schema",
         "n": 1 << 40},
    ]  # fmt: skip
    events = EVENT_ARROW_SCHEMA.empty_table()
    warehouse.insert(events, stats=pa.Table.from_pylist(rows, schema=INGEST_STATS_ARROW_SCHEMA))
    stored = warehouse.con.to_pyarrow(warehouse.con.table(INGEST_STATS).order_by("day"))
    assert stored.cast(INGEST_STATS_ARROW_SCHEMA).to_pylist() == rows
