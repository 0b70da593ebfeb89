"""``tailorkit segments`` and the admin API for segments and profiles, end to end."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from tailorkit.collect.pipeline import Collector
from tailorkit.collect.quality import clean_events
from tailorkit.collect.raw import raw_from_arrow
from tailorkit.demo import generate_shop
from tailorkit.project import load_project
from tailorkit.segment.batch import sizes
from tailorkit.store.warehouse import Warehouse
from tests.conftest import LiveServer, start_server
from tests.segment.common import shop_definitions, shop_document
from tests.test_cli import cli

END = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with the example segments and a small demo shop already stored."""
    from tailorkit.project.init import write_project

    root = write_project(tmp_path_factory.mktemp("api") / "shop")
    (root / "segments.yaml").write_text(yaml.safe_dump(shop_document()))
    project = load_project(root)
    warehouse = Warehouse(project.settings.store_url)
    shop = generate_shop(400, 7, 5, end=END)
    Collector(warehouse, project.settings).ingest(raw_from_arrow(shop.events), "demo")
    warehouse.close()
    return root


def test_cli_reports_sizes_flags_overlap_and_history(shop_dir: Path) -> None:
    out = cli("segments", "-p", str(shop_dir), "--at", "2024-06-01T00:00:00Z", "--days", "2",
              "--json")  # fmt: skip
    report = json.loads(out.stdout)
    project = load_project(shop_dir)
    warehouse = Warehouse(project.settings.store_url)
    try:
        expected = sizes(shop_definitions(), clean_events(warehouse, project.settings.quality), END)
    finally:
        warehouse.close()
    assert {s["key"]: s["size"] for s in report["segments"]} == {
        k: v for k, v in expected.items() if k != "profiles"
    }
    assert report["profiles"] == expected["profiles"] > 250
    below = [s["key"] for s in report["segments"] if s["size"] < s["min_users"]]
    assert report["below_min_users"] == below and "premium_browsers" in below
    overlap = report["overlap"]
    assert all(overlap[a][b] == overlap[b][a] for a in overlap for b in overlap)
    assert all(overlap[s["key"]][s["key"]] == s["size"] for s in report["segments"])
    assert [row["as_of"] for row in report["size_over_time"]] == [
        (END - timedelta(days=d)).isoformat() for d in (2, 1, 0)
    ]


def test_cli_takes_an_instant_with_any_offset(shop_dir: Path) -> None:
    # the same instant as above, written five hours behind UTC
    out = cli("segments", "-p", str(shop_dir), "--at", "2024-05-31T19:00:00-05:00", "--days", "1",
              "--json")  # fmt: skip
    report = json.loads(out.stdout)
    assert report["as_of"] == END.isoformat()
    assert report["size_over_time"][-1]["as_of"] == END.isoformat()
    assert report["profiles"] > 250


def test_cli_names_the_file_and_key_of_a_bad_definition(shop_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("tailorkit.yaml", "features.yaml", "placements.yaml"):
        (broken / name).write_text((shop_dir / name).read_text().replace(str(shop_dir), "x"))
    (broken / "segments.yaml").write_text("segments:\n  s:\n    condition: {nope: 1}\n")
    out = cli("segments", "-p", str(broken), "--json", check=False)
    assert out.returncode == 2
    assert json.loads(out.stdout)["error"] == (
        "segments.yaml: segments.s.condition: unknown feature 'nope'"
    )


@pytest.fixture(scope="module")
def server(shop_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(shop_dir, tmp_path_factory.mktemp("log") / "server.log")
    yield live
    live.stop()


def test_admin_routes_need_an_admin_key(server: LiveServer) -> None:
    with server.client() as client:
        assert client.get("/v1/admin/segments").status_code == 401
        got = client.get("/v1/admin/profiles/u0000001", headers=server.ingest_headers)
        assert got.status_code == 403


def test_profile_shows_features_segments_and_why(server: LiveServer) -> None:
    now = datetime.now(UTC)
    events = [
        {"event_id": f"api-{i}", "type": "product_view", "user_id": "api-user",
         "timestamp": (now - timedelta(minutes=10 - i)).isoformat(),
         "properties": {"product_id": f"p{i}", "category": "shoes", "price": 30 + i}}
        for i in range(5)
    ] + [{"event_id": "api-cart", "type": "add_to_cart", "user_id": "api-user",
          "timestamp": now.isoformat(), "properties": {"price": 31}}]  # fmt: skip
    with server.client() as client:
        posted = client.post("/v1/events", json=events, headers=server.ingest_headers)
        assert posted.json()["accepted"] == 6
        profile = client.get("/v1/admin/profiles/api-user", headers=server.admin_headers).json()
        assert profile["source"] == "online" and profile["profiled"] is True
        assert profile["features"]["product_views_24h"] == 5
        assert profile["features"]["shoe_views_7d"] == 5
        assert "cart_abandoners" in profile["segments"]
        why = profile["explanations"]["cart_abandoners"]
        assert why["held"] and why["member"]
        assert {p["feature"]: p["held"] for p in why["parts"]} == {
            "product_views_24h": True,
            "cart_adds_24h": True,
            "purchases_24h": True,
        }
        missing = client.get("/v1/admin/profiles/nobody", headers=server.admin_headers)
        assert missing.status_code == 404
        # the membership changes went back into the warehouse as events
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            quality = client.get("/v1/admin/quality", headers=server.admin_headers).json()
            stored = sum(
                r["n"] for r in quality["ingestion"]
                if r["source"] == "segments" and r["outcome"] == "accepted"
            )  # fmt: skip
            if stored:
                break
            time.sleep(0.2)
        assert stored >= 1


def test_segments_route_reports_online_and_batch(server: LiveServer) -> None:
    with server.client() as client:
        got = client.get(
            "/v1/admin/segments",
            params={"at": "2024-06-01T00:00:00Z", "days": 1},
            headers=server.admin_headers,
        ).json()
    assert [s["key"] for s in got["segments"]][:2] == ["cart_abandoners", "champions"]
    batch = got["batch"]
    assert batch["profiles"] > 250 and len(batch["size_over_time"]) == 2
    assert "premium_browsers" in batch["below_min_users"]
    assert got["online_sizes"]["cart_abandoners"] >= 1  # the API user above, at least


def test_erasing_a_user_removes_the_online_profile(server: LiveServer) -> None:
    with server.client() as client:
        before = client.get("/v1/admin/profiles/api-user", headers=server.admin_headers)
        assert before.status_code == 200
        erased = client.delete("/v1/admin/users/api-user", headers=server.admin_headers)
        assert erased.json()["events_deleted"] >= 6
        after = client.get("/v1/admin/profiles/api-user", headers=server.admin_headers)
        assert after.status_code == 404
