"""The incremental aggregator against a brute-force reading of the documented window rule."""

from __future__ import annotations

import gc
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tailorkit.profile.definitions import parse_features
from tailorkit.profile.online import Profile, ProfilePlan, merge_profiles
from tailorkit.profile.windows import MINUTE_US, resolution

START = 28_000_000  # a minute index in 2023
DOC = {
    "profiles": {"max_distinct": 4},
    "features": {
        f"{kind}_{window}": {kind: {"events": ["e"], "property": "v", "window": window}}
        for kind in ("sum", "min", "max", "distinct")
        for window in ("5m", "1d", "2d", "lifetime")
    }
    | {
        f"count_{window}": {"count": {"events": ["e"], "window": window}}
        for window in ("5m", "1d", "2d", "lifetime")
    }
    | {"first": {"first_seen": {"events": ["e"]}}, "last": {"last_seen": {"events": ["e"]}}},
}
FEATURES = parse_features(DOC)
WINDOWS = {"5m": 5, "1d": 1440, "2d": 2880, "lifetime": None}

event = st.tuples(
    st.integers(0, 6000),  # minute offset
    st.integers(0, 59_999_999),  # microseconds within the minute
    st.one_of(
        st.none(), st.sampled_from(["a", "b", "c", "d", "e", "f"]), st.integers(-50, 50),
        st.floats(-100, 100, allow_nan=False), st.booleans(),
    ),
)  # fmt: skip


def brute_force(events: list[tuple[int, int, Any]], asof: int, name: str) -> Any:
    """The window rule of docs/profiles.md, read literally (events are already <= as-of)."""
    kind, _, window = name.partition("_")
    if kind in ("first", "last"):
        stamps = [(START + m) * MINUTE_US + us for m, us, _ in events]
        return (min if kind == "first" else max)(stamps) if stamps else None
    minutes = WINDOWS[window]
    held = events
    if minutes is not None:
        r = resolution(minutes)
        held = [e for e in events if (START + e[0]) // r > asof // r - minutes // r]
    if kind == "count":
        return len(held)
    numbers = [v for _, _, v in held if isinstance(v, int | float) and not isinstance(v, bool)]
    units = [math.floor(v * 1e6 + 0.5) for v in numbers]
    if kind == "sum":
        return sum(units) / 1e6
    if kind in ("min", "max"):
        return (min if kind == "min" else max)(units) / 1e6 if units else None
    keys = {v if isinstance(v, str) else float(v) for v in numbers} | {
        v for _, _, v in held if isinstance(v, str)
    }
    return min(len(keys), 4)


def feed(plan: ProfilePlan, profile: Profile, events: list[tuple[int, int, Any]]) -> int:
    clock = START
    for minute, us, value in events:
        clock = max(clock, START + minute)
        ts = (START + minute) * MINUTE_US + us
        plan.add_event(profile, "e", ts, clock, {"v": value}, "id")
    return clock


@settings(max_examples=150, deadline=None)
@given(st.lists(event, max_size=40), st.integers(0, 4000), st.randoms(use_true_random=False))
def test_incremental_values_equal_the_brute_force_rule(
    events: list[tuple[int, int, Any]], later: int, rng: Any
) -> None:
    arrival = list(events)
    rng.shuffle(arrival)  # late events included
    plan = ProfilePlan(FEATURES)
    profile = plan.new_profile("u")
    clock = feed(plan, profile, arrival)
    asof = clock + later
    got = plan.values(profile, FEATURES.names, asof)
    for name in FEATURES.names:
        kind, _, window = name.partition("_")
        # a late event older than its window at arrival is dropped: so does the reference
        kept = [e for e in arrival if _inside_at_arrival(e, arrival, window)]
        expected = brute_force(kept if kind not in ("first", "last") else events, asof, name)
        assert got[name] == expected or math.isclose(got[name], expected), name


def _inside_at_arrival(e: tuple[int, int, Any], arrival: list[Any], window: str) -> bool:
    minutes = WINDOWS.get(window)
    if minutes is None:
        return True
    clock = START + max(m for m, _, _ in arrival[: arrival.index(e) + 1])
    r = resolution(minutes)
    return (START + e[0]) // r > clock // r - minutes // r


@settings(max_examples=60, deadline=None)
@given(st.lists(event, max_size=25), st.lists(event, max_size=25))
def test_merging_two_profiles_equals_one_profile_fed_both_histories(
    a: list[tuple[int, int, Any]], b: list[tuple[int, int, Any]]
) -> None:
    a, b = sorted(a, key=_when), sorted(b, key=_when)
    plan = ProfilePlan(FEATURES)
    left, right, both = plan.new_profile("a"), plan.new_profile("b"), plan.new_profile("c")
    clock = max(feed(plan, left, a), feed(plan, right, b))
    feed(plan, both, sorted(a + b, key=_when))
    merge_profiles(plan, left, right, clock)
    assert plan.values(right, FEATURES.names, clock) == plan.values(both, FEATURES.names, clock)


def test_serialized_profiles_read_the_same() -> None:
    plan = ProfilePlan(FEATURES)
    profile = plan.new_profile("u")
    events = [(m * 7 % 3000, m, v) for m, v in enumerate(["a", 3, 2.5, "b", None, -1, "a"] * 9)]
    clock = feed(plan, profile, events)
    copy = Profile.from_bytes(profile.to_bytes())
    for asof in (clock, clock + 3, clock + 1500, clock + 5000):
        assert plan.values(copy, FEATURES.names, asof) == plan.values(profile, FEATURES.names, asof)


def test_memory_per_window_is_bounded_by_its_buckets() -> None:
    plan = ProfilePlan(FEATURES)
    profile = plan.new_profile("u")
    feed(plan, profile, [(m, 0, m) for m in range(0, 20_000, 1)])  # an event every minute
    sizes = {
        s.window: len(profile.streams[s.index].buckets)
        for s in plan.streams
        if s.window is not None
    }
    assert sizes == {5: 5, 1440: 1440, 2880: 1440}  # 2d: 2-minute buckets


def _when(e: tuple[int, int, Any]) -> tuple[int, int]:
    return e[0], e[1]


def test_window_buckets_are_left_untracked_by_the_garbage_collector() -> None:
    """A server holds a profile per user: the collector must not scan every bucket of every
    window, so buckets are tuples of numbers, which it stops tracking after one pass."""
    plan = ProfilePlan(FEATURES)
    profile = plan.new_profile("u")
    feed(plan, profile, [(m * 3, 0, m % 7) for m in range(500)])  # late events below too
    feed(plan, profile, [(10, 5, 2), (1499, 5, 9)])
    gc.collect()
    buckets = [
        bucket
        for s in plan.streams
        if s.window is not None
        for bucket in profile.streams[s.index].buckets
    ]
    assert len(buckets) > 100
    assert not any(gc.is_tracked(bucket) for bucket in buckets)
