"""Size over time: past midnights computed once, recorded in the store, then read back.

At a million users each past instant of the history is a profile computation
of its own (two minutes for two weeks); recorded, a report computes only now.
Both backends.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tailorkit.collect.quality import clean_events
from tailorkit.collect.validate import identities_from
from tailorkit.demo import generate_shop
from tailorkit.learn.data import AsOf
from tailorkit.project.loader import QualitySettings
from tailorkit.segment.batch import (
    history_instants,
    record_sizes,
    recorded_sizes,
    size_history,
    stored_report,
)
from tailorkit.segment.definitions import Definitions, parse_definitions
from tailorkit.segment.online import events_table
from tailorkit.store.warehouse import SEGMENT_SIZES, Warehouse
from tests.segment.common import shop_document, stored_events

END = datetime(2024, 6, 1, 15, tzinfo=UTC)
QUALITY = QualitySettings()


def definitions(min_views: int = 3) -> Definitions:
    """The example definitions plus one segment whose threshold a test changes."""
    document: dict[str, Any] = {**shop_document()}
    extra = {"many_views": {"condition": {"product_views_7d": {"$gte": min_views}}}}
    document["segments"] = {**document["segments"], **extra}
    return parse_definitions(document)


@pytest.fixture
def stored(warehouse: Warehouse) -> Warehouse:
    events = stored_events(generate_shop(300, 7, 4, end=END).events)
    warehouse.insert(events, identities_from(events))
    return warehouse


def late_views(before: datetime, n: int = 40) -> Any:
    """Product views of new persons an hour before ``before``, arriving now."""
    rows = [
        {"event_id": f"late-{i}", "type": "product_view", "user_id": f"late-{i}",
         "timestamp": before - timedelta(hours=1), "properties": {"product_id": "p1"}}
        for i in range(n)
    ]  # fmt: skip
    return events_table(rows)


def recorded_rows(wh: Warehouse) -> int:
    return int(wh.con.to_pyarrow(wh.con.table(SEGMENT_SIZES).count()).as_py())


def test_history_is_computed_once_then_read_from_the_store(stored: Warehouse) -> None:
    defs = definitions()
    first = stored_report(defs, stored, QUALITY, END, 8)["size_over_time"]
    instants = history_instants(END, 8)
    assert [row["as_of"] for row in first] == [t.isoformat() for t in instants]
    # what was recorded is what the events give at those instants; the first
    # midnight is before the data: no profiles, every size 0
    scratch = size_history(defs, clean_events(stored, QUALITY), instants)
    assert first == scratch and first[1] != first[-2]
    assert set(first[0].values()) == {first[0]["as_of"], 0}
    assert recorded_rows(stored) == 8 * (len(defs.segments) + 1)  # midnights only, not END
    assert set(recorded_sizes(stored, defs, QUALITY, instants)) == set(instants[:-1])
    # persons arriving late for the past days: the recorded days stay as recorded,
    # the sizes as of END count them
    stored.insert(late_views(instants[-2]))
    again = stored_report(defs, stored, QUALITY, END, 8)["size_over_time"]
    assert again[:-1] == first[:-1]
    assert again[-1]["profiles"] == first[-1]["profiles"] + 40
    recomputed = size_history(defs, clean_events(stored, QUALITY), instants[:-1])
    assert recomputed[-1]["profiles"] == first[-2]["profiles"] + 40  # a wrong read would show
    assert recorded_rows(stored) == 8 * (len(defs.segments) + 1)  # nothing recorded twice


def test_other_definitions_start_another_series(stored: Warehouse) -> None:
    loose, strict = definitions(min_views=1), definitions(min_views=30)
    a = stored_report(loose, stored, QUALITY, END, 2)["size_over_time"]
    b = stored_report(strict, stored, QUALITY, END, 2)["size_over_time"]
    assert [r["many_views"] for r in a[:-1]] != [r["many_views"] for r in b[:-1]]
    assert b == size_history(strict, clean_events(stored, QUALITY), history_instants(END, 2))
    # a description is not part of a size: the series goes on
    described = {**shop_document()}
    described["segments"] = {
        **described["segments"],
        "many_views": {"condition": {"product_views_7d": {"$gte": 1}}, "description": "new"},
    }
    renamed = parse_definitions(described)
    assert set(recorded_sizes(stored, renamed, QUALITY, history_instants(END, 2))) == set(
        history_instants(END, 2)[:-1]
    )


def test_recent_midnights_are_not_recorded_until_they_settle(warehouse: Warehouse) -> None:
    now = datetime.now(UTC)
    rows = [{"as_of": (now - timedelta(minutes=10)).isoformat(), "profiles": 5}]
    assert record_sizes(warehouse, definitions(), QUALITY, rows) == 0
    assert SEGMENT_SIZES not in warehouse.con.list_tables()
    old = [{"as_of": (now - timedelta(hours=2)).isoformat(), "profiles": 5}]
    assert record_sizes(warehouse, definitions(), QUALITY, old) == 1


def test_a_new_store_drops_the_sizes_of_the_old_one(stored: Warehouse) -> None:
    stored_report(definitions(), stored, QUALITY, END, 2)
    assert recorded_rows(stored) > 0
    stored.con.drop_table("events")
    stored.ensure_schema()
    assert SEGMENT_SIZES not in stored.con.list_tables()


def test_a_view_of_part_of_the_store_records_nothing(stored: Warehouse) -> None:
    # a training view sees the events up to its cut-off only: its sizes are not the store's
    view = AsOf(stored, END - timedelta(days=2))
    seen = stored_report(definitions(), view, QUALITY, END, 3)["size_over_time"]
    assert len({row["profiles"] for row in seen[1:]}) == 1  # no one new after the cut-off
    assert SEGMENT_SIZES not in stored.con.list_tables()
    whole = stored_report(definitions(), stored, QUALITY, END, 3)["size_over_time"]
    assert whole[-1]["profiles"] > seen[-1]["profiles"]
