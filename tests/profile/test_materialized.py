"""Profiles kept in the store and brought forward equal profiles computed from scratch.

The demo shop's events arrive in slices, some late and some with clocks
ahead, with identity merges and bot traffic; after each slice the kept rows
are brought to a later instant (minutes to a day later) and compared with
:func:`profile_table` of every event, on both backends. Further tests check
each reason for a full recompute, and that a past instant leaves the kept
rows alone.
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tailorkit.collect.quality import clean_events, refresh_flags
from tailorkit.collect.validate import identities_from
from tailorkit.demo import generate_shop
from tailorkit.learn.data import AsOf
from tailorkit.profile.batch import profile_table
from tailorkit.profile.definitions import parse_features
from tailorkit.profile.materialized import (
    GRACE,
    KEPT_PROFILES,
    STATE_MARK,
    _exclusive,
    can_refresh,
    profiles_now,
    refresh_state,
    stored_profiles,
)
from tailorkit.project.loader import QualitySettings
from tailorkit.segment.batch import membership_table, stored_membership
from tailorkit.segment.online import events_table
from tailorkit.store.warehouse import IDENTITY_SCHEMA, Warehouse
from tests.segment.common import shop_definitions, stored_events

QUALITY = QualitySettings()
BOT = "Googlebot/2.1 (+http://www.google.com/bot)"


def scratch(wh: Warehouse, at: datetime) -> list[dict[str, Any]]:
    table = profile_table(shop_definitions().features, clean_events(wh, QUALITY), at)
    return wh.con.to_pyarrow(table).sort_by("person_id").to_pylist()


def kept(wh: Warehouse, at: datetime) -> list[dict[str, Any]]:
    table = stored_profiles(wh, shop_definitions().features, QUALITY, at)
    return wh.con.to_pyarrow(table).sort_by("person_id").to_pylist()


def arrivals(seed: int) -> tuple[pa.Table, datetime]:
    """The demo shop's events with when each reaches the store; returns them and the data's end.

    Most arrive seconds after they happen; one in 50 hours late; one in 100
    has a clock two hours ahead (it arrives before its timestamp); a few
    persons turn into bots (their later events carry a crawler's agent).
    """
    shop = generate_shop(60, 6, seed)
    events = stored_events(shop.events)
    rng = random.Random(seed)
    ts = events["timestamp"].to_pylist()
    received, stamps = [], []
    for t in ts:
        roll = rng.random()
        stamps.append(t + timedelta(hours=2) if roll < 0.01 else t)
        received.append(t + timedelta(hours=rng.uniform(1, 30)) if roll > 0.98 else t)
    visitors = {a for a in events["anonymous_id"].to_pylist() if a}
    bots = set(rng.sample(sorted(visitors), 3))
    halfway = shop.end - timedelta(days=3)
    agents = [
        f'{{"user_agent": "{BOT}"}}' if a in bots and t > halfway else c
        for a, t, c in zip(
            events["anonymous_id"].to_pylist(), ts, events["context"].to_pylist(), strict=True
        )
    ]
    for name, values in (("timestamp", stamps), ("received_at", received), ("context", agents)):
        at = events.schema.get_field_index(name)
        events = events.set_column(at, name, pa.array(values, events.schema.field(name).type))
    return events, shop.end


def store_until(wh: Warehouse, events: pa.Table, since: datetime, until: datetime) -> None:
    """Store the events received in ``(since, until]`` (with their identity merges)."""
    got = events["received_at"]
    part = events.filter(pc.and_(pc.greater(got, since), pc.less_equal(got, until)))
    if part.num_rows:
        wh.insert(part, identities_from(part))


def test_kept_profiles_follow_arrivals(warehouse: Warehouse) -> None:
    wh, features = warehouse, shop_definitions().features
    events, end = arrivals(seed=7)
    start = end - timedelta(days=6)
    steps = [timedelta(minutes=m) for m in (600, 10, 1440, 1, 240, 0, 2000, 30, 700)]
    at, reasons, recomputed = start + timedelta(days=1), [], []
    store_until(wh, events, start - timedelta(days=1), at)
    for i, step in enumerate(steps):
        before, at = at, at + step
        store_until(wh, events, before, at)
        if i == 4:  # `tailorkit build` stores fresh flags: the next refresh reads them
            refresh_flags(wh, QUALITY)
        done = refresh_state(wh, features, at)
        reasons.append(done.reason)
        recomputed.append(done.recomputed)
        assert kept(wh, at) == scratch(wh, at), f"step {i} ({step}): {done}"
    assert reasons[0] == "no stored profiles"
    assert set(reasons[1:]) == {"incremental"}
    profiled = len(scratch(wh, at))
    assert recomputed[3] < profiled / 4  # a minute later: only the persons that can change
    assert recomputed[5] < profiled / 4  # the same instant again: late arrivals only


def test_membership_from_kept_profiles_equals_scratch(warehouse: Warehouse) -> None:
    wh, definitions = warehouse, shop_definitions()
    events, end = arrivals(seed=3)
    store_until(wh, events, end - timedelta(days=8), end)
    for at in (end - timedelta(hours=30), end - timedelta(hours=2), end):
        ours = wh.con.to_pyarrow(stored_membership(definitions, wh, QUALITY, at))
        theirs = wh.con.to_pyarrow(membership_table(definitions, clean_events(wh, QUALITY), at))
        assert ours.sort_by("person_id").equals(theirs.sort_by("person_id"))


T0 = datetime(2024, 5, 1, tzinfo=UTC)
VIEWS = parse_features(
    {"features": {"views": {"count": {"events": ["page_view"], "window": "24h"}}}}
)


def view(event: str, user: str, minutes: float, received: float | None = None) -> dict[str, Any]:
    at = T0 + timedelta(minutes=minutes)
    late = at if received is None else T0 + timedelta(minutes=received)
    return {"event_id": event, "type": "page_view", "user_id": user, "timestamp": at,
            "received_at": late}  # fmt: skip


def views(wh: Warehouse, at: datetime) -> dict[str, int]:
    rows = wh.con.to_pyarrow(stored_profiles(wh, VIEWS, QUALITY, at)).to_pylist()
    return {r["person_id"]: r["views"] for r in rows}


@pytest.fixture
def small(warehouse: Warehouse) -> Warehouse:
    warehouse.insert(events_table([view("e1", "u1", 0), view("e2", "u2", 60)]))
    assert refresh_state(warehouse, VIEWS, T0 + timedelta(hours=2)).full
    return warehouse


def test_window_expiry_moves_persons_without_new_events(small: Warehouse) -> None:
    at = T0 + timedelta(hours=24, minutes=30)
    done = refresh_state(small, VIEWS, at)
    # u1's view left the window; u2's did not, but it is the latest arrival: the minute
    # before the watermark (GRACE) is always read again
    assert (done.full, done.recomputed) == (False, 2)
    assert views(small, at) == {"u1": 0, "u2": 1}
    later = T0 + timedelta(hours=24, minutes=40)
    assert refresh_state(small, VIEWS, later).recomputed == 1  # u2 only


def test_a_late_commit_forces_a_full_recompute(small: Warehouse) -> None:
    # received long before the mark's watermark, committed only now (a stalled writer)
    small.insert(events_table([view("e3", "u3", 10, received=10)]))
    done = refresh_state(small, VIEWS, T0 + timedelta(hours=3))
    assert done.full and done.reason == "events or identity merges deleted or stored late"
    assert views(small, T0 + timedelta(hours=3)) == {"u1": 1, "u2": 1, "u3": 1}


def test_a_commit_within_the_grace_is_read_again(small: Warehouse) -> None:
    mark_received = T0 + timedelta(hours=1) - GRACE  # e2 is the latest received
    late = (mark_received - T0 + GRACE / 2).total_seconds() / 60
    small.insert(events_table([view("e3", "u3", 5, received=late)]))
    done = refresh_state(small, VIEWS, T0 + timedelta(hours=3))
    assert (done.full, done.recomputed) == (False, 2)  # u2 (its minute is read again) and u3
    assert views(small, T0 + timedelta(hours=3)) == {"u1": 1, "u2": 1, "u3": 1}


def test_an_erasure_keeps_the_next_refresh_incremental(small: Warehouse) -> None:
    small.erase_user("u1")
    done = refresh_state(small, VIEWS, T0 + timedelta(hours=3))
    assert (done.full, done.reason) == (False, "incremental")
    assert views(small, T0 + timedelta(hours=3)) == {"u2": 1}


def test_erasures_of_merged_persons_match_scratch(warehouse: Warehouse) -> None:
    # the demo shop with identity merges: erased persons leave the kept rows as a
    # from-scratch computation without them, and the refreshes after stay incremental
    wh, features = warehouse, shop_definitions().features
    events, end = arrivals(seed=5)
    store_until(wh, events, end - timedelta(days=8), end - timedelta(hours=5))
    refresh_state(wh, features, end - timedelta(hours=5))
    merged = wh.con.to_pyarrow(wh.identities.user_id).to_pylist()
    users = sorted({u for u in events["user_id"].to_pylist() if u})
    for person in [*sorted(set(merged))[:3], *users[-2:]]:
        assert wh.erase_user(person) > 0
    store_until(wh, events, end - timedelta(hours=5), end)
    done = refresh_state(wh, features, end)
    assert (done.full, done.reason) == (False, "incremental")
    assert kept(wh, end) == scratch(wh, end)


def test_an_anonymous_id_merged_into_two_users_forces_a_full_recompute(
    small: Warehouse,
) -> None:
    # a1's events belong to u2 (the larger id wins); erasing u1 takes them away from u2
    at = T0 + timedelta(hours=2)
    small.insert(
        events_table([{"event_id": "e3", "type": "page_view", "anonymous_id": "a1",
                       "timestamp": T0 + timedelta(minutes=70), "received_at": T0}]),
        pa.table({"anonymous_id": ["a1", "a1"], "user_id": ["u1", "u2"],
                  "merged_at": [T0, T0]}).cast(IDENTITY_SCHEMA.to_pyarrow()),
    )  # fmt: skip
    refresh_state(small, VIEWS, at)  # full: e3 was received before the mark
    assert views(small, at) == {"u1": 1, "u2": 2}
    small.erase_user("u1")
    done = refresh_state(small, VIEWS, at + timedelta(minutes=1))
    assert done.full
    assert views(small, at + timedelta(minutes=1)) == {"u2": 1}


def test_an_erasure_deletes_the_kept_row(small: Warehouse) -> None:
    # u2's event is within the grace (not in the mark's count): the erasure itself removes
    # the kept row, and nothing is left to bring back
    small.erase_user("u2")
    assert views(small, T0 + timedelta(hours=2)) == {"u1": 1}
    done = refresh_state(small, VIEWS, T0 + timedelta(hours=3))
    assert not done.full
    assert views(small, T0 + timedelta(hours=3)) == {"u1": 1}


def test_other_definitions_force_a_full_recompute(small: Warehouse) -> None:
    lifetime = parse_features({"features": {"views": {"count": {"events": ["page_view"]}}}})
    done = refresh_state(small, lifetime, T0 + timedelta(hours=3))
    assert done.full and done.reason == "definitions changed"


def test_a_lost_mark_forces_a_full_recompute(small: Warehouse) -> None:
    small.con.drop_table(STATE_MARK)
    assert refresh_state(small, VIEWS, T0 + timedelta(hours=3)).reason == ("no stored profiles")


def test_a_failed_refresh_leaves_the_previous_rows(
    small: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    # u1's view leaves the window: its row is deleted, then writing the new one fails
    later = T0 + timedelta(hours=24, minutes=30)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(small.con, "insert", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        refresh_state(small, VIEWS, later)
    monkeypatch.undo()
    assert views(small, T0 + timedelta(hours=2)) == {"u1": 1, "u2": 1}  # rows and mark as before
    done = refresh_state(small, VIEWS, later)
    assert (done.full, done.recomputed) == (False, 2)
    assert views(small, later) == {"u1": 0, "u2": 1}


def test_a_past_instant_is_computed_from_scratch(small: Warehouse) -> None:
    past = T0 + timedelta(minutes=30)
    assert not can_refresh(small, past)
    with pytest.raises(ValueError, match="after"):
        refresh_state(small, VIEWS, past)
    rows = small.con.to_pyarrow(profiles_now(small, VIEWS, QUALITY, past)).to_pylist()
    assert rows == [{"person_id": "u1", "views": 1}]  # u2's view had not happened yet
    assert views(small, T0 + timedelta(hours=2)) == {"u1": 1, "u2": 1}  # kept rows untouched


def test_a_view_of_part_of_the_store_is_computed_from_scratch(small: Warehouse) -> None:
    # a training view stops before `until`: the kept rows (the whole store) do not apply
    view = AsOf(small, T0 + timedelta(minutes=30))
    assert not can_refresh(view, T0 + timedelta(hours=3))
    rows = small.con.to_pyarrow(profiles_now(view, VIEWS, QUALITY, T0 + timedelta(hours=3)))
    assert rows.to_pylist() == [{"person_id": "u1", "views": 1}]


def test_a_new_store_drops_kept_profiles_of_an_old_one(small: Warehouse) -> None:
    # the events dropped (a store rebuilt under the same name): the kept rows would
    # describe persons it no longer has
    small.con.drop_table("events")
    fresh = Warehouse(small.url)
    try:
        assert not set(KEPT_PROFILES) & set(fresh.con.list_tables())
    finally:
        if fresh.backend == "duckdb":
            small.close()
        fresh.close()


def test_an_erasure_waiting_for_a_refresh_does_not_stall_ingestion(small: Warehouse) -> None:
    # a refresh holds its lock (as a long cold build would); the erasure waits for it
    # without holding the store's lock, so the writer goes on storing meanwhile
    refreshing, release = threading.Event(), threading.Event()

    def long_refresh() -> None:
        with _exclusive(small):
            refreshing.set()
            release.wait(10)

    holder = threading.Thread(target=long_refresh)
    holder.start()
    assert refreshing.wait(10)
    erased: list[int] = []
    eraser = threading.Thread(target=lambda: erased.append(small.erase_user("u1")))
    eraser.start()
    small.insert(events_table([view("e9", "u9", 70)]))  # not blocked by the waiting erasure
    assert not erased
    release.set()
    holder.join(10)
    eraser.join(10)
    assert erased == [1]
    done = refresh_state(small, VIEWS, T0 + timedelta(hours=3))
    assert not done.full and views(small, T0 + timedelta(hours=3)) == {"u2": 1, "u9": 1}


def test_a_purge_recomputes_only_the_persons_who_lost_events(warehouse: Warehouse) -> None:
    # retention: events before the cut-off go; the persons who had some are recomputed
    # (their lifetime features change), the others are not, and the result is scratch's
    wh, features = warehouse, shop_definitions().features
    events, end = arrivals(seed=9)
    store_until(wh, events, end - timedelta(days=8), end - timedelta(hours=2))
    refresh_state(wh, features, end - timedelta(hours=2))
    profiled = len(scratch(wh, end - timedelta(hours=2)))
    assert wh.purge_before(end - timedelta(days=5)) > 0
    store_until(wh, events, end - timedelta(hours=2), end)
    done = refresh_state(wh, features, end)
    assert (done.full, done.reason) == (False, "incremental")
    assert done.recomputed < profiled
    assert kept(wh, end) == scratch(wh, end)
    assert refresh_state(wh, features, end).recomputed < done.recomputed  # noted once
