"""Batch segments exclude flagged persons through the stored flags while they are fresh.

:func:`tailorkit.collect.quality.clean_events` reads ``flagged_users`` when
its watermark matches the store and scans the events otherwise; a view of
part of the events (``AsOf``, for training) always scans. A row added to the
stored table by hand (the watermark does not cover it) shows which source a
result came from.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import ibis

from tailorkit.collect.quality import clean_events, refresh_flags
from tailorkit.learn.data import AsOf
from tailorkit.project.loader import QualitySettings
from tailorkit.segment.batch import membership_table
from tailorkit.segment.definitions import parse_definitions
from tailorkit.segment.online import events_table
from tailorkit.store.warehouse import FLAGGED_USERS, Warehouse

T0 = datetime(2024, 5, 1, tzinfo=UTC)
AT = T0 + timedelta(days=1)
DEFINITIONS = parse_definitions(
    {
        "features": {"views": {"count": {"events": ["page_view"]}}},
        "segments": {"viewers": {"condition": {"views": {"$gte": 1}}}},
    }
)
QUALITY = QualitySettings()


def view(user: str, minute: int, agent: str = "Mozilla/5.0") -> dict[str, object]:
    return {
        "event_id": f"{user}-{minute}",
        "type": "page_view",
        "user_id": user,
        "timestamp": T0 + timedelta(minutes=minute),
        "context": {"user_agent": agent},
    }


def members(wh: Warehouse) -> list[str]:
    table = membership_table(DEFINITIONS, clean_events(wh, QUALITY), AT)
    return sorted(table.filter(table.viewers).person_id.to_pyarrow().to_pylist())


def test_stored_flags_are_read_while_fresh(warehouse: Warehouse) -> None:
    wh = warehouse
    rows = [view(u, i) for i, u in enumerate(["u1", "u2", "u3"])]
    wh.insert(events_table([*rows, view("u4", 5, "Googlebot/2.1 (+http://www.google.com/bot)")]))
    assert members(wh) == ["u1", "u2", "u3"]  # no stored flags: the scan finds the bot
    refresh_flags(wh, QUALITY)
    assert members(wh) == ["u1", "u2", "u3"]
    planted = {"person_id": ["u2"], "reason": ["test"], "flagged_at": [T0]}
    wh.con.insert(FLAGGED_USERS, ibis.memtable(planted).cast({"flagged_at": "timestamp('UTC')"}))
    assert members(wh) == ["u1", "u3"]  # fresh: the stored table decides
    assert members(AsOf(wh, None)) == ["u1", "u2", "u3"]  # a view always scans
    wh.insert(events_table([view("u5", 9)]))
    assert members(wh) == ["u1", "u2", "u3", "u5"]  # stale: scanned again
