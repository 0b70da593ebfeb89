"""``tailorkit demo`` builds a seeded shop into a fresh project."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
import yaml

from tailorkit.cli.demo import FAST_MODELS, build_options
from tailorkit.demo import generate_shop
from tailorkit.learn.artifacts import ArtifactStore
from tailorkit.learn.background import train_in_background, training_status
from tailorkit.project import load_project
from tailorkit.store.warehouse import Warehouse
from tests.test_cli import cli


def test_demo_builds_a_seeded_project(tmp_path: Path) -> None:
    args = ("demo", "--no-serve", "--users", "300", "--days", "7", "--dir", str(tmp_path / "d"))
    first = json.loads(cli(*args, "--json").stdout)
    assert first["events_generated"] > 3000
    # About 1% of visitors refuse analytics consent: counted, not stored.
    assert 0.95 * first["events_generated"] < first["events_stored"] < first["events_generated"]
    wh = Warehouse(load_project(tmp_path / "d").settings.store_url)
    # plus the experiment exposures the demo gives its history
    assert first["exposures_stored"] > 0
    assert wh.count_events() == first["events_stored"] + first["exposures_stored"]
    types = set(wh.events.type.to_pyarrow().to_pylist())
    assert {"page_view", "product_view", "add_to_cart", "purchase", "identify"} <= types
    assert wh.identities.count().execute() > 0
    assert wh.con.table("products").count().execute() > 0
    wh.close()
    again = json.loads(cli(*args, "--json").stdout)  # recreated, same seed, same data
    assert again["events_stored"] == first["events_stored"]
    assert again["admin_key"] != first["admin_key"]


def test_demo_times_its_phases_and_shows_best_sellers_until_a_model_exists(
    tmp_path: Path,
) -> None:
    root = tmp_path / "d"
    args = ("--users", "500", "--days", "10", "--models", "none", "--dir", str(root))
    out = json.loads(cli("demo", "--no-serve", *args, "--json").stdout)
    phases = out["phases"]
    assert list(phases) == ["generate", "ingest", "exposures"]  # no models: none trained
    assert all(p["seconds"] >= 0 and p["cpu_seconds"] >= 0 for p in phases.values())
    assert sum(p["seconds"] for p in phases.values()) <= out["setup_seconds"] + 0.1
    # the recs placement's static list: the most bought products of the generated history
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    shop = generate_shop(n_users=500, days=10, seed=0, end=end)
    bought: Counter[str] = Counter()
    for row in shop.events.filter(pc.equal(shop.events["type"], "purchase")).to_pylist():
        bought.update(json.loads(row["properties"])["product_ids"])
    top = sorted(bought.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
    placements = yaml.safe_load((root / "placements.yaml").read_text())
    popular = placements["recommendations"]["popular"]
    assert [i["id"] for i in popular["items"]] == [k for k, _ in top]
    assert popular["model"] == "hybrid"


def test_demo_models_train_in_the_background(tmp_path: Path) -> None:
    root = tmp_path / "d"
    args = ("--users", "500", "--days", "10", "--models", "none", "--dir", str(root))
    cli("demo", "--no-serve", *args, "--json")
    gate = threading.Event()  # as `tailorkit demo` waits for its server to be up
    thread = train_in_background(load_project(root), build_options("fast"), gate.wait)
    status = training_status(root)
    assert status is not None and status["steps"] == FAST_MODELS
    store = ArtifactStore.of_project(root)
    time.sleep(0.5)
    assert not any(store.current(step) for step in FAST_MODELS)  # still waiting
    gate.set()
    thread.join(300)
    assert training_status(root) is None
    assert all(store.current(step) for step in FAST_MODELS)
    summary = json.loads((root / "models" / "last_build.json").read_text())
    assert summary["failed"] == []
    assert summary["steps"]["recommendations"]["status"] == "ok"
    # a marker left by a dead process is not a running build
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    marker = root / "models" / "TRAINING.json"
    marker.write_text(json.dumps({"steps": FAST_MODELS, "started": "x", "pid": int(gone.stdout)}))
    assert training_status(root) is None
