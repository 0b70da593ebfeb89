"""Property values with escapes, unicode and mixed JSON types read the same in both executors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tailorkit.collect.validate import identities_from
from tailorkit.segment.definitions import parse_definitions
from tailorkit.segment.online import SegmentEngine, events_table
from tailorkit.store.warehouse import Warehouse
from tests.segment.common import batch_rows, differences, online_rows

T0 = datetime(2024, 5, 1, tzinfo=UTC)
DEFS = parse_definitions(
    {
        "features": {
            "names": {"distinct": {"events": ["e"], "property": "name", "window": "7d"}},
            "quoted": {"count": {"events": ["e"], "where": {"name": 'a"b'}}},
            "slashed": {"count": {"events": ["e"], "where": {"name": {"$in": ["c\\d", "é"]}}}},
            "deep": {"sum": {"events": ["e"], "property": "item.price"}},
            "texty": {"count": {"events": ["e"], "where": {"item.price": {"$gt": 5}}}},
        },
        "segments": {"odd": {"condition": {"quoted": {"$gte": 1}, "slashed": {"$gte": 2}}}},
    }
)
VALUES: list[Any] = ['a"b', "c\\d", "é", "plain", "tab\tx", "", 7, 7.0, True, None, "7"]


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_escaped_and_mixed_values_agree(backend: str, request: pytest.FixtureRequest) -> None:
    rows = [
        {"event_id": f"e{i}", "type": "e", "user_id": f"u{i % 3}",
         "timestamp": T0 + timedelta(minutes=i),
         "properties": {"name": v, "item": {"price": VALUES[-1 - k % len(VALUES)]}}}
        for i, (k, v) in enumerate(enumerate(VALUES * 2))
    ]  # fmt: skip
    engine = SegmentEngine(DEFS)
    engine.process(events_table(rows))
    at = T0 + timedelta(hours=2)
    engine.advance_to(at)
    url = "duckdb://:memory:" if backend == "duckdb" else request.getfixturevalue("pg_database")
    wh = Warehouse(url)
    try:
        table = events_table(rows)
        wh.insert(table, identities_from(table))
        batch = batch_rows(DEFS, wh.resolved_events(), at)
    finally:
        if backend == "postgres":
            for name in ("events", "identities", "ingest_stats"):
                wh.con.drop_table(name, force=True)
        wh.close()
    online = online_rows(engine)
    assert differences(DEFS, batch, online) == {}
    assert sorted(r["names"] for r in online.values()) == [5, 6, 6]  # strings and numbers
    assert sum(r["quoted"] for r in online.values()) == 2
    assert sum(r["slashed"] for r in online.values()) == 4
