"""Replicas share admin changes to placements and features through Redis.

Each replica is a DecideService with its FeatureService on its own copy of
the project folder; all use one Redis prefix (docs/scale-out.md).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tailorkit.decide.engine import DecideRequest
from tailorkit.decide.features import FeatureService
from tailorkit.decide.service import DecideService
from tailorkit.project import load_project
from tests.conftest import REDIS_URL, LiveServer, free_port, start_server
from tests.decide.conftest import write_decide_project
from tests.decide.test_memory_redis import use_redis

BANNER = {
    "placements": {
        "banner": {
            "default": "plain",
            "variants": {"plain": {"content": "plain"}, "sale": {"content": "sale"}},
        }
    }
}
BOUND = 5.0  # seconds for a change on one replica to be live on another


def with_default(variant: str) -> dict[str, Any]:
    doc = copy.deepcopy(BANNER)
    doc["placements"]["banner"]["default"] = variant
    return doc


@pytest.fixture
def replicas(tmp_path: Path, redis_prefix: str) -> Iterator[Callable[[str], DecideService]]:
    """Start a replica on a fresh copy of the project (same Redis prefix); stopped at the end."""
    started: list[DecideService] = []

    def start(name: str, url: str = REDIS_URL) -> DecideService:
        root = use_redis(write_decide_project(tmp_path / name, BANNER), url, redis_prefix)
        service = DecideService(load_project(root), features=FeatureService(root))
        service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def banner(service: DecideService) -> str:
    out = service.engine.decide(DecideRequest(user_id="ada", placements=["banner"]))
    variant: str = out["placements"]["banner"]["variant"]
    return variant


def flag(service: DecideService) -> Any:
    assert service.features is not None
    return service.features.evaluate("new_checkout", {"id": "ada"}).value


def eventually(check: Callable[[], bool], bound: float = BOUND) -> float:
    """Seconds until ``check()`` held (fails past ``bound``)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < bound, "not applied within the bound"
        time.sleep(0.05)
    return time.monotonic() - start


def test_an_admin_change_on_one_replica_reaches_the_others(
    replicas: Callable[..., DecideService], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = replicas("a"), replicas("b")
    assert banner(a) == banner(b) == "plain" and flag(b) is False
    # what PUT /v1/admin/placements does: the validated reload, then publish if accepted
    assert a.reload(with_default("sale"), write=True).applied
    first = a.share("placements")
    assert first is not None
    eventually(lambda: banner(b) == "sale")
    assert yaml.safe_load((b.root / "placements.yaml").read_text()) == with_default("sale")
    # and PUT /v1/admin/features
    assert a.features is not None
    a.features.replace({"features": {"new_checkout": {"defaultValue": True}}})
    a.share("features")
    eventually(lambda: flag(b) is True)
    assert "new_checkout" in (b.root / "features.yaml").read_text()

    # a document A refuses is not published: B keeps "sale"
    invalid = with_default("missing_variant")
    assert not a.reload(invalid, write=True).applied
    assert a.engine.definitions.document == with_default("sale")
    # a published document B refuses (say B has older code) leaves B's set live, logged once
    assert a.shared is not None and b.shared is not None
    with caplog.at_level(logging.WARNING, logger="tailorkit.decide.shared_definitions"):
        bad = a.shared.publish("placements", invalid, "bad")
        assert bad is not None and bad > first
        eventually(lambda: b.shared is not None and b.shared.seen["placements"] == bad)
        a.shared.publish("features", {"features": {"x": {"rules": [{"forse": 1}]}}}, "bad")
        eventually(lambda: b.shared is not None and b.shared.seen["features"] > bad)
        time.sleep(0.5)  # no retry of the same document
    refusals = [r for r in caplog.records if "refused here" in r.getMessage()]
    assert len(refusals) == 2
    assert banner(b) == "sale" and flag(b) is True
    assert yaml.safe_load((b.root / "placements.yaml").read_text()) == with_default("sale")

    # a later valid change still goes through
    assert a.reload(with_default("plain"), write=True).applied
    a.share("placements")
    eventually(lambda: banner(b) == "plain")


def test_a_replica_started_later_adopts_the_latest_published(
    replicas: Callable[..., DecideService], tmp_path: Path
) -> None:
    a = replicas("a")
    assert a.reload(with_default("sale"), write=True).applied
    assert a.share("placements") is not None
    assert a.features is not None
    a.features.replace({"features": {"new_checkout": {"defaultValue": True}}})
    assert a.share("features") is not None
    # adopted in start(), before the replica serves anything
    c = replicas("c")
    assert banner(c) == "sale" and flag(c) is True
    assert c.shared is not None and a.shared is not None and c.shared.seen == a.shared.seen
    c.stop()
    # restarted on the same files: they already hold that number, nothing is adopted again;
    # a hand edit made since is kept until the next publish
    edited = with_default("plain")
    (c.root / "placements.yaml").write_text(yaml.safe_dump(edited))
    again = DecideService(load_project(c.root), features=FeatureService(c.root))
    again.start()
    try:
        assert banner(again) == "plain"
    finally:
        again.stop()


def test_without_redis_replicas_keep_their_definitions(
    replicas: Callable[..., DecideService],
) -> None:
    down = replicas("down", url=f"redis://127.0.0.1:{free_port()}/0")
    assert banner(down) == "plain"
    assert down.reload(with_default("sale"), write=True).applied
    assert down.share("placements") is None  # not shared, still live here
    assert banner(down) == "sale"


def test_two_servers_share_admin_changes_over_http(
    tmp_path: Path, redis_prefix: str, reaper: list[Any]
) -> None:
    roots = [
        use_redis(write_decide_project(tmp_path / name, BANNER), REDIS_URL, redis_prefix)
        for name in ("a", "b")
    ]
    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(lambda r: start_server(r, r.parent / f"{r.name}.log"), roots)
    reaper.extend([a, b])

    def decided(server: LiveServer) -> str:
        with server.client() as client:
            body = {"user_id": "ada", "placements": ["banner"]}
            r = client.post("/v1/decide", json=body, headers=server.ingest_headers)
        assert r.status_code == 200, r.text
        variant: str = r.json()["placements"]["banner"]["variant"]
        return variant

    def features_version(server: LiveServer) -> str:
        with server.client() as client:
            r = client.get("/v1/admin/features", headers=server.admin_headers)
        assert r.status_code == 200, r.text
        version: str = r.json()["version"]
        return version

    with a.client() as client:
        r = client.put("/v1/admin/placements", json=with_default("sale"), headers=a.admin_headers)
        assert r.status_code == 200, r.text
        eventually(lambda: decided(b) == "sale")
        invalid = with_default("missing_variant")
        r = client.put("/v1/admin/placements", json=invalid, headers=a.admin_headers)
        assert r.status_code == 422, r.text
        time.sleep(0.5)
        assert decided(b) == "sale"
        change = {"features": {"new_checkout": {"defaultValue": True}}}
        r = client.put("/v1/admin/features", json=change, headers=a.admin_headers)
        assert r.status_code == 200, r.text
        wanted = r.json()["version"]
        eventually(lambda: features_version(b) == wanted)
