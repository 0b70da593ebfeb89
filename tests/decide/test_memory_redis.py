"""Minimum dwell and frequency caps shared by replicas through Redis, and the fallback."""

from __future__ import annotations

import time
from pathlib import Path

import redis
import yaml

from tailorkit import metrics
from tailorkit.decide.engine import DecideRequest
from tailorkit.decide.memory import RedisUserMemory, UserMemory
from tailorkit.decide.service import DecideService
from tailorkit.project import load_project
from tests.conftest import REDIS_URL, free_port
from tests.decide.conftest import PLACEMENTS, write_decide_project

# banner: 1 h minimum dwell; "de" for country DE, capped at 2 showings a day
BANNER = {"placements": {"banner": PLACEMENTS["placements"]["banner"]}}


def project_at(root: Path) -> Path:
    return write_decide_project(root, BANNER)


def replica(project: Path) -> DecideService:
    """One server's decision service (no collector or profiles: decisions only)."""
    return DecideService(load_project(project))


def use_redis(project: Path, url: str, prefix: str) -> Path:
    path = project / "tailorkit.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["redis"] = {"url": url, "prefix": prefix}
    path.write_text(yaml.safe_dump(doc))
    return project


def banner(service: DecideService, user: str, **attributes: str) -> tuple[str, bool]:
    """The banner's variant and whether the dwell held it."""
    req = DecideRequest(user_id=user, attributes=attributes, placements=["banner"])
    out = service.engine.decide(req)["placements"]["banner"]
    return out["variant"], bool(out.get("held"))


def test_replicas_share_dwell_and_caps(tmp_path: Path, redis_prefix: str) -> None:
    project = use_redis(project_at(tmp_path / "shop"), REDIS_URL, redis_prefix)
    a, b = replica(project), replica(project)
    assert isinstance(a.memory, RedisUserMemory) and a.memory is not b.memory
    # on A the rule shows "de"; on B, without the attribute, the dwell keeps it
    assert banner(a, "ada", country="DE") == ("de", False)
    assert banner(b, "ada") == ("de", True)
    # that was the second showing of "de" today: the cap (2 a day) ends the dwell
    assert banner(a, "ada", country="DE") == ("plain", False)
    assert banner(b, "ada", country="DE") == ("plain", True)  # and "plain" is now held
    # one replica's reset (consent) is the other's too
    a.set_consent("ada", None, personalization=True, analytics=True, reset=True)
    assert banner(b, "ada") == ("plain", False)
    # the user's hash expires after the longest dwell, cap window or dedup period (1 day)
    client = redis.Redis.from_url(REDIS_URL)
    ttl = client.ttl(f"{redis_prefix}memory:ada")
    client.close()
    assert 86_000 < ttl <= 86_400
    # without Redis, each replica remembers alone: B flips back to "plain"
    local = project_at(tmp_path / "local")
    c, d = replica(local), replica(local)
    assert type(c.memory) is UserMemory
    assert banner(c, "bob", country="DE") == ("de", False)
    assert banner(d, "bob") == ("plain", False)


def test_unreachable_redis_falls_back_to_process_memory(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    service = replica(use_redis(project_at(tmp_path / "shop"), url, "tk-test-down:"))
    fallbacks = metrics.REDIS_FALLBACKS.labels("decide_memory")
    before = fallbacks._value.get()
    started = time.perf_counter()
    assert banner(service, "cy", country="DE") == ("de", False)
    assert banner(service, "cy") == ("de", True)  # dwell still holds, in process
    assert banner(service, "dee") == ("plain", False)
    assert time.perf_counter() - started < 2.0  # no waiting on Redis per request
    assert fallbacks._value.get() - before >= 3  # every load and save answered in process


def test_replicas_share_opt_outs(tmp_path: Path, redis_prefix: str) -> None:
    project = use_redis(project_at(tmp_path / "shop"), REDIS_URL, redis_prefix)
    a, b = replica(project), replica(project)
    a.start(), b.start()
    try:

        def reason_on_b() -> str | None:
            req = DecideRequest(user_id="eve", attributes={"country": "DE"}, placements=["banner"])
            reason: str | None = b.engine.decide(req)["placements"]["banner"].get("reason")
            return reason

        assert reason_on_b() is None  # personalized: the "de" rule
        a.set_consent("eve", None, personalization=False, analytics=True)
        deadline = time.monotonic() + 10
        while reason_on_b() != "no personalization consent" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reason_on_b() == "no personalization consent"
        b.set_consent("eve", None, personalization=True, analytics=True)  # and back, from B
        deadline = time.monotonic() + 10
        while a.consent.opted_out("eve", None) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not a.consent.opted_out("eve", None)
        # a replica started later learns the opt-outs made before it
        a.set_consent("mallory", None, personalization=False, analytics=True)
        c = replica(project)
        c.start()
        deadline = time.monotonic() + 10
        while not c.consent.opted_out("mallory", None) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.consent.opted_out("mallory", None)
        c.stop()
    finally:
        a.stop(), b.stop()
