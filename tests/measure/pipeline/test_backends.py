"""DuckDB and PostgreSQL compute the same analysis from the same events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from tailorkit.measure.analysis import load_spec
from tailorkit.measure.analysis.pipeline import build_report
from tailorkit.measure.analysis.query import sufficient_stats
from tailorkit.project.init import write_project
from tailorkit.store.warehouse import Warehouse
from tests.measure.pipeline.conftest import store, write_definitions
from tests.measure.pipeline.reference import assert_close
from tests.measure.pipeline.simulate import AT, Design, simulate

KEY = "signup_flow"


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    return table.sort_by(
        [(k, "ascending") for k in ("variation", "multi", "flagged", "mask", "day")]
    ).to_pylist()


def test_duckdb_and_postgres_give_identical_numbers(tmp_path: Path, pg_database: str) -> None:
    project = write_definitions(write_project(tmp_path / "shop"))
    events = simulate(Design(KEY, 1500, signup=(0.10, 0.15), purchase_rate=(1.0, 1.2), seed=7))
    spec = load_spec(project, KEY)
    quality = project.settings.quality
    tables, reports = {}, {}
    for name, url in (("duckdb", project.settings.store_url), ("postgres", pg_database)):
        wh = Warehouse(url)
        try:
            store(wh, project, events)
            tables[name] = sufficient_stats(wh, spec, quality, AT)
        finally:
            if name == "postgres":
                for table in ("events", "identities", "ingest_stats"):
                    wh.con.drop_table(table, force=True)
            wh.close()
        reports[name] = build_report(spec, tables[name], AT, quality)
    duck, pg = _rows(tables["duckdb"]), _rows(tables["postgres"])
    assert len(duck) == len(pg) > 20
    assert_close(duck, pg)
    assert_close(reports["duckdb"], reports["postgres"])
    assert reports["duckdb"]["users"]["excluded_flagged"] > 0
    assert reports["postgres"]["metrics"][0]["variations"][0]["relative"] > 0
