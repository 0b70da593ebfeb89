"""GET /v1/admin/bandits/{key}/report and the dashboard's bandits page over real HTTP."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from tailorkit.decide.log import exposure_event
from tests.conftest import LiveServer, start_server
from tests.decide.conftest import write_decide_project
from tests.helpers import event

REPORT = "/v1/admin/bandits/promo_bandit/report"


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, list]]:
    """A server whose store holds 200 bandit decisions (3 h ago) and their clicks."""
    root = tmp_path_factory.mktemp("report")
    server = start_server(write_decide_project(root / "shop"), root / "server.log")
    rng = np.random.default_rng(7)
    start = datetime.now(UTC) - timedelta(hours=3)
    events, rows = [], []
    for i in range(200):
        arm = int(rng.random() < (0.2 if i < 100 else 0.7))  # traffic moves to new_in
        propensity = [0.8, 0.2][arm] if i < 100 else [0.3, 0.7][arm]
        at = start + timedelta(seconds=30 * i)
        events.append(exposure_event(
            kind="bandit", key="promo_bandit", variation=arm,
            variation_key=("sale", "new_in")[arm], propensity=propensity,
            user_id=f"r{i}", timestamp=at, placement="promo",
        ))  # fmt: skip
        clicked = bool(rng.random() < (0.1, 0.3)[arm])
        if clicked:
            events.append(event(user_id=f"r{i}", type="click",
                                timestamp=(at + timedelta(minutes=2)).isoformat(),
                                properties={"placement": "promo"}))  # fmt: skip
        rows.append((at.timestamp(), arm, float(clicked), propensity))
    with server.client() as client:
        r = client.post("/v1/events", json=events, headers=server.ingest_headers)
        assert r.status_code == 200 and r.json()["accepted"] == len(events), r.text
    yield server, rows
    server.stop()


def get(server: LiveServer, path: str, **params: object) -> dict:
    with server.client() as client:
        r = client.get(path, params=params, headers=server.admin_headers)
    assert r.status_code == 200, r.text
    out: dict = r.json()
    return out


def test_report_numbers(logged: tuple[LiveServer, list]) -> None:
    server, rows = logged
    report = get(server, REPORT, bins=2)
    deadline = time.monotonic() + 10
    while report["reward"] is None or report["reward"]["n"] < 200:  # the writer may lag
        assert time.monotonic() < deadline, report
        time.sleep(0.2)
        report = get(server, REPORT, bins=2)
    t, a, r, p = (np.array(c) for c in zip(*rows, strict=True))
    assert report["arms"] == ["sale", "new_in"] and report["log_error"] is None
    # allocation: first half mostly sale, second half mostly new_in
    first = t < (t.min() + t.max()) / 2
    assert report["allocation"]["series"]["new_in"] == pytest.approx(
        [a[first].mean(), a[~first].mean()]
    )
    w = report["reward"]
    assert w["total"] == r.sum()
    psi = r / (2 * p)
    assert w["uniform"]["value"] == pytest.approx(psi.sum())
    half = stats.norm.ppf(0.975) * psi.std(ddof=1) * np.sqrt(len(psi))
    assert w["uniform"]["ci_low"] == pytest.approx(psi.sum() - half)
    d = r - psi
    assert w["gain"]["value"] == pytest.approx(d.sum())

    # posteriors are the live bandit's (no live decisions yet: the prior Beta(1, 1))
    live = get(server, "/v1/admin/bandits")["promo_bandit"]["state"]
    rows_by_arm = {row["arm"]: row for row in report["posteriors"]}
    for i, arm in enumerate(("sale", "new_in")):
        dist = stats.beta(1 + live["successes"][i], 1 + live["failures"][i])
        assert rows_by_arm[arm]["mean"] == pytest.approx(dist.mean())
        assert rows_by_arm[arm]["ci_high"] == pytest.approx(dist.ppf(0.975))

    later = get(server, REPORT, since=datetime.fromtimestamp(t[150], UTC).isoformat())
    assert later["reward"]["n"] == 50


def test_report_refusals(logged: tuple[LiveServer, list]) -> None:
    server, _ = logged
    with server.client() as client:
        assert client.get(REPORT).status_code == 401
        assert client.get(REPORT, headers=server.ingest_headers).status_code == 403
        admin = server.admin_headers
        assert client.get("/v1/admin/bandits/nope/report", headers=admin).status_code == 404
        bad = client.get(REPORT, params={"since": "yesterday"}, headers=admin)
        assert bad.status_code == 422 and "ISO-8601" in bad.text
        assert client.get(REPORT, params={"bins": 0}, headers=admin).status_code == 422


def test_dashboard_shows_the_report(logged: tuple[LiveServer, list]) -> None:
    server, rows = logged
    with server.client() as client:
        login = client.post("/login", data={"key": server.project.settings.admin_keys[0]})
        assert login.status_code in (200, 303)
        page = client.get("/dashboard/bandits")
    assert page.status_code == 200
    text = page.text
    summary = re.search(r'class="reward-summary" data-total="([^"]+)" data-uniform="([^"]+)"', text)
    assert summary is not None, text[:2000]
    r = np.array([row[2] for row in rows])
    p = np.array([row[3] for row in rows])
    assert float(summary.group(1)) == r.sum()
    assert float(summary.group(2)) == pytest.approx((r / (2 * p)).sum())
    charts = re.findall(r'data-chart="(\w+)"', text)
    assert charts.count("line") >= 2 and "interval" in charts
    series = re.search(r'data-series="bandit \(observed\)" data-values="([^"]+)"', text)
    assert series is not None
    assert json.loads(html.unescape(series.group(1)))[-1] == r.sum()


def test_no_decisions_in_range_still_reports_posteriors(logged: tuple[LiveServer, list]) -> None:
    server, _ = logged
    report = get(server, REPORT, since="2100-01-01T00:00:00Z")
    assert report["reward"] is None and report["allocation"] is None
    assert "no decisions" in report["log_error"]
    assert {row["arm"] for row in report["posteriors"]} == {"sale", "new_in"}
