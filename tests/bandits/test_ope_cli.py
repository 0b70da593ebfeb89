"""``tailorkit ope`` through Typer's CliRunner, on real files and a real project store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tailorkit.cli.main import app
from tailorkit.collect.pipeline import Collector
from tailorkit.decide.log import exposure_event
from tailorkit.project import load_project
from tailorkit.store.warehouse import Warehouse
from tests.bandits.test_ope_logs import simulate, write
from tests.decide.conftest import write_decide_project
from tests.helpers import event

runner = CliRunner()


def run(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["ope", *args, "--json"])
    return result.exit_code, json.loads(result.stdout.strip().splitlines()[-1])


def test_external_log_as_json_and_as_a_table(tmp_path: Path) -> None:
    table, _ = simulate(800, seed=3)
    path = write(table, tmp_path / "log.ndjson")
    code, out = run("--log", str(path), "--policy", "arm:a2", "--estimator", "ips",
                    "--estimator", "snips")  # fmt: skip
    assert code == 0, out
    a = np.array(table.column("action").to_pylist()) == "a2"
    p = table.column("propensity").to_numpy()
    r = table.column("reward").to_numpy()
    assert out["estimates"]["ips"]["value"] == pytest.approx(np.mean(a * r / p))
    assert out["estimates"]["snips"]["value"] == pytest.approx((a * r / p).sum() / (a / p).sum())
    assert sorted(out["estimates"]) == ["ips", "snips"] and out["n"] == 800

    shown = runner.invoke(app, ["ope", "--log", str(path), "--features", "x0,segment"])
    assert shown.exit_code == 0, shown.output
    for text in ("uniform on", "logged policy", "ips", "snips", "dr", "mean importance weight"):
        assert text in shown.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "uniform"], "give either --log FILE"),
        (["--log", "LOG", "--bandit", "promo"], "give either --log FILE"),
        (["--log", "LOG", "--since", "2026-01-01"], "--since/--until apply to --bandit"),
        (["--log", "LOG", "--propensity", "p"], "missing columns ['p']"),
        (["--log", "LOG", "--features", "nope"], "missing columns ['nope']"),
        (["--log", "LOG", "--estimator", "magic"], "unknown estimators ['magic']"),
        (["--log", "LOG", "--alpha", "1.5"], "alpha must be in (0, 1)"),
        (["--log", "missing.csv"], "no such file"),
    ],
)
def test_errors_are_clear(tmp_path: Path, args: list[str], message: str) -> None:
    path = write(simulate(50)[0], tmp_path / "log.csv")
    code, out = run(*[str(path) if a == "LOG" else a for a in args])
    assert code == 2
    assert message in out["error"]


def test_propensities_outside_the_unit_interval(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("action,reward,propensity\na,1,0.5\nb,0,-0.1\n")
    code, out = run("--log", str(path))
    assert code == 2 and out["error"] == "propensity must be in (0, 1]: row 2 has -0.1"


def test_the_projects_own_decision_log(tmp_path: Path) -> None:
    root = write_decide_project(tmp_path / "shop")
    project = load_project(root)
    rng = np.random.default_rng(4)
    start = datetime.now(UTC) - timedelta(days=2)
    events, rows = [], []
    for i in range(300):
        arm = int(rng.random() < 0.3)  # logged with P(new_in) = 0.3
        propensity = 0.3 if arm else 0.7
        at = start + timedelta(minutes=i)
        events.append(exposure_event(
            kind="bandit", key="promo_bandit", variation=arm,
            variation_key=("sale", "new_in")[arm], propensity=propensity,
            user_id=f"u{i}", timestamp=at, placement="promo",
        ))  # fmt: skip
        clicked = rng.random() < (0.2 if arm else 0.1)
        if clicked:
            events.append(event(user_id=f"u{i}", type="click",
                                timestamp=(at + timedelta(minutes=5)).isoformat(),
                                properties={"placement": "promo"}))  # fmt: skip
        rows.append((arm, float(clicked), propensity))
    warehouse = Warehouse(project.settings.store_url)
    Collector(warehouse, project.settings).ingest_items(events, "test")
    warehouse.close()

    a, r, p = (np.array(c) for c in zip(*rows, strict=True))
    code, out = run("--bandit", "promo_bandit", "-p", str(root), "--policy", "arm:new_in")
    assert code == 0, out
    assert out["n"] == 300 and out["arms"] == ["sale", "new_in"]
    assert out["estimates"]["ips"]["value"] == pytest.approx(np.mean(a * r / p))
    assert out["logged"]["value"] == pytest.approx(r.mean())
    # the bandit as the server left it: no state saved, so its prior (50/50)
    code, prior = run("--bandit", "promo_bandit", "-p", str(root), "--policy",
                      "bandit:promo_bandit", "--estimator", "ips")  # fmt: skip
    assert code == 0, prior
    assert prior["estimates"]["ips"]["value"] == pytest.approx(np.mean(0.5 * r / p))
    code, out = run("--bandit", "nope", "-p", str(root))
    assert code == 2 and "no bandit 'nope'" in out["error"]
