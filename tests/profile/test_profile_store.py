"""Profile stores: one contract for the in-process store and Redis; engines agree on both."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis

from tailorkit.demo import generate_shop
from tailorkit.profile.online import Profile
from tailorkit.segment.online import SegmentEngine
from tailorkit.store.profiles import MemoryProfileStore, ProfileStore, RedisProfileStore
from tests.segment.common import shop_definitions, stored_events

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_store() -> Iterator[RedisProfileStore]:
    store = RedisProfileStore(redis.Redis.from_url(REDIS_URL), f"tk-test-{uuid.uuid4().hex}:")
    yield store
    store.clear()
    assert not list(store.redis.scan_iter(match=f"{store.prefix}*"))


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> ProfileStore:
    if request.param == "memory":
        return MemoryProfileStore()
    fixture: ProfileStore = request.getfixturevalue("redis_store")
    return fixture


def test_store_contract(store: ProfileStore) -> None:
    def create(profiles):  # type: ignore[no-untyped-def]
        for person in profiles:
            profiles[person] = Profile(person, 2)
            profiles[person].members = 5
        return len(profiles)

    assert store.update(["u1", "u2"], create) == 2
    assert sorted(store.persons()) == ["u1", "u2"]
    assert store.get("u1") is not None and store.get("u1").members == 5  # type: ignore[union-attr]

    def delete(profiles):  # type: ignore[no-untyped-def]
        assert profiles["u2"] is not None and profiles["u3"] is None
        profiles["u2"] = None

    store.update(["u2", "u3"], delete)
    assert sorted(store.persons()) == ["u1"]
    store.set_aliases({"a1": "u1"})
    store.set_aliases({"a1": "u9", "a2": "u2"})  # the first merge stays
    assert store.aliases(["a1", "a2", "a3"]) == {"a1": "u1", "a2": "u2"}
    store.schedule({"u1": 100, "u2": 105})
    store.schedule({"u1": 90})  # an earlier check replaces a later one
    assert sorted(store.due(95)) == ["u1"]
    assert store.due(95) == [] and store.due(200) == ["u2"]
    store.add_sizes({"vip": 2, "new": 1})
    store.add_sizes({"vip": -1})
    assert store.sizes() == {"vip": 1, "new": 1}
    store.clear()
    assert list(store.persons()) == [] and store.sizes() == {}


def test_concurrent_redis_updates_lose_nothing(redis_store: RedisProfileStore) -> None:
    def bump(profiles):  # type: ignore[no-untyped-def]
        p = profiles["u"] or Profile("u", 0)
        p.members += 1
        profiles["u"] = p

    def worker() -> None:
        for _ in range(25):
            redis_store.update(["u"], bump)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert redis_store.get("u").members == 100  # type: ignore[union-attr]


def test_engines_on_memory_and_redis_agree(redis_store: RedisProfileStore) -> None:
    definitions = shop_definitions()
    shop = generate_shop(300, 7, 3)
    events = stored_events(shop.events)
    memory = SegmentEngine(definitions)
    shared = SegmentEngine(definitions, redis_store)
    # a second replica on the same Redis store handles every other batch
    replica = SegmentEngine(definitions, redis_store)
    for n, start in enumerate(range(0, events.num_rows, 1000)):
        part = events.slice(start, 1000)
        memory.process(part)
        (shared if n % 2 == 0 else replica).process(part)
    end = shop.end + timedelta(hours=5)
    memory.advance_to(end)
    shared.advance_to(end)
    persons = sorted(memory.store.persons())
    assert persons == sorted(redis_store.persons())
    for person in persons:
        assert memory.features(person) == shared.features(person)
        assert memory.members(person) == shared.members(person)
    assert memory.sizes() == shared.sizes()
