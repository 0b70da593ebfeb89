"""Journeys: our PrefixSpan finds exactly what the ``prefixspan`` package finds; funnels and
next steps agree with brute force."""

from __future__ import annotations

import numpy as np
import pytest
from prefixspan import PrefixSpan

from tailorkit.learn.data import fetch, session_steps
from tailorkit.segment.journeys import (
    EXIT,
    collapse_repeats,
    encode,
    funnel,
    next_steps,
    prefixspan,
)
from tests.learn.shop import demo_shop


@pytest.fixture(scope="module")
def sessions() -> list[list[str]]:
    s = demo_shop()
    frame = fetch(s.wh, session_steps(s.events, detail="category"))
    return [collapse_repeats(list(steps)) for steps in frame.steps]


def reference(db: list[list[str]], min_support: int, max_length: int) -> set[tuple[int, tuple]]:
    ps = PrefixSpan(db)
    ps.maxlen = max_length
    return {(sup, tuple(p)) for sup, p in ps.frequent(min_support)}


def ours(db: list[list[str]], min_support: float, max_length: int) -> set[tuple[int, tuple]]:
    return {(p.support, p.steps) for p in prefixspan(encode(db), min_support, max_length)}


def test_same_patterns_as_the_prefixspan_package_on_demo_sessions(
    sessions: list[list[str]],
) -> None:
    minsup = int(np.ceil(0.01 * len(sessions)))
    expected = reference(sessions, minsup, 4)
    assert len(expected) > 50
    assert ours(sessions, minsup, 4) == expected
    assert ours(sessions, 0.01, 4) == expected  # the same threshold given as a share


def test_same_patterns_on_random_databases() -> None:
    rng = np.random.default_rng(1)
    for trial in range(30):
        n_items = int(rng.integers(2, 6))
        db = [
            [f"s{x}" for x in rng.integers(0, n_items, int(rng.integers(0, 9)))]
            for _ in range(int(rng.integers(1, 40)))
        ]
        minsup = int(rng.integers(1, 5))
        assert ours(db, minsup, 6) == reference(db, minsup, 6), f"trial {trial}"


def test_top_k_has_the_package_supports(sessions: list[list[str]]) -> None:
    ps = PrefixSpan(sessions)
    ps.maxlen = 5
    expected = [sup for sup, _ in ps.topk(25)]
    found = prefixspan(encode(sessions), 1, max_length=5, top_k=25)
    assert [p.support for p in found] == expected
    full = {(p.support, p.steps) for p in prefixspan(encode(sessions), min(expected), 5)}
    assert {(p.support, p.steps) for p in found} <= full


def test_min_length_and_weights() -> None:
    db = encode([["a", "b"], ["a", "b"], ["b"]], weights=[2, 1, 5])
    found = {(p.support, p.steps) for p in prefixspan(db, 1, min_length=2)}
    assert found == {(3, ("a", "b"))}
    assert db.total == 8 and db.starts.size == 2  # identical sequences stored once


def brute_funnel(seqs: list[list[str]], steps: list[str]) -> list[int]:
    counts = [0] * len(steps)
    for seq in seqs:
        pos = 0
        for i, step in enumerate(steps):
            try:
                pos = seq.index(step, pos) + 1
            except ValueError:
                break
            counts[i] += 1
    return counts


def test_funnel_per_group_matches_brute_force(sessions: list[list[str]]) -> None:
    steps = ["product_view:shoes", "add_to_cart:shoes", "checkout", "purchase"]
    groups = ["even" if i % 2 == 0 else "odd" for i in range(len(sessions))]
    result = funnel(encode(sessions, groups), steps)
    for name in ("even", "odd"):
        members = [s for s, g in zip(sessions, groups, strict=True) if g == name]
        assert [row["count"] for row in result[name]] == brute_funnel(members, steps)
    rows = result["all"]
    assert [r["count"] for r in rows] == brute_funnel(sessions, steps)
    assert rows[1]["conversion"] == pytest.approx(rows[1]["count"] / rows[0]["count"], abs=1e-4)
    assert rows[1]["drop_off"] == pytest.approx(1 - rows[1]["conversion"], abs=1e-4)
    assert funnel(encode(sessions), ["nope", "checkout"])["all"][1]["count"] == 0


def test_next_steps_match_brute_force(sessions: list[list[str]]) -> None:
    path = ["page_view", "search"]
    counts: dict[str, int] = {}
    for seq in sessions:
        for i in range(len(seq) - 1):
            if seq[i : i + 2] == path:
                nxt = seq[i + 2] if i + 2 < len(seq) else EXIT
                counts[nxt] = counts.get(nxt, 0) + 1
    found = next_steps(encode(sessions), path, top=100)
    assert {r["step"]: r["count"] for r in found} == counts
    assert found[0]["count"] == max(counts.values())
    assert next_steps(encode(sessions), ["never-seen"]) == []
