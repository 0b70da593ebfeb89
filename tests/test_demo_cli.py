"""``tailorkit demo`` builds a seeded shop into a fresh project."""

from __future__ import annotations

import json
from pathlib import Path

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
