"""The official GrowthBook JavaScript SDK, in headless Chromium, against a running server.

The SDK's browser bundle comes from npm (``npm pack``, cached outside the
repository in ``~/.cache/tailorkit-tests/npm``; set ``TAILORKIT_TEST_CACHE``
to move it).  A page served from a second local origin loads it, the SDK
fetches ``/api/features/<client key>`` cross-origin (the endpoint answers
``Access-Control-Allow-Origin: *``), and 1,000 users × 22 features must
equal tailorkit's in-process engine.  Debian's ``/usr/bin/chromium`` runs
the page; no browser is downloaded.  Skipped, saying why, without npm, the
registry or chromium.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tailorkit.decide.features import sdk_payload
from tailorkit.evaluate import Evaluator
from tests.conftest import LiveServer
from tests.features.catalog import DOCUMENT, FEATURES, users
from tests.features.test_python_clients import tailorkit_outcome

JS_VERSION = os.environ.get("TAILORKIT_GROWTHBOOK_JS_VERSION", "1.8.0")
CACHE = Path(os.environ.get("TAILORKIT_TEST_CACHE", Path.home() / ".cache" / "tailorkit-tests"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
N_USERS = 1000

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>GrowthBook SDK against tailorkit</title>
<script src="growthbook.js"></script>
"""

# Runs in the page: load the payload from tailorkit, then evaluate every user × feature
EVALUATE = """
async ({apiHost, clientKey, users, keys}) => {
  const gb = new growthbook.GrowthBook({apiHost, clientKey});
  const init = await gb.init({timeout: 10000});
  const rows = [];
  for (const user of users) {
    await gb.setAttributes(user);
    rows.push(keys.map((key) => {
      const r = gb.evalFeature(key);
      const e = r.experimentResult;
      return [r.value === undefined ? null : r.value, r.source,
              e ? e.variationId : null, e ? e.inExperiment : null];
    }));
  }
  return {source: init.source, error: String(init.error || ""),
          loaded: Object.keys(gb.getFeatures()).length, rows};
}
"""


def growthbook_bundle() -> Path:
    """The SDK's browser bundle (``dist/bundles/index.min.js``) from npm, cached."""
    npm_cache = CACHE / "npm"
    target = npm_cache / f"growthbook-{JS_VERSION}.min.js"
    if target.is_file():
        return target
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: cannot fetch @growthbook/growthbook")
    npm_cache.mkdir(parents=True, exist_ok=True)
    command = ["npm", "pack", f"@growthbook/growthbook@{JS_VERSION}", "--pack-destination", "."]
    try:
        done = subprocess.run(
            command, cwd=npm_cache, capture_output=True, text=True, timeout=180, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.skip("npm registry unreachable: `npm pack @growthbook/growthbook` timed out")
    if done.returncode != 0:
        pytest.skip(f"npm registry unreachable: {done.stderr.strip()[-300:]}")
    tarball = npm_cache / done.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("package/dist/bundles/index.min.js")
        assert member is not None, "the npm package has no browser bundle"
        partial = target.with_suffix(".part")
        partial.write_bytes(member.read())
    partial.replace(target)  # atomic: a concurrent run never reads half a bundle
    return target


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def page_origin(tmp_path: Path) -> Iterator[str]:
    """A second local origin serving the test page and the SDK bundle."""
    shutil.copy(growthbook_bundle(), tmp_path / "growthbook.js")
    (tmp_path / "index.html").write_text(PAGE)
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_growthbook_js_sdk_in_chromium_matches_the_engine(
    features_server: LiveServer, page_origin: str
) -> None:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    people = users(N_USERS, seed=21)
    keys = list(FEATURES)
    arguments = {
        "apiHost": features_server.url,
        "clientKey": features_server.project.settings.sdk_keys[0],
        "users": people,
        "keys": keys,
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{page_origin}/index.html")
            answer = page.evaluate(EVALUATE, arguments)
        finally:
            browser.close()
    assert (answer["source"], answer["error"], answer["loaded"]) == ("network", "", len(keys))
    ours = Evaluator.from_payload(sdk_payload(DOCUMENT))
    mismatches = []
    for user, row in zip(people, answer["rows"], strict=True):
        ctx = ours.context(user)
        for key, got in zip(keys, row, strict=True):
            expected = tailorkit_outcome(ours.eval_feature(key, ctx))
            if tuple(got) != expected:
                mismatches.append((user["id"], key, expected, got))
    assert mismatches == [], f"{len(mismatches)} differ, e.g. {mismatches[:3]}"
