"""Two ``tailorkit serve`` replicas and one worker sharing Redis and PostgreSQL.

Events sent to replica A (and one Segment call to B) are stored by the
worker, which updates the shared profiles in Redis; replica B then shows the
same profile, segments and sizes,
and both replicas make the same decisions. Both load the same project folder
(definitions are shared as files: docs/scale-out.md).
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LiveServer, start_server
from tests.helpers import event
from tests.scale.conftest import SHARED_REDIS, bus_project, post, start_worker, wait_until

SEGMENTS = {
    "features": {"views_24h": {"count": {"events": ["page_view"], "window": "24h"}}},
    "segments": {"engaged": {"condition": {"views_24h": {"$gte": 3}}}},
}
PLACEMENTS = {
    "settings": {"deadline_ms": 2000},  # a loaded test machine must not turn rules into defaults
    "bandits": {"promo_bandit": {"arms": ["sale", "new_in"], "reward": {"event": "click"}}},
    "placements": {
        "promo": {
            "default": "none",
            "variants": {
                "none": {"content": ""},
                "sale": {"content": "S"},
                "new_in": {"content": "N"},
            },
            "bandit": "promo_bandit",
        },
        "hero": {
            "default": "generic",
            "variants": {
                "generic": {"content": "<h1>Welcome</h1>"},
                "engaged": {"content": "<h1>Welcome back</h1>"},
            },
            "rules": [
                {
                    "id": "engaged",
                    "priority": 10,
                    "condition": {"segments": "engaged"},
                    "variant": "engaged",
                }
            ],
        },
    },
}


def _profile(server: LiveServer, user: str) -> dict[str, Any] | None:
    with server.client() as client:
        r = client.get(f"/v1/admin/profiles/{user}", headers=server.admin_headers)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    found: dict[str, Any] = r.json()
    return found


def _decide(server: LiveServer, user: str) -> dict[str, Any]:
    with server.client() as client:
        r = client.post("/v1/decide", json={"user_id": user}, headers=server.ingest_headers)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def _bandit(server: LiveServer) -> dict[str, Any]:
    with server.client() as client:
        r = client.get("/v1/admin/bandits", headers=server.admin_headers)
    state: dict[str, Any] = r.json()["promo_bandit"]
    return state


def _sizes(server: LiveServer) -> dict[str, int]:
    with server.client() as client:
        r = client.get("/v1/admin/segments?batch=false", headers=server.admin_headers)
    assert r.status_code == 200, r.text
    sizes: dict[str, int] = r.json()["online_sizes"]
    return sizes


def test_two_replicas_one_worker_agree(
    tmp_path: Path, pg_url: str, prefix: str, reaper: list[Any]
) -> None:
    project = bus_project(tmp_path / "shop", pg_url, SHARED_REDIS, prefix, SEGMENTS, PLACEMENTS)
    worker = start_worker(project, tmp_path / "w.log", "w")
    reaper.append(worker)
    with ThreadPoolExecutor(2) as pool:  # replicas start side by side
        starting = [pool.submit(start_server, project, tmp_path / f"{n}.log") for n in "ab"]
    reaper.extend(f.result() for f in starting if f.exception() is None)
    a, b = (f.result() for f in starting)
    ada, bob = f"ada-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    try:
        now = datetime.now(UTC)
        views = [
            event(user_id=ada, timestamp=(now - timedelta(minutes=m)).isoformat()) for m in (3, 2)
        ]
        views.append(event(user_id=bob, timestamp=now.isoformat()))
        with httpx.Client(base_url=a.url, timeout=30) as client:
            r = post(client, views, a.project.settings.ingest_keys[0])
        assert r.json()["accepted"] == 3
        page = {  # the Segment endpoint goes through the bus too
            "messageId": str(uuid.uuid4()),
            "userId": ada,
            "name": "Home",
            "timestamp": (now - timedelta(minutes=1)).isoformat(),
        }
        with b.client() as client:
            r = client.post("/v1/segment/page", json=page, headers=b.ingest_headers)
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text

        def b_sees_ada() -> bool:
            found = _profile(b, ada)
            return found is not None and found["features"].get("views_24h") == 3

        wait_until(b_sees_ada, 30, "replica B to see the profile the worker built")
        on_a, on_b = _profile(a, ada), _profile(b, ada)
        assert on_a is not None and on_b is not None
        assert on_a["source"] == on_b["source"] == "online"
        assert on_a["features"] == on_b["features"]
        assert on_a["segments"] == on_b["segments"] == ["engaged"]
        assert _sizes(a) == _sizes(b) and _sizes(b)["engaged"] == 1
        for user, variant, segments in ((ada, "engaged", ["engaged"]), (bob, "generic", [])):
            from_a, from_b = _decide(a, user), _decide(b, user)
            assert from_a["segments"] == from_b["segments"] == segments
            assert from_a["placements"]["hero"] == from_b["placements"]["hero"]
            assert from_a["placements"]["hero"]["variant"] == variant
        # bandit rewards: a click accepted by the replica that decided reaches its bandit
        promo = _decide(a, bob)["placements"]["promo"]
        click = event(user_id=bob, type="click", timestamp=datetime.now(UTC).isoformat())
        click["properties"] = {"placement": "promo", "variant": promo["variant"]}
        with a.client() as client:
            assert post(client, [click], a.project.settings.ingest_keys[0]).status_code == 200
        wait_until(lambda: _bandit(a)["rewards"] >= 1, 30, "the bandit to learn from the click")
    finally:
        a.stop()
        b.stop()
        worker.terminate()
        worker.wait(30)
