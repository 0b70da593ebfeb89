"""Consent in the batch executor: who is profiled, what counts, who RFM ranks.

A person is profiled when their latest event has consent (a refusal at the
same instant wins); features count consented events only; RFM ranks every
person with a consented purchase, profiled or not. Checked on DuckDB and
PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tailorkit.profile.batch import profile_table
from tailorkit.profile.definitions import parse_features
from tailorkit.segment.online import events_table
from tailorkit.store.warehouse import Warehouse

T0 = datetime(2024, 5, 1, tzinfo=UTC)
FEATURES = parse_features(
    {
        "features": {"views": {"count": {"events": ["page_view"]}}},
        "rfm": {"events": ["purchase"], "property": "revenue"},
    }
)


def event(user: str, minute: int, consent: bool, kind: str = "page_view", **props: Any) -> dict:
    return {
        "event_id": f"{user}-{minute}-{consent}",
        "type": kind,
        "user_id": user,
        "timestamp": T0 + timedelta(minutes=minute),
        "personalization": consent,
        "properties": props,
    }


def test_latest_event_decides_and_refusers_still_rank(warehouse: Warehouse) -> None:
    rows = [
        event("withdrew", 1, True, "purchase", revenue=100),
        event("withdrew", 2, False),
        event("renewed", 1, False),
        event("renewed", 2, True),
        event("tied", 1, True),
        event("tied", 1, False),
        event("buyer", 1, True, "purchase", revenue=10),
        event("buyer", 3, True),
    ]
    warehouse.insert(events_table(rows))
    events = warehouse.resolved_events()
    table = profile_table(FEATURES, events, T0 + timedelta(hours=1)).order_by("person_id")
    got = {r["person_id"]: r for r in table.to_pyarrow().to_pylist()}
    assert sorted(got) == ["buyer", "renewed"]
    assert got["renewed"]["views"] == 1  # the refused view does not count
    assert got["renewed"]["rfm_m"] is None
    # ranked against "withdrew" (more money, not profiled): half the buyers do no better
    assert (got["buyer"]["rfm_m"], got["buyer"]["rfm_f"]) == (3, 5)
