"""The in-process decision memory: dwell, caps, first logs, bounds, and no GC burden."""

from __future__ import annotations

import gc

from tailorkit.decide.memory import MAX_SHOWINGS, UserMemory


def test_dwell_caps_and_first_logs() -> None:
    memory = UserMemory()
    memory.remember("u", "hero", "a", "rule", "r1", now=10.0)
    memory.remember("u", "hero", "a", "rule", "r1", now=20.0)  # same variant: clock kept
    held = memory.held("u", "hero", dwell=15.0, now=24.0)
    assert held is not None and (held.variant, held.rule, held.since) == ("a", "r1", 10.0)
    assert memory.held("u", "hero", dwell=15.0, now=25.0) is None
    memory.remember("u", "hero", "b", "bandit", None, now=30.0)  # another variant: new clock
    assert memory.held("u", "hero", dwell=15.0, now=44.0).variant == "b"  # type: ignore[union-attr]
    assert memory.capped("u", "hero", "a", 2, 100.0, now=50.0)
    assert not memory.capped("u", "hero", "a", 3, 100.0, now=50.0)
    assert not memory.capped("u", "hero", "a", 2, 100.0, now=115.0)  # the first one is out
    assert memory.first_log("u", "hero", "a", period=60.0, now=0.0)
    assert not memory.first_log("u", "hero", "a", period=60.0, now=59.0)
    assert memory.first_log("u", "hero", "a", period=60.0, now=61.0)


def test_showings_keep_the_latest_and_users_are_bounded() -> None:
    memory = UserMemory(max_users=2)
    for t in range(MAX_SHOWINGS + 10):
        memory.remember("u", "p", "v", "rule", None, now=float(t))
    last = float(MAX_SHOWINGS + 9)
    assert memory.capped("u", "p", "v", MAX_SHOWINGS, 1000.0, now=last)
    assert not memory.capped("u", "p", "v", MAX_SHOWINGS + 1, 1000.0, now=last)
    memory.remember("v", "p", "v", "rule", None, now=1.0)
    memory.remember("w", "p", "v", "rule", None, now=1.0)  # "u" is the least recent: out
    assert len(memory) == 2 and not memory.capped("u", "p", "v", 1, 1000.0, now=last)
    assert memory.forget(["v", "nobody"]) == 1 and len(memory) == 1


def test_remembered_users_are_not_tracked_by_the_garbage_collector() -> None:
    # A full collection scans every tracked object: per-user objects would make
    # its pause grow with the users in memory (seconds at a few hundred thousand).
    memory = UserMemory()
    gc.collect()
    before = len(gc.get_objects())
    for i in range(5_000):
        for placement in ("hero", "recs", "banner"):
            memory.remember(f"user-{i}", placement, "v", "rule", "r", now=float(i))
            memory.first_log(f"user-{i}", placement, "v", period=60.0, now=float(i))
    gc.collect()
    gc.collect()  # containers are untracked once their contents were
    assert len(gc.get_objects()) - before < 100
