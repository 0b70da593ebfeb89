"""Rate limits per key: token buckets in process and shared through Redis."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import redis
import yaml

from tailorkit import metrics
from tailorkit.project import load_project
from tailorkit.project.loader import ConfigError, Rate
from tailorkit.server.ratelimit import RateLimiter, RedisRateLimiter, make_limiter
from tailorkit.store.redis_fallback import connect
from tests.conftest import REDIS_URL, free_port


def test_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    rate = Rate(per_second=4, burst=3)
    assert [limiter.acquire("k", rate) for _ in range(4)] == [0.0, 0.0, 0.0, 0.25]
    now[0] = 0.2  # 0.8 tokens: still short of one
    assert limiter.acquire("k", rate) == pytest.approx(0.05)
    now[0] = 0.25
    assert limiter.acquire("k", rate) == 0.0
    now[0] = 100.0  # refills to the burst, not beyond
    assert [limiter.acquire("k", rate) == 0.0 for _ in range(4)] == [True, True, True, False]
    assert limiter.acquire("other", rate) == 0.0
    assert limiter.acquire("k", Rate(0, 1)) == 0.0  # 0 per second: unlimited


def test_two_redis_limiters_share_one_budget(redis_prefix: str) -> None:
    # two replicas: separate clients, same Redis and prefix
    first = RedisRateLimiter(connect(REDIS_URL), redis_prefix)
    second = RedisRateLimiter(connect(REDIS_URL), redis_prefix)
    rate = Rate(per_second=0.001, burst=10)
    allowed = [(first if i % 2 else second).acquire("key", rate) == 0.0 for i in range(16)]
    assert allowed == [True] * 10 + [False] * 6
    wait = first.acquire("key", rate)
    assert 900 < wait <= 1000  # a whole token at 1 per 1000 s
    # in-process limiters would have allowed 10 each
    local = [RateLimiter(), RateLimiter()]
    assert sum(local[i % 2].acquire("key", rate) == 0.0 for i in range(16)) == 16
    # the bucket expires once it would be full again, and names no key
    client = redis.Redis.from_url(REDIS_URL)
    assert client.pttl(f"{redis_prefix}rate:key") > 0
    client.close()


def test_unreachable_redis_falls_back_to_process_buckets() -> None:
    limiter = make_limiter(f"redis://127.0.0.1:{free_port()}/0", "tk-test-down:")
    assert isinstance(limiter, RedisRateLimiter)
    counter = metrics.REDIS_FALLBACKS.labels("rate_limit")
    before = counter._value.get()
    rate = Rate(per_second=0.001, burst=2)
    assert [limiter.acquire("k", rate) == 0.0 for _ in range(3)] == [True, True, False]
    assert counter._value.get() - before == 3


def test_rate_limits_in_tailorkit_yaml(project_dir: Path) -> None:
    settings = load_project(project_dir).settings
    assert (settings.rate_limits.ingest, settings.rate_limits.admin) == (
        Rate(1000, 2000),
        Rate(50, 200),
    )
    assert settings.redis_url == ""
    path = project_dir / "tailorkit.yaml"
    doc = yaml.safe_load(path.read_text())
    ingest = doc["keys"]["ingest"][0]
    doc["rate_limits"] = {"ingest": {"per_second": 50}, "keys": {ingest: {"per_second": 0}}}
    doc["redis"] = {"url": "redis://127.0.0.1:6379/3", "prefix": "shop:"}
    path.write_text(yaml.safe_dump(doc))
    settings = load_project(project_dir).settings
    assert settings.rate_limits.ingest == Rate(50, 100)
    assert settings.rate_limits.keys == {ingest: Rate(0, 1)}
    assert (settings.redis_url, settings.redis_prefix) == ("redis://127.0.0.1:6379/3", "shop:")
    for bad, where in (
        ({"keys": {"not-a-configured-key-000": {"per_second": 1}}}, "rate_limits.keys"),
        ({"admin": {"per_second": -1}}, "rate_limits.admin.per_second"),
        ({"admin": {"burst": 5}}, "rate_limits.admin"),
    ):
        doc["rate_limits"] = bad
        path.write_text(yaml.safe_dump(doc))
        with pytest.raises(ConfigError) as info:
            load_project(project_dir)
        assert info.value.path == where, info.value
    assert math.isclose(Rate.from_document({"per_second": 0.2}).burst, 1)
