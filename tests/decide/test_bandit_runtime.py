"""Live bandits: reward attribution from stored events, expiry, persistence across restarts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from tailorkit.decide.bandit_runtime import BanditRuntime
from tailorkit.decide.engine import DecideRequest
from tailorkit.decide.log import exposure_event
from tailorkit.decide.placements import BanditSpec
from tailorkit.store.warehouse import EVENT_ARROW_SCHEMA
from tests.decide.test_engine import build


def spec(fingerprint: str = "f1", by_segment: tuple[str, ...] = ()) -> BanditSpec:
    return BanditSpec(
        "promo", "thompson", ("sale", "new_in"), 0.0, by_segment, (), {}, "click", 3600.0,
        True, fingerprint,
    )  # fmt: skip


def stored(rows: list[tuple[str, str, str, float]]) -> pa.Table:
    """Events as the collector hands them to ``on_stored``."""
    n = len(rows)
    stamps = [datetime.fromtimestamp(r[3], UTC) for r in rows]
    return pa.table(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "type": [r[1] for r in rows],
            "user_id": [r[0] for r in rows],
            "anonymous_id": [None] * n,
            "timestamp": stamps,
            "received_at": stamps,
            "clock_skew_ms": [None] * n,
            "source": ["http"] * n,
            "properties": [r[2] for r in rows],
            "context": [None] * n,
            "personalization": [True] * n,
        }
    ).cast(EVENT_ARROW_SCHEMA)


def test_rewards_from_stored_events_expiry_and_replacement() -> None:
    runtime = BanditRuntime(seed=3)
    runtime.sync({"promo": spec()})
    picks = {u: runtime.choose(spec(), u, [], {}, "promo", now=1000.0) for u in ("a", "b", "c")}
    runtime.on_stored(
        stored(
            [
                ("a", "click", '{"placement": "promo"}', 1010.0),  # rewarded
                ("b", "click", '{"placement": "other"}', 1010.0),  # another placement
                ("c", "page_view", "{}", 1010.0),  # not the reward event
            ]
        )
    )
    assert runtime.sweep(now=1020.0) == 1  # only a's reward so far
    runtime.choose(spec(), "b", [], {}, "promo", now=1030.0)  # replaces b's first decision: 0
    assert runtime.sweep(now=1040.0) == 1
    assert runtime.sweep(now=1000.0 + 3601.0) == 1  # c expired with no reward
    state = runtime.describe()["promo"]
    assert (state["updates"], state["rewards"], state["decisions"]) == (3, 1.0, 4)
    alpha = state["state"]["successes"]
    assert alpha[picks["a"].arm] == 1.0 and sum(alpha) == 1.0


def test_state_survives_a_restart_unless_the_definition_changed(tmp_path: Path) -> None:
    path = tmp_path / "bandits.json"
    runtime = BanditRuntime(path, seed=1)
    runtime.sync({"promo": spec(by_segment=("vip",))})
    runtime.update("promo", "new_in", 1.0, segment="vip")
    assert runtime.save()
    again = BanditRuntime(path, seed=1)
    again.sync({"promo": spec(by_segment=("vip",))})
    assert again.describe()["promo"]["probabilities"]["vip"][1] > 0.5
    changed = BanditRuntime(path, seed=1)
    changed.sync({"promo": spec("f2", by_segment=("vip",))})
    assert changed.describe()["promo"]["probabilities"] == {}


def test_engine_exposures_have_the_decision_log_shape() -> None:
    engine, logged = build()
    engine.decide(DecideRequest(user_id="u1", anonymous_id="a1"))
    reference = exposure_event(kind="rule", key="k", variation=0, propensity=1.0, user_id="u1")
    for event in logged:
        assert set(event) == set(reference)
        assert event["type"] == "exposure" and len(event["event_id"]) == 36
        assert {"kind", "key", "variation", "variation_key", "propensity"} <= set(
            event["properties"]
        )
        datetime.fromisoformat(event["timestamp"])
