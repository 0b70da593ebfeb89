"""The dashboard in Debian's chromium: login, every page, charts, experiment numbers.

One small demo (500 visitors, 10 days) is built per module; ``tailorkit
analyze --json`` runs on it before the server starts (DuckDB allows one
writer process). Set ``TAILORKIT_SCREENSHOTS=1`` to refresh
``docs/screenshots/``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tailorkit.demo.catalog import build_catalog
from tests.conftest import LiveServer, start_server

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
PAGES = [
    "/",
    "/dashboard/segments",
    "/dashboard/experiments",
    "/dashboard/experiments/checkout-layout",
    "/dashboard/experiments/welcome-offer",
    "/dashboard/bandits",
    "/dashboard/personas",
    "/dashboard/journeys",
    "/dashboard/recommendations",
    "/dashboard/profile?user=u0000001",
]
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


def _cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "tailorkit.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return done.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("dash") / "demo"
    _cli("demo", "--no-serve", "--users", "500", "--days", "10", "--dir", str(root), "--json")
    # the first start stores the history's segment changes (segments at exposure)
    start_server(root, root.parent / "server.log").stop()
    analysis = json.loads(_cli("analyze", "checkout-layout", "--project", str(root), "--json"))
    server = start_server(root, root.parent / "server.log")
    yield server, analysis
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


def _login(browser: Any, server: LiveServer, key: str) -> Any:
    page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
    page.goto(f"{server.url}/login")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def test_ingest_key_is_refused_and_pages_need_login(browser: Any, demo: Any) -> None:
    server, _ = demo
    page = _login(browser, server, server.project.settings.ingest_keys[0])
    assert page.locator("#error").is_visible()
    page.goto(f"{server.url}/dashboard/segments")
    assert page.url.endswith("/login")


def test_admin_login_sets_a_strict_http_only_session(browser: Any, demo: Any) -> None:
    server, _ = demo
    page = _login(browser, server, server.project.settings.admin_keys[0])
    assert page.url.rstrip("/") == server.url
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "tk_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert server.project.settings.admin_keys[0] not in cookie["value"]


def test_every_page_loads_without_console_errors_and_charts_have_data(
    browser: Any, demo: Any
) -> None:
    server, _ = demo
    page = _login(browser, server, server.project.settings.admin_keys[0])
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    for path in PAGES:
        page.goto("about:blank")  # the auto-refresh of the last page must not interrupt a slow one
        response = page.goto(f"{server.url}{path}", timeout=120_000)
        assert response is not None and response.status == 200, path
        if os.environ.get("TAILORKIT_SCREENSHOTS") and "?" not in path:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            name = path.strip("/").replace("dashboard/", "").replace("/", "-") or "overview"
            page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        if path in ("/", "/dashboard/segments", "/dashboard/journeys", "/dashboard/personas"):
            values = page.eval_on_selector_all(
                "svg.chart .series", "els => els.map(e => JSON.parse(e.dataset.values))"
            )
            assert any(v for series in values for v in series if v), path
    assert errors == []


def test_experiment_page_equals_tailorkit_analyze(browser: Any, demo: Any) -> None:
    server, analysis = demo
    page = _login(browser, server, server.project.settings.admin_keys[0])
    page.goto(f"{server.url}/dashboard/experiments/checkout-layout", timeout=120_000)
    users = page.eval_on_selector_all(
        "#variations tr[data-variation]",
        "els => els.map(e => [e.dataset.variation, +e.dataset.users])",
    )
    assert users == [[v["name"], v["users"]] for v in analysis["variations"]]
    assert users and sum(n for _, n in users) > 0
    for metric in analysis["metrics"]:
        if "variations" not in metric:
            continue
        shown = page.eval_on_selector_all(
            f".metric[data-metric='{metric['key']}'] tr.lift",
            "els => els.map(e => [e.dataset.variation, +e.dataset.relative, +e.dataset.p])",
        )
        expected = [[v["variation"], v["relative"], v["p_value"]] for v in metric["variations"]]
        assert len(shown) == len(expected)
        for got, want in zip(shown, expected, strict=True):
            assert got[0] == want[0]
            assert math.isclose(got[1], want[1], rel_tol=1e-9, abs_tol=1e-12)
            assert math.isclose(got[2], want[2], rel_tol=1e-9, abs_tol=1e-12)
        ci = page.eval_on_selector_all(
            f".metric[data-metric='{metric['key']}'] svg[data-chart=interval] .series",
            "els => els.map(e => JSON.parse(e.dataset.values))",
        )
        assert [c[0] for c in ci] == pytest.approx([v["relative"] for v in metric["variations"]])
    action = page.text_content("[data-field=action]")
    assert action == analysis["recommendation"]["action"]
    segments = page.eval_on_selector_all(
        "#segments tr.segment-row",
        "els => els.map(e => [e.dataset.segment, e.dataset.metric, e.dataset.variation,"
        " +e.dataset.users, e.dataset.relative === 'None' ? null : +e.dataset.relative])",
    )
    assert segments, "the per-segment table is empty"
    expected_rows = [
        [r["segment"], r["metric"], r["variation"], r["users"], r["relative"]]
        for r in analysis["segments"]["rows"]
    ]
    # the page's analysis is a second run: DuckDB's parallel sums may differ in the last digit
    assert [row[:4] for row in segments] == [row[:4] for row in expected_rows]
    for got, want in zip(segments, expected_rows, strict=True):
        assert (got[4] is None) == (want[4] is None)
        assert got[4] is None or math.isclose(got[4], want[4], rel_tol=1e-9, abs_tol=1e-12)
    # power for a 10% lift of the primary metric, as `tailorkit power` plans it
    smallest = min(v["users"] for v in analysis["variations"])
    baseline = str(analysis["metrics"][0]["control"]["mean"])
    arms = str(len(analysis["variations"]))
    plan = ("--baseline", baseline, "--mde", "0.1", "--relative", "--variations", arms)
    planned = json.loads(_cli("power", *plan, "--users", str(smallest), "--json"))
    assert page.text_content("[data-field=per-variation]") == str(planned["per_variation"])
    assert page.text_content("[data-field=users]") == str(smallest)
    page.goto(f"{server.url}/dashboard/experiments", timeout=120_000)
    shown_status = page.text_content("tr:has(a[href$='/checkout-layout']) [data-field=status]")
    running = analysis["recommendation"]["action"] == "keep_running"
    assert shown_status is not None
    assert shown_status.startswith("running (" if running else "ready to decide (")


def test_demo_shop_page_loads_the_sdk(browser: Any, demo: Any) -> None:
    server, _ = demo
    page = browser.new_context().new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server.url}/demo/shop")
    page.wait_for_function(
        "document.querySelector('[data-tailorkit-placement=recs]').innerText.length > 0",
        timeout=60_000,  # the first decide may wait for a busy 2-core machine
    )
    shown = page.eval_on_selector_all(
        "[data-tailorkit-placement=recs] li", "els => els.map(e => e.textContent)"
    )
    # products of the catalog, ranked by the trained model (the demo built it)
    catalog = set(build_catalog().table()["name"].to_pylist())
    assert len(shown) == 4 and set(shown) <= catalog
    cards = page.eval_on_selector_all(".p h3", "els => els.map(e => e.textContent)")
    assert len(cards) == 6 and set(cards) <= catalog  # the products the demo data has
    assert errors == []
