"""Property test: for random event streams, batches and clock moves, online equals batch.

Streams mix types, property types (numbers, numeric strings, booleans,
missing), consent refusals, bot user agents, anonymous visitors who log in,
late events and clock jumps across window and recency boundaries.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailorkit.collect.quality import clean_events, flagged_users
from tailorkit.collect.validate import identities_from
from tailorkit.project.loader import QualitySettings
from tailorkit.segment.definitions import parse_definitions
from tailorkit.segment.online import SegmentEngine, events_table
from tailorkit.store.warehouse import Warehouse
from tests.segment.common import batch_rows, differences, online_rows

T0 = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
DOC: dict[str, Any] = {
    "profiles": {"max_distinct": 3},
    "features": {
        "views_30m": {"count": {"events": ["view"], "window": "30m"}},
        "views_2d": {"count": {"events": ["view"], "window": "2d"}},
        "carts_24h": {"count": {"events": ["cart"], "window": "24h"}},
        "cheap_views_3d": {
            "count": {"events": ["view"], "where": {"price": {"$lt": 20}}, "window": "3d"}
        },
        "red_views": {
            "count": {
                "events": ["view"],
                "where": {"$or": [{"color": "red"}, {"color": {"$in": ["crimson", 7]}}]},
            }
        },
        "spend_3d": {"sum": {"events": ["buy"], "property": "revenue", "window": "3d"}},
        "spend": {"sum": {"events": ["buy"], "property": "revenue"}},
        "top_price_2d": {"max": {"events": ["view", "cart"], "property": "price", "window": "2d"}},
        "low_price": {"min": {"events": ["view"], "property": "price"}},
        "colors_2d": {"distinct": {"events": ["view"], "property": "color", "window": "2d"}},
        "colors": {"distinct": {"events": ["view"], "property": "color"}},
        "first_seen": {"first_seen": {}},
        "last_buy": {"last_seen": {"events": ["buy"]}},
        "days_since_buy": {"recency": "last_buy"},
        "age_days": {"recency": "first_seen"},
        "cart_rate": {"ratio": ["carts_24h", "views_2d"]},
        "score": {"score": {"weights": {"views_2d": 1.5, "spend": 0.1}, "transform": "log1p"}},
        # counts read only by a score (and by thresholds): expiry checked only above its bound
        "pages_1d": {"count": {"events": ["page"], "window": "1d"}},
        "activity": {"score": {"weights": {"pages_1d": 1, "views_30m": 0.5}}},
        "tier": {"trait": {"key": "tier", "type": "string"}},
        "vip_flag": {"trait": {"key": "vip", "type": "boolean"}},
    },
    "segments": {
        "browsing": {"condition": {"views_30m": {"$gte": 2}}},
        "abandoner": {
            "condition": {"views_2d": {"$gt": 2}, "carts_24h": {"$gte": 1}, "spend_3d": 0}
        },
        "recent": {
            "condition": {"days_since_buy": {"$exists": True, "$lt": 1.5}},
            "exclusive_group": "life",
            "priority": 2,
        },
        "lapsed": {
            "condition": {"days_since_buy": {"$gte": 1.5}},
            "exclusive_group": "life",
            "priority": 1,
        },
        "newbie": {"condition": {"age_days": {"$lte": 0.5}}, "exclusive_group": "life"},
        "picky": {"condition": {"colors_2d": {"$gte": 2}, "$not": {"cart_rate": {"$gt": 0.5}}}},
        "collector": {"condition": {"colors": 3}},
        "rich": {"condition": {"$or": [{"spend": {"$gt": 50}}, {"top_price_2d": {"$gte": 90}}]}},
        "bargain": {"condition": {"low_price": {"$lt": 10}, "cheap_views_3d": {"$gte": 1}}},
        "red": {"condition": {"red_views": {"$in": [1, 2]}}},
        "gold": {"condition": {"tier": {"$in": ["gold", "platinum"]}, "vip_flag": {"$ne": False}}},
        "engaged": {"condition": {"score": {"$gte": 2.2}}},
        "active": {"condition": {"activity": {"$gte": 2}}},
    },
}
DEFS = parse_definitions(DOC)
PEOPLE = [("u1", None), ("u2", None), (None, "a1"), (None, "a2"), ("u3", "a3")]
LOGINS = {"a1": "u1", "a2": "u4"}

values = st.one_of(
    st.none(),
    st.integers(-5, 120),
    st.floats(0, 120, allow_nan=False).map(lambda x: round(x, 3)),
    st.sampled_from(["15", "abc", "", "99.5"]),
    st.booleans(),
)


@st.composite
def event(draw: st.DrawFn) -> dict[str, Any]:
    user, anon = draw(st.sampled_from(PEOPLE))
    kind = draw(st.sampled_from(["view", "view", "cart", "buy", "page", "identify"]))
    props: dict[str, Any] = {}
    for key in ("price", "revenue"):
        if draw(st.booleans()):
            props[key] = draw(values)
    if draw(st.booleans()):
        props["color"] = draw(st.sampled_from(["red", "blue", "green", "crimson", 7, 7.0, True]))
    if kind == "identify":
        props = {"tier": draw(st.sampled_from(["gold", "free", 3])), "vip": draw(st.booleans())}
        if anon in LOGINS:
            user = LOGINS[anon]
    context = {"user_agent": "curl/8.0" if draw(st.integers(0, 40)) == 0 else "Mozilla/5.0"}
    return {
        "type": kind,
        "user_id": user,
        "anonymous_id": anon,
        "timestamp": T0 + timedelta(seconds=draw(st.integers(0, 4 * 86400))),
        "properties": props,
        "context": context,
        "personalization": draw(st.integers(0, 12)) != 0,
    }


@settings(
    max_examples=int(__import__("os").environ.get("TK_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    rows=st.lists(event(), min_size=1, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=4),
    shuffle=st.randoms(use_true_random=False),
    end_gap=st.integers(0, 3 * 86400),
)
def test_online_equals_batch_on_random_streams(
    rows: list[dict[str, Any]], cuts: list[int], shuffle: Any, end_gap: int
) -> None:
    for i, row in enumerate(rows):
        row["event_id"] = f"e{i:04d}"
    ordered = sorted(rows, key=lambda r: r["timestamp"])
    # arrival order: mostly in time order, with some late batches
    bounds = sorted({0, len(ordered), *(c % (len(ordered) + 1) for c in cuts)})
    batches = [ordered[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    if len(batches) > 2:
        shuffle.shuffle(batches)
    engine = SegmentEngine(DEFS)
    for batch in batches:
        engine.process(events_table(batch))
        engine.advance_to(max(r["timestamp"] for r in batch) + timedelta(seconds=end_gap // 7))
    at = max(r["timestamp"] for r in rows) + timedelta(seconds=end_gap)
    engine.advance_to(at)

    wh = Warehouse("duckdb://:memory:")
    table = events_table(ordered)
    wh.insert(table, identities_from(table))
    quality = QualitySettings()
    # what the server's periodic refresh does: bots and outliers flagged in batch
    engine.set_flagged(flagged_users(wh, quality).person_id.to_pyarrow().to_pylist())
    batch = batch_rows(DEFS, clean_events(wh, quality), at)
    assert differences(DEFS, batch, online_rows(engine)) == {}
