"""The online executor on hand-made scenarios, checked against the batch executor too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tailorkit.profile.windows import MINUTE_US, to_us
from tailorkit.segment.definitions import parse_definitions
from tailorkit.segment.online import Change, SegmentEngine, events_table
from tailorkit.store.warehouse import Warehouse
from tests.segment.common import batch_rows, differences, online_rows

T0 = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
DOC: dict[str, Any] = {
    "features": {
        "views_24h": {"count": {"events": ["product_view"], "window": "24h"}},
        "carts_24h": {"count": {"events": ["add_to_cart"], "window": "24h"}},
        "buys_24h": {"count": {"events": ["purchase"], "window": "24h"}},
        "last_seen": {"last_seen": {}},
        "days_idle": {"recency": "last_seen"},
        "plan": {"trait": {"key": "plan", "type": "string"}},
        "spend": {"sum": {"events": ["purchase"], "property": "revenue"}},
        "views_lifetime": {"count": {"events": ["product_view"]}},
    },
    "segments": {
        "cart_abandoners": {
            "condition": {"views_24h": {"$gt": 3}, "carts_24h": {"$gte": 1}, "buys_24h": 0},
            "priority": 5,
        },
        "idle": {"condition": {"days_idle": {"$gte": 2}}},
        "pro": {"condition": {"plan": "pro"}},
        "vip": {"condition": {"spend": {"$gte": 100}}, "exclusive_group": "tier", "priority": 2},
        "buyer": {
            "condition": {"spend": {"$gt": 0}},
            "exclusive_group": "tier",
            "priority": 1,
            "min_users": 2,
        },
    },
}
DEFS = parse_definitions(DOC)


class Recorder:
    def __init__(self) -> None:
        self.changes: list[Change] = []

    def __call__(self, changes: list[Change]) -> None:
        self.changes.extend(changes)

    def of(self, segment: str) -> list[tuple[str, str, datetime, str]]:
        return [
            (c.person, c.kind.removeprefix("segment_"), _at(c.ts_us), c.reason)
            for c in self.changes
            if c.segment == segment
        ]


def _at(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


_seq = iter(range(1_000_000))


def ev(kind: str, at: datetime, user: str | None = "u1", **extra: Any) -> dict[str, Any]:
    return {"event_id": f"e{next(_seq):07d}", "type": kind, "user_id": user, "timestamp": at,
            **extra}  # fmt: skip


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def engine(rec: Recorder) -> SegmentEngine:
    return SegmentEngine(DEFS, on_changes=rec)


def agree_with_batch(engine: SegmentEngine, rows: list[dict[str, Any]], at: datetime) -> None:
    """The batch executor over the same events gives the same profiles and memberships."""
    wh = Warehouse("duckdb://:memory:")
    table = events_table(rows)
    identities = wh.identities.to_pyarrow().schema.empty_table()
    from tailorkit.collect.validate import identities_from

    wh.insert(table, identities_from(table) if table.num_rows else identities)
    engine.advance_to(at)
    assert differences(DEFS, batch_rows(DEFS, wh.resolved_events(), at), online_rows(engine)) == {}


def test_cart_abandoner_enters_on_the_qualifying_event_and_leaves_when_the_window_moves(
    engine: SegmentEngine, rec: Recorder
) -> None:
    rows = [ev("product_view", T0 + timedelta(minutes=i)) for i in range(4)]
    rows.append(ev("add_to_cart", T0 + timedelta(minutes=5, seconds=7)))
    engine.process(events_table(rows))
    assert rec.of("cart_abandoners") == [
        ("u1", "entered", T0 + timedelta(minutes=5, seconds=7), "event")
    ]
    # the first view leaves the 24 h window at 10:00 the next day: 3 views remain
    engine.advance_to(T0 + timedelta(days=1, seconds=59))
    assert rec.of("cart_abandoners")[-1] == ("u1", "exited", T0 + timedelta(days=1), "window")
    agree_with_batch(engine, rows, T0 + timedelta(days=1, minutes=2))


def test_buying_leaves_the_segment_at_once(engine: SegmentEngine, rec: Recorder) -> None:
    rows = [ev("product_view", T0 + timedelta(minutes=i)) for i in range(4)]
    rows += [ev("add_to_cart", T0 + timedelta(minutes=5))]
    rows += [ev("purchase", T0 + timedelta(minutes=9), properties={"revenue": 19.99})]
    engine.process(events_table(rows))
    assert [c[1:] for c in rec.of("cart_abandoners")] == [
        ("entered", T0 + timedelta(minutes=5), "event"),
        ("exited", T0 + timedelta(minutes=9), "event"),
    ]
    agree_with_batch(engine, rows, T0 + timedelta(hours=1))


def test_the_clock_alone_moves_users_into_recency_segments(
    engine: SegmentEngine, rec: Recorder
) -> None:
    rows = [ev("page_view", T0 + timedelta(seconds=30))]
    engine.process(events_table(rows))
    assert rec.of("idle") == []
    engine.advance_to(T0 + timedelta(days=2) - timedelta(seconds=1))
    assert rec.of("idle") == []
    engine.advance_to(T0 + timedelta(days=5))
    # exactly two days after the minute of the last event, whenever the sweep runs
    assert rec.of("idle") == [("u1", "entered", T0 + timedelta(days=2), "window")]
    engine.process(events_table([ev("page_view", T0 + timedelta(days=5, minutes=1))]))
    assert rec.of("idle")[-1][1:] == ("exited", T0 + timedelta(days=5, minutes=1), "event")


def test_traits_follow_the_latest_identify_of_the_declared_type(
    engine: SegmentEngine, rec: Recorder
) -> None:
    rows = [
        ev("identify", T0, properties={"plan": "pro"}),
        ev("identify", T0 + timedelta(minutes=1), properties={"plan": 5}),  # wrong type
        ev("identify", T0 + timedelta(minutes=2), properties={"email": "x"}),  # no plan
    ]
    engine.process(events_table(rows))
    assert [c[1] for c in rec.of("pro")] == ["entered"]
    later = [ev("identify", T0 + timedelta(minutes=3), properties={"plan": "free"})]
    engine.process(events_table(later))
    assert [c[1] for c in rec.of("pro")] == ["entered", "exited"]
    agree_with_batch(engine, rows + later, T0 + timedelta(minutes=10))


def test_a_trait_no_segment_reads_is_still_on_the_profile() -> None:
    # templates and the profile API read traits too (the decide test's first_name)
    engine = SegmentEngine(
        parse_definitions(
            {
                "features": {
                    "first_name": {"trait": {"key": "first_name_plain", "type": "string"}},
                    "carts": {"count": {"events": ["add_to_cart"], "window": "24h"}},
                },
                "segments": {"carting": {"condition": {"carts": {"$gte": 1}}}},
            }
        )
    )
    rows = [
        ev("identify", T0, properties={"first_name_plain": "Grace"}),
        ev("add_to_cart", T0 + timedelta(minutes=1)),
    ]
    engine.process(events_table(rows))
    assert engine.features("u1") == {"first_name": "Grace", "carts": 1}


def test_exclusive_group_keeps_only_the_highest_priority_match(
    engine: SegmentEngine, rec: Recorder
) -> None:
    rows = [ev("purchase", T0, properties={"revenue": 40.0})]
    engine.process(events_table(rows))
    assert engine.members("u1") == ["buyer"]
    more = [ev("purchase", T0 + timedelta(hours=1), properties={"revenue": 60.0})]
    engine.process(events_table(more))
    assert engine.members("u1") == ["vip"]
    assert [c[1] for c in rec.of("buyer")] == ["entered", "exited"]
    why = engine.describe("u1")
    assert why is not None
    assert why["explanations"]["buyer"]["held"] is True
    assert why["explanations"]["buyer"]["member"] is False
    assert why["explanations"]["buyer"]["excluded_by"] == "vip"
    assert why["features"]["spend"] == 100.0
    agree_with_batch(engine, rows + more, T0 + timedelta(hours=2))


def test_withdrawn_consent_leaves_every_segment_and_hides_the_profile(
    engine: SegmentEngine, rec: Recorder
) -> None:
    rows = [ev("purchase", T0, properties={"revenue": 150.0})]
    engine.process(events_table(rows))
    assert engine.members("u1") == ["vip"]
    refusal = [ev("page_view", T0 + timedelta(minutes=1), personalization=False)]
    engine.process(events_table(refusal))
    assert engine.members("u1") == [] and engine.features("u1") is None
    assert rec.of("vip")[-1][1:] == ("exited", T0 + timedelta(minutes=1), "consent")
    assert engine.describe("u1")["not_profiled_because"] == "no personalization consent"
    agree_with_batch(engine, rows + refusal, T0 + timedelta(minutes=5))
    again = [ev("page_view", T0 + timedelta(minutes=9))]
    engine.process(events_table(again))
    assert engine.members("u1") == ["vip"]  # the consented history counts again
    agree_with_batch(engine, rows + refusal + again, T0 + timedelta(minutes=10))


def test_bots_are_not_segmented(engine: SegmentEngine) -> None:
    rows = [
        ev("purchase", T0, properties={"revenue": 150.0}),
        ev("page_view", T0 + timedelta(minutes=1), context={"user_agent": "Googlebot/2.1"}),
    ]
    engine.process(events_table(rows))
    assert engine.members("u1") == []
    assert engine.describe("u1")["not_profiled_because"] == "bot user agent"


def test_identify_merges_the_anonymous_profile_into_the_user(
    engine: SegmentEngine, rec: Recorder
) -> None:
    anon = [
        ev("product_view", T0 + timedelta(minutes=i), user=None, anonymous_id="a1")
        for i in range(4)
    ]
    anon.append(ev("add_to_cart", T0 + timedelta(minutes=4), user=None, anonymous_id="a1"))
    engine.process(events_table(anon))
    assert engine.members("a1") == ["cart_abandoners"]
    login = [ev("identify", T0 + timedelta(minutes=6), user="u9", anonymous_id="a1")]
    later = [ev("product_view", T0 + timedelta(minutes=7), user=None, anonymous_id="a1")]
    engine.process(events_table(login + later))
    assert engine.members("u9") == ["cart_abandoners"]
    assert engine.store.get("a1") is None
    assert engine.features("a1")["views_lifetime"] == 5  # the anonymous id now follows u9
    assert ("a1", "exited", T0 + timedelta(minutes=6), "merged") in rec.of("cart_abandoners")
    agree_with_batch(engine, anon + login + later, T0 + timedelta(minutes=8))


def test_late_events_count_only_while_inside_their_window(engine: SegmentEngine) -> None:
    now = [ev("product_view", T0 + timedelta(days=2))]
    late = [
        ev("product_view", T0 + timedelta(days=1, hours=1)),  # inside the 24 h window
        ev("product_view", T0),  # older than the window: lifetime only
    ]
    engine.process(events_table(now))
    engine.process(events_table(late))
    values = engine.features("u1")
    assert values is not None
    assert (values["views_24h"], values["views_lifetime"]) == (2, 3)
    agree_with_batch(engine, now + late, T0 + timedelta(days=2, minutes=1))


def test_min_users_flags_keep_small_segments_out_of_targeting(engine: SegmentEngine) -> None:
    engine.process(events_table([ev("purchase", T0, properties={"revenue": 10.0})]))
    assert engine.members("u1") == ["buyer"]
    assert engine.attributes("u1")["segments"] == []  # buyer needs 2 members
    engine.process(events_table([ev("purchase", T0, user="u2", properties={"revenue": 10.0})]))
    assert engine.attributes("u1")["segments"] == ["buyer"]
    assert engine.sizes()["buyer"] == 2


def test_tailorkits_own_events_never_feed_profiles(engine: SegmentEngine) -> None:
    rows = [ev("segment_entered", T0, properties={"segment": "vip"})]
    assert engine.process(events_table(rows)) == []
    assert engine.store.get("u1") is None


def test_window_exits_use_the_minute_the_window_moved(rec: Recorder) -> None:
    engine = SegmentEngine(DEFS, on_changes=rec)
    rows = [ev("product_view", T0 + timedelta(minutes=i, seconds=50)) for i in range(4)]
    rows.append(ev("add_to_cart", T0 + timedelta(minutes=10)))
    engine.process(events_table(rows))
    engine.advance_to(T0 + timedelta(days=3))
    exits = [c for c in rec.changes if c.kind == "segment_exited"]
    assert [c.ts_us for c in exits] == [to_us(T0) + 1440 * MINUTE_US]


def test_forget_erases_the_online_profile_without_writing_events(
    engine: SegmentEngine, rec: Recorder
) -> None:
    rows = [ev("purchase", T0, properties={"revenue": 150.0})]
    rows.append(ev("page_view", T0, user=None, anonymous_id="a7"))
    engine.process(events_table(rows))
    assert engine.sizes()["vip"] == 1
    before = len(rec.changes)
    assert engine.forget("u1", ["a7"]) is True
    assert engine.store.get("u1") is None and engine.store.get("a7") is None
    assert engine.sizes()["vip"] == 0 and len(rec.changes) == before
    assert engine.forget("u1") is False


def test_an_event_from_the_future_does_not_move_everybodys_windows(
    engine: SegmentEngine,
) -> None:
    now = datetime.now(UTC)
    engine.process(events_table([ev("product_view", now - timedelta(minutes=1))]))
    engine.process(events_table([ev("page_view", now + timedelta(days=3), user="u2")]))
    assert engine.clock_us <= to_us(now) + 6 * MINUTE_US
    assert engine.features("u1")["views_24h"] == 1  # not expired by the bogus date


SCORED = parse_definitions(
    {
        "features": {
            "views_1h": {"count": {"events": ["product_view"], "window": "60m"}},
            "carts_2h": {"count": {"events": ["add_to_cart"], "window": "120m"}},
            "activity": {"score": {"weights": {"views_1h": 1, "carts_2h": 1}}},
        },
        "segments": {"active": {"condition": {"activity": {"$gte": 3}}}},
    }
)


@pytest.mark.parametrize(
    ("views", "carts"),
    [
        ([0, 0], [30]),  # the last event (a cart) reaches the bound
        ([0], [50, 50]),  # carts reach it while the views (no timer below it) expire first
    ],
)
def test_a_score_that_windows_lower_leaves_when_its_first_input_expires(
    rec: Recorder, views: list[int], carts: list[int]
) -> None:
    engine = SegmentEngine(SCORED, on_changes=rec)
    assert engine.falling_scores == {"activity"}  # expiry checked only above the bound
    rows = [ev("product_view", T0 + timedelta(minutes=m)) for m in views]
    rows += [ev("add_to_cart", T0 + timedelta(minutes=m)) for m in carts]
    engine.process(events_table(sorted(rows, key=lambda r: r["timestamp"])))
    engine.advance_to(T0 + timedelta(hours=5))
    entered = T0 + timedelta(minutes=max(views + carts))
    # views leave 60 minutes after 10:00: the score falls to 1 or 2 then
    assert rec.of("active") == [
        ("u1", "entered", entered, "event"),
        ("u1", "exited", T0 + timedelta(minutes=60), "window"),
    ]


def test_a_falling_count_wakes_only_where_a_comparison_can_change() -> None:
    """``$gt: 3`` changes between 3 and 4: once the count is down to 3, expiry changes nothing,
    so the profile is not woken again (it was, at every expiry near the threshold)."""
    defs = parse_definitions({
        "features": {"views_24h": {"count": {"events": ["product_view"], "window": "24h"}}},
        "segments": {"browsers": {"condition": {"views_24h": {"$gt": 3}}}},
    })  # fmt: skip
    rec = Recorder()
    engine = SegmentEngine(defs, on_changes=rec)
    engine.process(events_table([ev("product_view", T0 + timedelta(minutes=i)) for i in range(6)]))
    engine.advance_to(T0 + timedelta(days=1, minutes=2))
    assert rec.of("browsers") == [
        ("u1", "entered", T0 + timedelta(minutes=3), "event"),
        ("u1", "exited", T0 + timedelta(days=1, minutes=2), "window"),  # 3 views left
    ]
    profile = engine.store.get("u1")
    assert profile is not None and profile.wake is None


def test_a_recency_wakes_only_at_the_minute_its_comparison_changes() -> None:
    """``$lt: 2`` days turns false at exactly 2 days (2.0 < 2 is false), not a minute later."""
    defs = parse_definitions({
        "features": {"first_seen": {"first_seen": {}}, "age": {"recency": "first_seen"}},
        "segments": {"new": {"condition": {"age": {"$lt": 2}}}},
    })  # fmt: skip
    rec = Recorder()
    engine = SegmentEngine(defs, on_changes=rec)
    engine.process(events_table([ev("page_view", T0)]))
    engine.advance_to(T0 + timedelta(days=2))
    assert rec.of("new") == [
        ("u1", "entered", T0, "event"),
        ("u1", "exited", T0 + timedelta(days=2), "window"),
    ]
    profile = engine.store.get("u1")
    assert profile is not None and profile.wake is None
