"""One definition, two executors: online replay and batch SQL agree on the demo shop.

The demo shop (2,000 visitors, 14 days) goes through the real collector with
the online engine hooked in (membership changes written back as events),
in two parts. After each part the online state is compared with the batch
executor as of the same instant: every feature (floats within 1e-9) and every
membership of every profiled person. The batch executor is then run on
PostgreSQL over the same stored events and must give the same table.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow.compute as pc
import pytest

from tailorkit.collect.pipeline import Collector
from tailorkit.collect.quality import clean_events
from tailorkit.collect.raw import raw_from_arrow
from tailorkit.demo import generate_shop
from tailorkit.project import Project, load_project
from tailorkit.project.init import write_project
from tailorkit.segment.batch import (
    history_instants,
    overlap,
    refresh_online,
    report,
    size_history,
    sizes,
)
from tailorkit.segment.definitions import Definitions
from tailorkit.segment.online import SegmentEngine
from tailorkit.segment.sink import ChangeSink
from tailorkit.store.warehouse import Warehouse
from tests.segment.common import batch_rows, differences, online_rows, shop_definitions


@dataclass
class Replay:
    project: Project
    warehouse: Warehouse
    definitions: Definitions
    engine: SegmentEngine
    checks: dict[str, tuple[datetime, dict, dict]]


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    root = write_project(tmp_path_factory.mktemp("agree") / "shop")
    project = load_project(root)
    warehouse = Warehouse(project.settings.store_url)
    definitions = shop_definitions()
    collector = Collector(warehouse, project.settings)
    engine = SegmentEngine(
        definitions, on_changes=ChangeSink(definitions, collector, asynchronous=False)
    )
    collector.on_stored = engine.on_stored
    shop = generate_shop(2000, 14, 0)
    t1 = shop.end - timedelta(days=4, minutes=17, seconds=3)
    t2 = shop.end + timedelta(hours=3, minutes=7)
    events = shop.events
    parts = [
        (t1, events.filter(pc.less_equal(events["timestamp"], t1))),
        (t2, events.filter(pc.greater(events["timestamp"], t1))),
    ]
    checks = {}
    for name, (at, part) in zip(("t1", "t2"), parts, strict=True):
        for start in range(0, part.num_rows, 5000):
            collector.ingest(raw_from_arrow(part.slice(start, 5000)), "demo")
        engine.advance_to(at)
        refresh_online(engine, warehouse, project.settings.quality, at)
        batch = batch_rows(definitions, clean_events(warehouse, project.settings.quality), at)
        checks[name] = (at, batch, online_rows(engine))
    yield Replay(project, warehouse, definitions, engine, checks)
    warehouse.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("instant", ["t1", "t2"])
def test_online_replay_equals_batch_for_every_person_feature_and_segment(
    replay: Replay, instant: str
) -> None:
    _, batch, online = replay.checks[instant]
    assert len(batch) > 1500
    assert differences(replay.definitions, batch, online) == {}
    # the comparison is not vacuous: every segment has members at the end
    if instant == "t2":
        empty = [
            s.key for s in replay.definitions.segments if not any(r[s.key] for r in batch.values())
        ]
        assert empty in ([], ["hot_browsers"])  # nobody browses at 3 a.m. after the data ends


def test_membership_changes_were_written_back_as_events(replay: Replay) -> None:
    events = replay.warehouse.events
    changes = events.filter(events.type.isin(["segment_entered", "segment_exited"]))
    counted = changes.group_by("type").aggregate(n=changes.count()).to_pyarrow().to_pylist()
    by_kind = {row["type"]: row["n"] for row in counted}
    assert by_kind["segment_entered"] > 1000 and by_kind["segment_exited"] > 500
    sizes = replay.engine.sizes()
    _, batch, _ = replay.checks["t2"]
    expected = {s.key: sum(r[s.key] for r in batch.values()) for s in replay.definitions.segments}
    assert sizes == expected


def test_report_equals_sizes_overlap_and_history_computed_alone(replay: Replay) -> None:
    # report() reads one materialized copy of the events; its parts read the events each
    at, _, _ = replay.checks["t1"]
    events = clean_events(replay.warehouse, replay.project.settings.quality)
    got = report(replay.definitions, events, at, days=3)
    counts = sizes(replay.definitions, events, at)
    assert got["profiles"] == counts.pop("profiles") > 1500
    assert {s["key"]: s["size"] for s in got["segments"]} == counts
    assert got["overlap"] == overlap(replay.definitions, events, at)
    history = size_history(replay.definitions, events, history_instants(at, 3))
    assert got["size_over_time"] == history and len(history) == 4
    assert history[0] != history[-1]  # the instants differ: a wrong instant would show
    assert report(replay.definitions, events, at, days=0)["size_over_time"] == []


@pytest.mark.postgres
def test_batch_on_postgres_equals_duckdb(replay: Replay, pg_database: str) -> None:
    at, duck, _ = replay.checks["t2"]
    quality = replay.project.settings.quality
    pg = Warehouse(pg_database)
    try:
        pg.insert(replay.warehouse.events.to_pyarrow(), replay.warehouse.identities.to_pyarrow())
        rows = batch_rows(replay.definitions, clean_events(pg, quality), at)
        pg_report = report(replay.definitions, clean_events(pg, quality), at, days=2)
    finally:
        for table in ("events", "identities", "ingest_stats"):
            pg.con.drop_table(table, force=True)
        pg.close()
    assert differences(replay.definitions, duck, rows) == {}
    events = clean_events(replay.warehouse, quality)
    assert pg_report == report(replay.definitions, events, at, days=2)
