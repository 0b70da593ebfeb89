"""History loaded in bulk gets its segment changes when a server first starts.

The demo's history (and any ``tailorkit ingest``) stores behaviour without
``segment_entered``/``segment_exited`` events; experiment analysis reads
segments at exposure from those. The first server start stores the changes
of its start-up replay, exactly the ones the online engine computes for that
history (later starts find them and replay silently).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tailorkit.project import load_project
from tailorkit.segment.batch import rebuild_online
from tailorkit.segment.definitions import parse_definitions
from tailorkit.segment.online import Change, SegmentEngine
from tailorkit.store.warehouse import Warehouse
from tests.conftest import start_server
from tests.test_cli import cli

Key = tuple[str, str, str, str]


def _stored(root: Path) -> list[Key]:
    wh = Warehouse(load_project(root).settings.store_url)
    events = wh.events
    rows = (
        events.filter(events.type.isin(["segment_entered", "segment_exited"]))
        .select("type", "user_id", "anonymous_id", "timestamp", "properties")
        .to_pyarrow()
        .to_pylist()
    )
    wh.close()
    out = []
    for r in rows:
        segment = r["properties"].split('"segment":"')[1].split('"')[0]
        out.append((r["type"], r["user_id"] or r["anonymous_id"], segment, r["timestamp"]))
    return sorted(out)


def _replayed(root: Path, until: datetime) -> list[Key]:
    project = load_project(root)
    engine = SegmentEngine(parse_definitions(project.definitions["segments"]))
    changes: list[Change] = []
    wh = Warehouse(project.settings.store_url)
    rebuild_online(engine, wh, until, changes.extend)
    wh.close()
    out = []
    for c in changes:
        event: dict[str, Any] = c.to_event()
        stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        out.append((c.kind, c.person, c.segment, stamp))
    return sorted(out)


def test_first_start_stores_the_replayed_changes(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    args = ("--users", "200", "--days", "7", "--models", "none", "--dir", str(root))
    cli("demo", "--no-serve", *args, "--json")
    assert _stored(root) == []
    before = datetime.now(UTC)
    server = start_server(root, tmp_path / "server.log")
    server.stop()
    stored = _stored(root)
    assert len(stored) > 100
    assert {k[2] for k in stored} >= {"new_visitors", "window_shoppers"}
    # the same changes the online engine computes for this history (up to the server's start)
    replayed = [k for k in _replayed(root, before) if k[3] <= before]
    assert [k for k in stored if k[3] <= before] == replayed
