"""POST /v1/decide and friends over real HTTP against `tailorkit serve`."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson
import pytest
import yaml

from tailorkit.client import Client
from tests.conftest import LiveServer, free_port, start_server
from tests.decide.conftest import PLACEMENTS, write_decide_project
from tests.helpers import event

# Keys with tiny rate limits (tailorkit.yaml rate_limits.keys): SPENT has one token
# that never comes back (the key matrix spends it), SLOW one per second.
SPENT_INGEST = "tk_ingest_spent_0000000000"
SPENT_ADMIN = "tk_admin_spent_00000000000"
SLOW_INGEST = "tk_ingest_slow_00000000000"
SPENT_SDK = "tk_sdk_spent_000000000000000"


def limit_keys(project: Path) -> None:
    """Add the rate-limited keys to the project's tailorkit.yaml."""
    path = project / "tailorkit.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["keys"]["ingest"] += [SPENT_INGEST, SLOW_INGEST]
    doc["keys"]["admin"].append(SPENT_ADMIN)
    doc["keys"]["sdk"] = [*doc["keys"].get("sdk", []), SPENT_SDK]
    spent = {"per_second": 0.0001, "burst": 1}
    doc["rate_limits"] = {
        "keys": {
            SPENT_INGEST: spent,
            SPENT_ADMIN: spent,
            SPENT_SDK: spent,
            SLOW_INGEST: {"per_second": 1},
        }
    }
    path.write_text(yaml.safe_dump(doc))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the read-mostly tests of this module."""
    root = tmp_path_factory.mktemp("decide")
    project = write_decide_project(root / "shop")
    limit_keys(project)
    live = start_server(project, root / "server.log")
    yield live
    live.stop()


def decide(server: LiveServer, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    with server.client() as client:
        r = client.post("/v1/decide", json=body, headers=server.ingest_headers, **kwargs)
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def until(check: Any, seconds: float = 8.0) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_decide_answers_every_placement_with_its_source(server: LiveServer) -> None:
    out = decide(server, {"user_id": "u1", "context": {"device": "mobile"}})
    assert set(out) == {
        "user_id", "anonymous_id", "segments", "flags", "experiments", "holdout", "placements",
    }  # fmt: skip
    assert set(out["placements"]) == {"home_hero", "promo", "recs", "banner"}
    hero = out["placements"]["home_hero"]
    assert (hero["source"], hero["rule"], hero["content"]) == (
        "rule", "mobile", "<h1>On the go? mobile</h1>",
    )  # fmt: skip
    assert out["placements"]["promo"]["source"] == "bandit"
    assert out["flags"] == {"new_checkout": False, "hero_copy": out["flags"]["hero_copy"]}
    only = decide(server, {"anonymous_id": "a1", "placements": ["banner", "nope"]})
    assert list(only["placements"]) == ["banner"]
    assert only["placements"]["banner"]["content"] == "<div>Free shipping</div>"


def test_browser_style_request_and_bad_bodies(server: LiveServer) -> None:
    key = server.project.settings.ingest_keys[0]
    with server.client() as client:
        r = client.post(
            f"/v1/decide?key={key}",
            content=b'{"anonymous_id": "a2", "attributes": {"country": "DE"}}',
            headers={"Content-Type": "text/plain"},
        )
        assert r.status_code == 200
        assert r.json()["placements"]["banner"]["variant"] == "de"
        for body, status in (
            (b"[1, 2]", 422),
            (b"{not json", 422),
            (b'{"placements": "home_hero"}', 422),
            (b'{"user_id": {"a": 1}}', 422),
            (b'{"user_id": "' + b"x" * 300 + b'"}', 422),
            (b" " * (70 * 1024), 413),
        ):
            r = client.post(f"/v1/decide?key={key}", content=body)
            assert r.status_code == status, (body[:30], r.text)


ENDPOINTS = [
    ("POST", "/v1/decide", "ingest", {"user_id": "matrix"}),
    ("GET", "/v1/decide/defaults", "ingest", None),
    ("POST", "/v1/consent", "ingest", {"user_id": "matrix", "personalization": True}),
    ("GET", "/v1/admin/placements", "admin", None),
    ("POST", "/v1/admin/placements/reload", "admin", None),
    ("PUT", "/v1/admin/placements", "admin", PLACEMENTS),
    ("GET", "/v1/admin/bandits", "admin", None),
    ("POST", "/v1/admin/bandits/promo_bandit/rewards", "admin", {"arm": "sale", "reward": 0}),
    ("GET", "/sdk.js", "public", None),
]


def test_key_matrix(server: LiveServer) -> None:
    keys = {
        "none": {},
        "wrong": {"Authorization": "Bearer tk_wrong_000000000000000000"},
        "ingest": server.ingest_headers,
        "admin": server.admin_headers,
        "spent ingest": {"Authorization": f"Bearer {SPENT_INGEST}"},
        "spent admin": {"X-Tailorkit-Key": SPENT_ADMIN},
    }
    with server.client() as client:
        for spent in (SPENT_INGEST, SPENT_ADMIN):  # each one's only token
            r = client.get("/v1/decide/defaults", headers={"Authorization": f"Bearer {spent}"})
            assert r.status_code == 200
        for method, path, needs, body in ENDPOINTS:
            for name, headers in keys.items():
                r = client.request(method, path, headers=headers, json=body)
                if needs == "public":
                    expected = 200
                elif name in ("none", "wrong"):
                    expected = 401
                elif name.startswith("spent"):  # even where its scope would give 403
                    expected = 429
                elif name == "ingest" and needs == "admin":
                    expected = 403
                else:
                    expected = 200
                assert r.status_code == expected, (method, path, name, r.status_code, r.text)
                if expected == 429:
                    assert int(r.headers["retry-after"]) >= 1000  # 1 token per 10,000 s
        # the default limits (1000/s per ingest key) leave ordinary traffic alone
        for _ in range(50):
            assert client.get("/v1/decide/defaults", headers=server.ingest_headers).is_success


def test_rate_limit_answers_429_with_retry_after_and_recovers(server: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {SLOW_INGEST}"}
    body = {"user_id": "rate", "placements": ["banner"]}
    with server.client() as client:
        before = _metric(client, 'tailorkit_rate_limited_total{scope="ingest"}')
        codes = [client.post("/v1/decide", json=body, headers=headers) for _ in range(6)]
        # burst 2 (two seconds' worth at 1/s); the requests take well under a second
        assert [r.status_code for r in codes][:2] == [200, 200]
        refused = [r for r in codes if r.status_code == 429]
        assert refused and all(r.headers["retry-after"] == "1" for r in refused)
        assert refused[0].json()["detail"] == "rate limit of this API key exceeded"
        time.sleep(int(refused[-1].headers["retry-after"]))
        assert client.post("/v1/decide", json=body, headers=headers).status_code == 200
        # other keys have their own buckets
        assert client.post("/v1/decide", json=body, headers=server.ingest_headers).is_success
        after = _metric(client, 'tailorkit_rate_limited_total{scope="ingest"}')
    assert after - before == len(refused)


def test_sdk_client_keys_are_rate_limited_too(server: LiveServer) -> None:
    with server.client() as client:
        before = _metric(client, 'tailorkit_rate_limited_total{scope="sdk"}')
        first, second = (client.get(f"/api/features/{SPENT_SDK}") for _ in range(2))
        after = _metric(client, 'tailorkit_rate_limited_total{scope="sdk"}')
    assert first.status_code == 200  # burst 1
    assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
    assert after - before == 1


def _metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_profiles_and_segments_drive_decisions(server: LiveServer) -> None:
    shopper = f"shopper-{uuid.uuid4().hex[:6]}"
    events = [
        event(user_id=shopper, type="identify", properties={"first_name_plain": "Grace"}),
        event(user_id=shopper, type="add_to_cart", properties={"product_id": "p1"}),
    ]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for e in events:
        e["timestamp"] = now
    with server.client() as client:
        r = client.post("/v1/events", json=events, headers=server.ingest_headers)
        assert r.json()["accepted"] == 2
    out = decide(server, {"user_id": shopper})
    assert out["segments"] == ["cart_abandoners"]
    hero = out["placements"]["home_hero"]
    assert (hero["rule"], hero["content"]) == ("abandoners", "<h1>Grace, see your cart</h1>")
    assert out["placements"]["recs"]["content"] == "<li>Your cart</li>"


def test_consent_opt_out_and_back_in(server: LiveServer) -> None:
    body = {"user_id": "private", "attributes": {"country": "DE"}, "placements": ["banner"]}
    assert decide(server, body)["placements"]["banner"]["variant"] == "de"
    with server.client() as client:
        r = client.post(
            "/v1/consent",
            json={"user_id": "private", "personalization": False},
            headers=server.ingest_headers,
        )
        assert r.json() == {
            "user_id": "private", "anonymous_id": None, "personalization": False,
            "cleared": 1, "logged": True,
        }  # fmt: skip
        bad = client.post(
            "/v1/consent", json={"personalization": False}, headers=server.ingest_headers
        )
        assert bad.status_code == 422
    banner = decide(server, body)["placements"]["banner"]
    assert (banner["source"], banner["reason"]) == ("default", "no personalization consent")
    with server.client() as client:
        client.post(
            "/v1/consent",
            json={"user_id": "private", "personalization": True},
            headers=server.ingest_headers,
        )
    assert until(lambda: decide(server, body)["placements"]["banner"]["variant"] == "de")


def test_bandit_learns_from_click_events(server: LiveServer) -> None:
    def state() -> dict[str, Any]:
        with server.client() as client:
            answer: dict[str, Any] = client.get(
                "/v1/admin/bandits", headers=server.admin_headers
            ).json()
        return answer["promo_bandit"]

    before = state()
    clicker = f"clicker-{uuid.uuid4().hex[:6]}"
    promo = decide(server, {"user_id": clicker})["placements"]["promo"]
    click = event(
        user_id=clicker,
        type="click",
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        properties={"placement": "promo", "variant": promo["variant"]},
    )
    with server.client() as client:
        assert (
            client.post("/v1/events", json=[click], headers=server.ingest_headers).status_code
            == 200
        )
    after = until(lambda: (s := state())["rewards"] > before["rewards"] and s)
    assert after, state()
    assert after["updates"] >= before["updates"] + 1


def test_metrics_count_decisions_by_source(server: LiveServer) -> None:
    decide(server, {"user_id": "m1", "context": {"device": "mobile"}})
    text = httpx.get(f"{server.url}/metrics").text
    assert 'tailorkit_decisions_total{source="rule"}' in text
    assert 'tailorkit_decisions_total{source="bandit"}' in text
    assert 'tailorkit_request_seconds_count{method="POST",route="/v1/decide"' in text


def test_python_client_against_the_server(server: LiveServer, tmp_path: Path) -> None:
    client = Client(server.url, server.project.settings.ingest_keys[0], flush_interval=0.1)
    client.identify("py-user", {"plan": "pro"}, anonymous_id="py-anon")
    client.track("page_view", user_id="py-user", properties={"url": "/"})
    assert until(lambda: client.pending == 0)
    out = client.decide(user_id="py-user", context={"device": "mobile"})
    assert out["placements"]["home_hero"]["rule"] == "mobile"
    assert client.refresh_defaults()
    defaults = {k: v["content"] for k, v in client._defaults.items()}
    client.close()

    down = Client(
        f"http://127.0.0.1:{free_port()}",
        "k",
        max_retries=1,
        backoff=0.01,
        max_queue=2,
        spool_path=tmp_path / "spool.ndjson",
        fallback_defaults=defaults,
        start_thread=False,
    )
    out = down.decide(user_id="py-user", placements=["home_hero"])
    assert out["placements"]["home_hero"] == {
        "content": "<h1>Welcome to home_hero</h1>", "variant": "default", "source": "default",
        "reason": "server unreachable",
    }  # fmt: skip
    for i in range(3):
        down.track("page_view", user_id="py-user", properties={"i": i})
    assert not down.flush() and down.pending == 2
    spooled = [orjson.loads(line) for line in (tmp_path / "spool.ndjson").read_bytes().splitlines()]
    assert [e["properties"]["i"] for e in spooled] == [0]
    down.close()


def test_hot_reload_from_files_and_admin_api(tmp_path: Path) -> None:
    project = write_decide_project(tmp_path / "shop")
    live = start_server(project, tmp_path / "server.log")
    try:
        body = {"user_id": "r1", "placements": ["banner"]}
        doc = copy.deepcopy(PLACEMENTS)
        doc["placements"]["banner"]["variants"]["plain"]["content"] = "<div>Shipping is free</div>"
        (project / "placements.yaml").write_text(yaml.safe_dump(doc))
        assert until(
            lambda: (
                decide(live, body)["placements"]["banner"]["content"]
                == "<div>Shipping is free</div>"
            )
        )
        (project / "templates" / "hero_generic.html.j2").write_text(
            "<h1>Hello {{ placement }}</h1>"
        )

        def default_hero() -> str:
            with live.client() as client:
                r = client.get("/v1/decide/defaults", headers=live.ingest_headers)
            content: str = r.json()["placements"]["home_hero"]["content"]
            return content

        assert until(lambda: default_hero() == "<h1>Hello home_hero</h1>")
        # A broken change is refused with file, key and reason; the live set stays.
        doc["placements"]["banner"]["variants"]["plain"]["content"] = "{% for %}"
        (project / "placements.yaml").write_text(yaml.safe_dump(doc))
        with live.client() as client:

            def refused() -> Any:
                r = client.get("/v1/admin/placements", headers=live.admin_headers)
                return r.json()["last_error"]

            error = until(refused)
            assert error["file"] == "placements.yaml"
            assert error["key"] == "placements.banner.variants.plain"
            assert "syntax error" in error["reason"]
            assert (
                decide(live, body)["placements"]["banner"]["content"]
                == "<div>Shipping is free</div>"
            )
            r = client.post("/v1/admin/placements/reload", headers=live.admin_headers)
            assert r.status_code == 422 and r.json()["applied"] is False
            # The admin API: a bad document is refused, a good one goes live and to the file.
            bad = copy.deepcopy(PLACEMENTS)
            bad["placements"]["banner"]["default"] = "gone"
            r = client.put("/v1/admin/placements", json=bad, headers=live.admin_headers)
            assert r.status_code == 422
            assert r.json()["error"]["key"] == "placements.banner.default"
            good = copy.deepcopy(PLACEMENTS)
            good["placements"]["banner"]["variants"]["plain"]["content"] = "<div>Via API</div>"
            r = client.put(
                "/v1/admin/placements",
                content=yaml.safe_dump(good).encode(),
                headers={**live.admin_headers, "Content-Type": "application/yaml"},
            )
            assert r.status_code == 200 and r.json()["applied"] is True
        assert decide(live, body)["placements"]["banner"]["content"] == "<div>Via API</div>"
        on_disk = yaml.safe_load((project / "placements.yaml").read_text())
        assert (
            on_disk["placements"]["banner"]["variants"]["plain"]["content"] == "<div>Via API</div>"
        )
    finally:
        live.stop()
    # Every decision was logged with its propensity, through the collector.
    con = duckdb.connect(str(project / "tailorkit.duckdb"), read_only=True)
    rows = con.sql(
        "SELECT properties FROM events WHERE type = 'exposure' AND source = 'decide'"
    ).fetchall()
    con.close()
    logged = [orjson.loads(r[0]) for r in rows]
    assert logged and all(0 < p["propensity"] <= 1 for p in logged)
    assert {p["placement"] for p in logged} >= {"banner"}


def test_exposures_queued_at_shutdown_are_stored(tmp_path: Path) -> None:
    """A clean stop (SIGTERM) drains the exposure queue: every decision is in the log."""
    project = write_decide_project(tmp_path / "shop")
    live = start_server(project, tmp_path / "server.log")
    users = [f"drain-{i}" for i in range(30)]
    try:
        with live.client() as client:
            for user in users:
                r = client.post(
                    "/v1/decide",
                    json={"user_id": user, "placements": ["banner"]},
                    headers=live.ingest_headers,
                )
                assert r.status_code == 200
    finally:
        live.stop()  # at once: well within the 2 s between flushes
    con = duckdb.connect(str(project / "tailorkit.duckdb"), read_only=True)
    rows = con.sql(
        "SELECT user_id, properties FROM events WHERE type = 'exposure' AND source = 'decide'"
    ).fetchall()
    con.close()
    banner = {u for u, p in rows if orjson.loads(p).get("placement") == "banner"}
    assert banner == set(users)
