"""/sdk.js in headless Debian chromium (Playwright): events arrive, content appears,
defaults stay when the server is down."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import yaml

from tests.conftest import LiveServer, free_port, start_server
from tests.decide.conftest import write_decide_project

CHROMIUM = Path("/usr/bin/chromium")
# The shop's pages come from a second loopback server: another origin than the API, as in
# production (pages fulfilled by page.route would count as public and be refused loopback).
SHOP_PORT = free_port()
SHOP = f"http://127.0.0.1:{SHOP_PORT}"
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")

PAGE = """<!doctype html>
<html><head><title>Shop</title></head><body>
<div id="hero" data-tailorkit-placement="home_hero"><h1>Static welcome</h1></div>
<div id="banner" data-tailorkit-placement="banner"><div>Static banner</div></div>
<script src="{api}/sdk.js" data-key="{key}" data-api="{api}" data-timeout="800"></script>
</body></html>"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("sdk")
    project = write_decide_project(root / "shop")
    settings = yaml.safe_load((project / "tailorkit.yaml").read_text())
    settings["keys"]["cors_origins"] = [SHOP]
    (project / "tailorkit.yaml").write_text(yaml.safe_dump(settings))
    live = start_server(project, root / "server.log")
    yield live
    live.stop()


class _Pages(http.server.BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.pages.get(self.path)
        self.send_response(200 if body is not None else 404)
        kind = "application/javascript" if self.path.endswith(".js") else "text/html"
        self.send_header("Content-Type", kind)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def shop() -> Iterator[dict[str, bytes]]:
    """The shop's web server; tests put pages into the returned mapping."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", SHOP_PORT), _Pages)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield _Pages.pages
    httpd.shutdown()


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


def open_shop(browser: Any, shop: dict[str, bytes], api: str, key: str) -> Any:
    """A page on the shop's origin that loads the snippet from ``api``."""
    page = browser.new_context().new_page()
    shop["/index.html"] = PAGE.format(api=api, key=key).encode()
    page.goto(f"{SHOP}/index.html")
    return page


def accepted_events(server: LiveServer) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(r'tailorkit_events_total\{outcome="accepted",source="http"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


def wait_for(check: Any, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


def test_snippet_fills_placements_and_sends_events(
    server: LiveServer, browser: Any, shop: dict[str, bytes]
) -> None:
    before = accepted_events(server)
    page = open_shop(browser, shop, server.url, server.project.settings.ingest_keys[0])
    page.wait_for_selector("#hero[data-tailorkit-source]", timeout=10_000)
    hero = page.locator("#hero")
    assert hero.get_attribute("data-tailorkit-source") in ("experiment", "rule")
    assert "Static welcome" not in hero.inner_html()
    banner = page.locator("#banner")
    assert banner.inner_html() == "<div>Free shipping</div>"
    assert banner.get_attribute("data-tailorkit-source") == "default"
    hero.click()  # a click event, for bandit rewards
    page.evaluate("tailorkit.track('product_view', {product_id: 'p1'})")
    # Leaving the page sends the queue with sendBeacon.
    page.goto("about:blank")
    # page_view, 2 placement_view, click, product_view
    assert wait_for(lambda: accepted_events(server) - before >= 5), accepted_events(server) - before
    page.context.close()


def test_identify_and_opt_out_from_the_browser(
    server: LiveServer, browser: Any, shop: dict[str, bytes]
) -> None:
    page = open_shop(browser, shop, server.url, server.project.settings.ingest_keys[0])
    page.wait_for_selector("#hero[data-tailorkit-source]", timeout=10_000)
    page.evaluate("tailorkit.identify('browser-user', {plan: 'pro'})")
    assert page.evaluate("tailorkit.optOut()") is True
    page.evaluate("tailorkit.decide()")  # opted out: nothing is asked, defaults stay
    anonymous = page.evaluate("tailorkit.anonymousId()")
    r = httpx.post(
        f"{server.url}/v1/decide",
        json={"user_id": "browser-user", "anonymous_id": anonymous, "placements": ["banner"]},
        headers=server.ingest_headers,
    )
    assert r.json()["placements"]["banner"]["reason"] == "no personalization consent"
    page.context.close()


def test_defaults_stay_when_the_server_is_down(browser: Any, shop: dict[str, bytes]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    sdk = Path(__file__).parents[2] / "src" / "tailorkit" / "server" / "static" / "sdk.js"
    shop["/sdk.js"] = sdk.read_bytes()  # the snippet loads from the shop; its API is gone
    html = PAGE.format(api=dead, key="tk_ingest_x").replace(f'src="{dead}/sdk.js"', 'src="/sdk.js"')
    shop["/down.html"] = html.encode()
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{SHOP}/down.html")
    page.wait_for_selector("#hero[data-tailorkit-source=fallback]", timeout=10_000)
    assert page.locator("#hero").inner_html() == "<h1>Static welcome</h1>"
    assert page.locator("#banner").inner_html() == "<div>Static banner</div>"
    context.close()
