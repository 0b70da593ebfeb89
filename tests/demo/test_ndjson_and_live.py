"""Canonical event dicts, NDJSON files and live sessions share one format."""

from __future__ import annotations

import doctest
import importlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest

from tailorkit.demo import (
    SESSION_GAP,
    DemoShop,
    demo_users,
    iter_event_dicts,
    new_user,
    simulate_session,
    write_ndjson,
)

MODULES = [
    "tailorkit.demo",
    "tailorkit.demo.catalog",
    "tailorkit.demo.generator",
    "tailorkit.demo.ndjson",
    "tailorkit.demo.personas",
]
KEYS = {
    "event_id",
    "type",
    "user_id",
    "anonymous_id",
    "timestamp",
    "properties",
    "context",
    "consent",
}


def test_event_dicts_match_the_table(shop: DemoShop) -> None:
    table = shop.events.slice(0, 3_000)
    rows = table.to_pylist()
    for event, row in zip(iter_event_dicts(table), rows, strict=True):
        assert set(event) == KEYS
        assert datetime.fromisoformat(event["timestamp"]) == row["timestamp"]
        assert event["timestamp"].endswith("+00:00")
        assert event["properties"] == orjson.loads(row["properties"])
        assert event["context"] == orjson.loads(row["context"])
        assert event["consent"] == orjson.loads(row["consent"])
        for key in ("event_id", "type", "user_id", "anonymous_id"):
            assert event[key] == row[key]


def test_write_ndjson_writes_the_same_dicts(shop: DemoShop, tmp_path: Path) -> None:
    table = shop.events.slice(1_000, 5_000)
    path = tmp_path / "events.ndjson"
    assert write_ndjson(table, path) == table.num_rows
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == list(iter_event_dicts(table))


def test_simulated_sessions_follow_the_model_and_identify_once() -> None:
    rng = np.random.default_rng(3)
    user = new_user(rng, 42)
    user.will_identify = True
    start = datetime(2024, 6, 1, 18, tzinfo=UTC)
    seen_identify = False
    for _ in range(40):
        events = simulate_session(rng, user, start)
        assert events[0]["type"] == "page_view"
        assert all(set(e) == KEYS for e in events)
        stamps = [datetime.fromisoformat(e["timestamp"]) for e in events]
        assert stamps == sorted(stamps) and stamps[0] == start
        assert stamps[-1] - start < SESSION_GAP
        assert len({e["context"]["session_id"] for e in events}) == 1
        kinds = [e["type"] for e in events]
        if "identify" in kinds:
            assert not seen_identify, "a visitor identifies once"
            seen_identify = True
            assert events[kinds.index("identify")]["properties"]["email"] == user.traits["email"]
        if seen_identify:
            assert user.identified
        start += SESSION_GAP + timedelta(hours=20)
    assert seen_identify
    later = simulate_session(rng, user, start)
    assert all(e["user_id"] == "u0000042" for e in later)


def test_demo_users_continue_the_generated_visitors(shop: DemoShop) -> None:
    users = demo_users(shop)
    table = shop.users.to_pandas()
    assert [u.anonymous_id for u in users] == list(table.anonymous_id)
    assert [u.persona for u in users] == list(table.persona)
    assert [u.identified for u in users] == list(table.user_id.notna())
    known = next(u for u in users if u.identified and not u.is_bot)
    events = simulate_session(np.random.default_rng(0), known, shop.end)
    assert all(e["user_id"] == known.user_id for e in events)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
