"""Batch jobs give the same answers on DuckDB, PostgreSQL and Spark (local mode).

A seeded demo shop (300 visitors, 14 days) goes through the real collector
into DuckDB, with the online segment engine writing its membership changes
back as events, plus the history's experiment exposures. The stored rows are
copied into PostgreSQL and into a Spark warehouse (``pyspark://``). On each
backend the same code then computes, unchanged:

* profiles (every feature of the example definitions: windows, sums,
  distinct counts, traits, RFM, ratios, scores) and segment membership as of
  an instant between two minutes, flagged users excluded;
* the sufficient statistics and the report of the demo's checkout experiment,
  with a CUPED metric and a filtered ratio metric added (segment masks at
  exposure, winsorization caps, flagged users).

DuckDB is the reference: persons, features and memberships must be
identical (floats within 1e-9), the statistics identical up to float
summation order.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
import yaml

from tailorkit.collect.pipeline import Collector
from tailorkit.collect.quality import clean_events
from tailorkit.collect.raw import raw_from_arrow
from tailorkit.demo import generate_shop
from tailorkit.demo.definitions import history_exposures, write_definitions
from tailorkit.measure.analysis import load_spec
from tailorkit.measure.analysis.pipeline import build_report
from tailorkit.measure.analysis.query import GROUP_KEYS, sufficient_stats
from tailorkit.measure.analysis.spec import ExperimentSpec
from tailorkit.project import Project, load_project
from tailorkit.project.init import write_project
from tailorkit.segment.definitions import Definitions, parse_definitions
from tailorkit.segment.online import SegmentEngine
from tailorkit.segment.sink import ChangeSink
from tailorkit.store.warehouse import Warehouse
from tests.measure.pipeline.reference import assert_close
from tests.segment.common import batch_rows, differences

EXPERIMENT = "checkout-layout"
EXTRA_METRICS = {
    "revenue_cuped": {
        "type": "mean",
        "event": "purchase",
        "value": "revenue",
        "cuped": {"pre_period_days": 7},
    },
    "electronics_cart_rate": {
        "type": "ratio",
        "numerator": {"event": "add_to_cart", "where": {"category": "electronics"}},
        "denominator": {"event": "product_view"},
    },
}


@dataclass
class Results:
    """What one backend computed."""

    profiles: dict[str, dict[str, Any]]
    stats: list[dict[str, Any]]
    report: dict[str, Any]


@dataclass
class Shop:
    project: Project
    definitions: Definitions
    spec: ExperimentSpec
    at: datetime  # profiles and memberships as of this instant
    end: datetime  # the analysis' end
    events: pa.Table
    identities: pa.Table
    duckdb: Results


def compute(wh: Warehouse, shop: Shop) -> Results:
    """The batch jobs, as the CLI runs them, on one warehouse."""
    quality = shop.project.settings.quality
    profiles = batch_rows(shop.definitions, clean_events(wh, quality), shop.at)
    table = sufficient_stats(wh, shop.spec, quality, shop.end)
    stats = table.sort_by([(k, "ascending") for k in GROUP_KEYS]).to_pylist()
    return Results(profiles, stats, build_report(shop.spec, table, shop.end, quality))


def _add_metrics(root: Any) -> None:
    path = root / "features.yaml"
    document = yaml.safe_load(path.read_text())
    document["experiments"][EXPERIMENT]["metrics"].update(EXTRA_METRICS)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    root = write_project(tmp_path_factory.mktemp("backends") / "shop")
    demo = generate_shop(300, 14, seed=5)
    start = write_definitions(root, demo.end)
    _add_metrics(root)
    project = load_project(root)
    definitions = parse_definitions(yaml.safe_load((root / "segments.yaml").read_text()))
    wh = Warehouse(project.settings.store_url)
    collector = Collector(wh, project.settings)
    engine = SegmentEngine(
        definitions, on_changes=ChangeSink(definitions, collector, asynchronous=False)
    )
    collector.on_stored = engine.on_stored
    collector.ingest(raw_from_arrow(demo.events), "demo")
    collector.ingest_items(history_exposures(demo.events, start), "decision")
    shop = Shop(
        project,
        definitions,
        load_spec(project, EXPERIMENT),
        at=demo.end - timedelta(days=2, hours=5, minutes=3, seconds=17),
        end=demo.end,
        events=wh.events.to_pyarrow(),
        identities=wh.identities.to_pyarrow(),
        duckdb=Results({}, [], {}),
    )
    shop.duckdb = compute(wh, shop)
    wh.close()
    yield shop
    shutil.rmtree(root, ignore_errors=True)


def test_the_reference_is_not_vacuous(shop: Shop) -> None:
    types = set(shop.events.column("type").to_pylist())
    assert {"segment_entered", "segment_exited", "exposure", "identify"} <= types
    profiles = shop.duckdb.profiles
    assert len(profiles) > 250
    members = {
        s.key: sum(bool(r[s.key]) for r in profiles.values()) for s in shop.definitions.segments
    }
    assert sum(1 for n in members.values() if n > 0) >= 8, members
    stats = shop.duckdb.stats
    assert any(r["mask"] != 0 for r in stats) and {r["variation"] for r in stats} == {0, 1, 2, 3}
    assert sum(r["n"] for r in stats) > 100
    metrics = {m["key"] for m in shop.duckdb.report["metrics"]}
    assert set(EXTRA_METRICS) <= metrics


BACKENDS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("pyspark", marks=pytest.mark.spark),
]


@pytest.fixture(scope="module", params=BACKENDS)
def other(request: pytest.FixtureRequest, shop: Shop) -> Iterator[Results]:
    """The same stored rows in another backend, and what it computes from them."""
    url = request.getfixturevalue("pg_database" if request.param == "postgres" else "spark_url")
    wh = Warehouse(url)
    try:
        wh.insert(shop.events, shop.identities)
        yield compute(wh, shop)
    finally:
        for table in (
            "events",
            "identities",
            "ingest_stats",
            "flagged_users",
            "flagged_users_state",
        ):
            wh.con.drop_table(table, force=True)
        wh.close()


def test_profiles_and_memberships_are_identical(shop: Shop, other: Results) -> None:
    assert differences(shop.definitions, shop.duckdb.profiles, other.profiles) == {}
    for segment in shop.definitions.segments:
        expected = {p for p, row in shop.duckdb.profiles.items() if row[segment.key]}
        assert {p for p, row in other.profiles.items() if row[segment.key]} == expected


def test_experiment_statistics_and_report_are_identical(shop: Shop, other: Results) -> None:
    assert_close(shop.duckdb.stats, other.stats)
    assert_close(shop.duckdb.report, other.report)
