"""Bandit statistics shared by replicas through a real Redis, and life without it."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import yaml
from scipy import stats

from tailorkit.decide.bandit_runtime import BanditRuntime
from tailorkit.decide.bandit_state import RedisBanditStats
from tailorkit.decide.placements import BanditSpec
from tailorkit.decide.service import DecideService
from tailorkit.project import load_project
from tailorkit.store.redis_fallback import RedisOptions
from tests.conftest import free_port
from tests.decide.conftest import PLACEMENTS, write_decide_project

REDIS_URL = "redis://127.0.0.1:6379/0"
PROMO_ONLY = {
    "bandits": {"promo_bandit": PLACEMENTS["bandits"]["promo_bandit"]},
    "placements": {"promo": PLACEMENTS["placements"]["promo"]},
}


def spec() -> BanditSpec:
    return BanditSpec(
        "promo", "thompson", ("sale", "new_in", "none"), 0.02, ("vip", "new"), (), {}, "click",
        3600.0, True, "f1",
    )  # fmt: skip


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"test-bandits-{uuid.uuid4().hex[:8]}:"
    yield name
    RedisBanditStats.from_url(REDIS_URL, name).clear()


def serve_users(
    runtime: BanditRuntime, users: list[str], clicks: dict[str, bool], now: float
) -> list[tuple[str, int, float]]:
    """Decide for ``users``, send the clicks, sweep; returns (segment, arm, reward) per user."""
    out = []
    for i, user in enumerate(users):
        segment = "vip" if i % 3 == 0 else "new"
        pick = runtime.choose(spec(), user, [segment], {}, "promo", now=now)
        reward = 1.0 if clicks[user] and pick.arm == 0 else 0.0
        if reward:
            runtime.reward_events([(user, "click", '{"placement": "promo"}', now + 1)])
        out.append((segment, pick.arm, reward))
    runtime.sweep(now=now + 7200)  # every window closed
    return out


def test_two_replicas_share_one_posterior(prefix: str) -> None:
    replicas = [
        BanditRuntime(seed=i, shared=RedisBanditStats.from_url(REDIS_URL, prefix)) for i in (1, 2)
    ]
    for runtime in replicas:
        runtime.sync({"promo": spec()})
    rng = np.random.default_rng(0)
    logged = []
    for i, runtime in enumerate(replicas):
        users = [f"r{i}-u{j}" for j in range(150)]
        clicks = {u: bool(rng.random() < 0.6) for u in users}
        logged += serve_users(runtime, users, clicks, now=1000.0)
    replicas[0].sweep(now=9000.0)  # replica 0 picks up what replica 1 sent after it

    a, b = (r.policy("promo") for r in replicas)
    assert a.statistics() == b.statistics()
    for segment in ("vip", "new"):
        assert a.probabilities(segment) == pytest.approx(b.probabilities(segment), abs=1e-12)
        # the posterior is Beta(1 + clicks, 1 + misses) over *both* replicas' decisions
        seg_policy = a.policy_for(segment)  # type: ignore[attr-defined]
        alpha, beta = seg_policy.posterior()
        for arm in range(3):
            rewards = [r for s, x, r in logged if s == segment and x == arm]
            assert alpha[arm] == 1 + sum(rewards)
            assert beta[arm] == 1 + len(rewards) - sum(rewards)
            mean = stats.beta(alpha[arm], beta[arm]).mean()
            assert mean == pytest.approx((1 + sum(rewards)) / (2 + len(rewards)))
    described = [r.describe()["promo"] for r in replicas]
    assert all(d["shared"] is True for d in described)
    assert sum(d["updates"] for d in described) == 300


def test_a_new_replica_starts_from_the_shared_totals(prefix: str) -> None:
    first = BanditRuntime(seed=1, shared=RedisBanditStats.from_url(REDIS_URL, prefix))
    first.sync({"promo": spec()})
    for _ in range(20):
        first.update("promo", "new_in", 1.0, segment="vip")
    first.sweep(now=0.0)
    late = BanditRuntime(seed=2, shared=RedisBanditStats.from_url(REDIS_URL, prefix))
    late.sync({"promo": spec()})
    late.sweep(now=0.0)
    assert late.policy("promo").statistics() == first.policy("promo").statistics()
    assert late.policy("promo").probabilities("vip") == first.policy("promo").probabilities("vip")
    assert late.policy("promo").probabilities("vip")[1] > 0.8


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_decisions_and_learning_go_on_while_redis_is_down() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    runtime = BanditRuntime(
        seed=3, shared=RedisBanditStats.from_url(url, "t:", RedisOptions(retry_after=0.2))
    )
    runtime.sync({"promo": spec()})
    started = time.monotonic()
    picks = [runtime.choose(spec(), f"u{i}", ["vip"], {}, "promo", now=0.0) for i in range(200)]
    for i, pick in enumerate(picks):
        if pick.arm == 1:
            runtime.reward_events([(f"u{i}", "click", '{"placement": "promo"}', 1.0)])
    assert runtime.sweep(now=7200.0) == 200  # learned locally
    assert time.monotonic() - started < 5.0  # one short connect timeout, then paused
    assert runtime.describe()["promo"]["shared"] is False
    learned = runtime.policy("promo").statistics()
    assert learned["vip|1|r"] == sum(1 for p in picks if p.arm == 1)

    # Redis comes up: the next sweep seeds it with what was learned meanwhile
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        time.sleep(0.3)  # past the pause after the failure
        runtime.sweep(now=7300.0)
        assert runtime.describe()["promo"]["shared"] is True
        other = BanditRuntime(seed=4, shared=RedisBanditStats.from_url(url, "t:"))
        other.sync({"promo": spec()})
        other.sweep(now=7300.0)
        assert other.policy("promo").statistics() == learned
    finally:
        server.terminate()
        server.wait(10)


def test_services_configured_by_tailorkit_yaml_share_their_bandits(
    tmp_path: Path, prefix: str
) -> None:
    services = []
    for name in ("a", "b"):
        root = write_decide_project(tmp_path / name, PROMO_ONLY)
        settings = yaml.safe_load((root / "tailorkit.yaml").read_text())
        settings["redis"] = {"url": REDIS_URL, "prefix": prefix}
        (root / "tailorkit.yaml").write_text(yaml.safe_dump(settings))
        services.append(DecideService(load_project(root)))
    a, b = services
    for _ in range(5):
        a.bandits.update("promo_bandit", "new_in", 1.0)
    b.bandits.update("promo_bandit", "sale", 0.0)
    for service in (a, b, a):
        service.bandits.sweep(now=0.0)
    expected = {"0|n": 1.0, "0|r": 0.0, "1|n": 5.0, "1|r": 5.0}
    for service in services:
        assert service.bandits.policy("promo_bandit").statistics() == expected
        assert service.bandits.describe()["promo_bandit"]["shared"] is True
    keys = redis.Redis.from_url(REDIS_URL).keys(f"{prefix}bandit:promo_bandit:*")
    assert len(keys) == 1
