"""``tailorkit analyze``/``power`` as subprocesses and the admin results endpoint."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tailorkit.cli.main import app
from tailorkit.cli.segments import parse_instant
from tailorkit.measure.analysis import analyze_experiment
from tailorkit.server.app import create_app
from tests.measure.pipeline.conftest import Stored
from tests.measure.pipeline.reference import assert_close
from tests.test_cli import cli

AT = "2026-10-15T00:00:00Z"


def test_analyze_json_and_html(stored: Stored, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    out = cli("analyze", "signup_flow", "-p", str(stored.root), "--at", AT, "--html", str(html),
              "--json")  # fmt: skip
    report = json.loads(out.stdout)
    assert report["recommendation"]["action"] == "ship"
    assert report["as_of"] == "2026-10-15T00:00:00+00:00"
    assert report["html"] == str(html)
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "New flow" in page


def test_analyze_table_output(stored: Stored) -> None:
    out = CliRunner().invoke(app, ["analyze", "hetero", "-p", str(stored.root), "--at", AT],
                             terminal_width=200)  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "metrics (relative lift vs control)" in out.output
    assert "segment mobile: signup" in out.output


def test_analyze_unknown_experiment_names_file_and_key(stored: Stored) -> None:
    out = CliRunner().invoke(app, ["analyze", "nope", "-p", str(stored.root), "--json"])
    assert out.exit_code == 2
    error = json.loads(out.stdout)["error"]
    assert error.startswith("features.yaml: experiments.nope: no such experiment (")


def test_power_corrects_the_150_users_rule_of_thumb() -> None:
    out = cli("power", "--baseline", "0.2", "--mde", "0.05", "--users", "150",
              "--daily-users", "400", "--json")  # fmt: skip
    plan = json.loads(out.stdout)
    assert plan["per_variation"] == 1091 and plan["total"] == 2182
    assert round(plan["at_users"]["power"], 2) == 0.18
    assert round(plan["at_users"]["mde_absolute"], 3) == 0.142
    assert plan["duration"]["days"] == 6 and plan["duration"]["recommended_days"] == 7
    three = CliRunner().invoke(app, ["power", "--baseline", "0.2", "--mde", "0.25", "--relative",
                                     "--variations", "3", "--json"])  # fmt: skip
    assert json.loads(three.stdout)["per_variation"] == 1322


def test_power_in_plain_words() -> None:
    out = CliRunner().invoke(app, ["power", "--baseline", "0.2", "--mde", "0.05", "--users", "150"],
                             terminal_width=200)  # fmt: skip
    assert "1,091 users per variation" in out.output
    assert "With 150 users per variation: power 18%" in out.output


def test_power_uses_a_segments_observed_traffic(stored: Stored) -> None:
    out = CliRunner().invoke(app, ["power", "--baseline", "0.1", "--mde", "0.02", "--segment",
                                   "mobile", "--traffic-days", "400", "-p", str(stored.root),
                                   "--json"])  # fmt: skip
    duration = json.loads(out.stdout)["duration"]
    # every simulated mobile user entered "mobile" once; 400 days covers them all
    assert 6000 < duration["daily_users"] * 400 < 8000
    assert duration["source"].startswith("observed: new users of segment 'mobile'")
    assert duration["recommended_days"] % 7 == 0


def test_results_endpoint_needs_the_admin_key(stored: Stored) -> None:
    client = TestClient(create_app(stored.project))
    admin = {"Authorization": f"Bearer {stored.project.settings.admin_keys[0]}"}
    ingest = {"Authorization": f"Bearer {stored.project.settings.ingest_keys[0]}"}
    url = f"/v1/admin/experiments/signup_flow/results?at={AT}"
    assert client.get(url, headers=ingest).status_code in (401, 403)
    assert client.get(url).status_code == 401
    answer = client.get(url, headers=admin)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["recommendation"]["action"] == "ship"
    # the same document as the CLI's (to rounding: parallel sums add in any order)
    assert_close(body, analyze_experiment(stored.project, "signup_flow", at=parse_instant(AT)))
    page = client.get(url + "&format=html", headers=admin)
    assert page.headers["content-type"].startswith("text/html") and "<svg" in page.text
    assert client.get("/v1/admin/experiments/nope/results", headers=admin).status_code == 404
    listed = client.get("/v1/admin/experiments", headers=admin).json()["experiments"]
    assert [e["key"] for e in listed] == ["signup_flow", "aa", "srm", "hetero"]
