"""Stored bot/outlier flags give the same analysis as a fresh scan, and go stale on writes.

Analysis reads ``flagged_users`` (refreshed by ``tailorkit quality`` /
``tailorkit build`` or by the analysis itself when stale) instead of scanning
every event; the numbers must equal those from the scan
(:func:`tailorkit.collect.quality.flagged_users`) on DuckDB and PostgreSQL,
before and after new events, identity merges and erasures.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tailorkit.cli.build import refresh_quality_flags
from tailorkit.collect.quality import (
    current_flags,
    flagged_users,
    quality_report,
    refresh_flags,
    stored_flags,
)
from tailorkit.measure.analysis import load_spec
from tailorkit.measure.analysis.pipeline import build_report
from tailorkit.measure.analysis.query import sufficient_stats
from tailorkit.project import Project
from tailorkit.project.init import write_project
from tailorkit.store.warehouse import FLAGGED_USERS, FLAGS_STATE, Warehouse
from tests.measure.pipeline.conftest import store, write_definitions
from tests.measure.pipeline.reference import assert_close
from tests.measure.pipeline.simulate import AT, BOT_UA, START, Design, simulate

KEY = "signup_flow"
TABLES = ("events", "identities", "ingest_stats")
BURSTER = f"{KEY}-u3"  # an exposed user who later sends a burst of events from a crawler


@pytest.fixture(params=["duckdb", "postgres"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Project, Warehouse]]:
    project = write_definitions(write_project(tmp_path / "shop"))
    url = project.settings.store_url
    if request.param == "postgres":
        url = request.getfixturevalue("pg_database")
    wh = Warehouse(url)
    try:
        store(wh, project, simulate(Design(KEY, 1200, signup=(0.10, 0.15), seed=11)))
        yield project, wh
    finally:
        if request.param == "postgres":  # the database is shared by the session
            for table in (*TABLES, FLAGGED_USERS, FLAGS_STATE):
                wh.con.drop_table(table, force=True)
        wh.close()


def flag_rows(table: Any) -> list[tuple[str, str]]:
    rows = table.select("person_id", "reason").to_pyarrow().to_pylist()
    return sorted((r["person_id"], r["reason"]) for r in rows)


def analyse_both_ways(project: Project, wh: Warehouse) -> dict[str, Any]:
    """The report from the stored flags, checked against the one from a fresh scan.

    Group keys and counts must be equal; sums agree to 1e-9 (a parallel sum
    runs in another order on every run).
    """
    spec, quality = load_spec(project, KEY), project.settings.quality
    keys = [(k, "ascending") for k in ("variation", "multi", "flagged", "mask", "day")]
    stored = sufficient_stats(wh, spec, quality, AT).sort_by(keys)
    scanned = sufficient_stats(wh, spec, quality, AT, flags=flagged_users).sort_by(keys)
    assert stored.num_rows > 20
    assert_close(stored.to_pylist(), scanned.to_pylist())
    report = build_report(spec, stored, AT, quality)
    assert_close(report, build_report(spec, scanned, AT, quality))
    return report


def burst(user: str, n: int) -> list[dict[str, Any]]:
    """``n`` page views of ``user`` in one day, from a crawler's user agent."""
    day = START + timedelta(days=3)
    return [
        {
            "event_id": f"burst-{user}-{i}",
            "type": "page_view",
            "user_id": user,
            "timestamp": (day + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "properties": {},
            "context": {"user_agent": BOT_UA},
        }
        for i in range(n)
    ]


def test_stored_flags_give_the_scan_s_analysis(setup: tuple[Project, Warehouse]) -> None:
    project, wh = setup
    quality = project.settings.quality
    assert stored_flags(wh, quality) is None  # never computed
    first = analyse_both_ways(project, wh)["users"]  # the analysis stores the flags
    assert stored_flags(wh, quality) is not None
    assert flag_rows(current_flags(wh, quality)) == flag_rows(flagged_users(wh, quality))
    assert first["excluded_flagged"] > 0

    # new events from an exposed user: the stored flags are stale and get recomputed
    store(wh, project, burst(BURSTER, 400))
    assert stored_flags(wh, quality) is None
    again = analyse_both_ways(project, wh)["users"]
    assert again["excluded_flagged"] == first["excluded_flagged"] + 1
    reasons = {r for p, r in flag_rows(current_flags(wh, quality)) if p == BURSTER}
    assert reasons == {"bot_user_agent", "extreme_event_rate"}

    # an identity merge moves an anonymous crawler's events onto an exposed user
    anon = [{**e, "user_id": None, "anonymous_id": "crawler-1"} for e in burst("x", 2)]
    store(wh, project, anon)
    stored_flags_before = flag_rows(current_flags(wh, quality))
    identify = {"event_id": "merge-1", "type": "identify", "anonymous_id": "crawler-1",
                "user_id": f"{KEY}-u5", "timestamp": "2026-09-05T00:00:00Z"}  # fmt: skip
    store(wh, project, [identify])
    assert stored_flags(wh, quality) is None
    analyse_both_ways(project, wh)
    assert (f"{KEY}-u5", "bot_user_agent") in flag_rows(current_flags(wh, quality))
    assert (f"{KEY}-u5", "bot_user_agent") not in stored_flags_before


def test_refresh_keeps_flagged_at_and_erase_removes_the_person(
    setup: tuple[Project, Warehouse],
) -> None:
    project, wh = setup
    quality = project.settings.quality
    refresh_flags(wh, quality)
    store(wh, project, burst(BURSTER, 400))
    report = quality_report(wh, quality)  # what `tailorkit quality` shows refreshes the table
    assert report["flagged_by_reason"]["extreme_event_rate"] >= 1
    assert stored_flags(wh, quality) is not None
    rows = current_flags(wh, quality).to_pyarrow().to_pylist()
    first_seen = {(r["person_id"], r["reason"]): r["flagged_at"] for r in rows}
    assert len(set(first_seen.values())) == 2  # earlier flags kept their time; the burst is new
    refresh_flags(wh, quality)
    rows = current_flags(wh, quality).to_pyarrow().to_pylist()
    assert {(r["person_id"], r["reason"]): r["flagged_at"] for r in rows} == first_seen

    wh.erase_user(BURSTER)
    table = wh.con.table(FLAGGED_USERS)
    assert table.filter(table.person_id == BURSTER).count().execute() == 0  # not kept
    assert stored_flags(wh, quality) is None  # fewer events: stale
    assert BURSTER not in {p for p, _ in flag_rows(current_flags(wh, quality))}


@pytest.mark.parametrize("setup", ["duckdb"], indirect=True)  # the project's own store
def test_build_refreshes_the_flags(setup: tuple[Project, Warehouse]) -> None:
    project, wh = setup
    quality = project.settings.quality
    assert stored_flags(wh, quality) is None
    done = refresh_quality_flags(project)  # what `tailorkit build` runs after the models
    assert stored_flags(wh, quality) is not None
    assert done == {"flagged_users": len({p for p, _ in flag_rows(flagged_users(wh, quality))})}
