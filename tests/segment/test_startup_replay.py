"""A starting server rebuilds profiles in the background without losing or doubling events.

The replay of stored events can take minutes on a large store, so the server
answers before it is done. Batches the writer commits meanwhile wait in a
buffer: those the replay's snapshot already holds are dropped, the others are
applied after the replay, in order.
"""

from __future__ import annotations

import gc
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from fastapi.testclient import TestClient

from tailorkit.collect.pipeline import Collector
from tailorkit.project import load_project
from tailorkit.project.init import write_project
from tailorkit.server import routes_profiles
from tailorkit.server.app import AppState, create_app
from tailorkit.server.auth import KeyChecker
from tailorkit.store.warehouse import Warehouse
from tests.helpers import event

SEGMENTS = {
    "profiles": {"startup_wait_seconds": 0},
    "features": {"views": {"count": {"events": ["page_view"]}}},
    "segments": {"browsers": {"condition": {"views": {"$gte": 3}}}},
}


def _views(people: list[str], start: datetime, tag: str) -> list[dict[str, Any]]:
    return [
        event(
            event_id=f"{tag}-{i}",
            user_id=person,
            timestamp=(start + timedelta(seconds=i)).isoformat(),
        )
        for i, person in enumerate(people)
    ]


@pytest.fixture
def project_root(tmp_path: Path) -> Path:
    root = write_project(tmp_path / "replay")
    (root / "segments.yaml").write_text(yaml.safe_dump(SEGMENTS))
    main = root / "tailorkit.yaml"  # a handful of users: robust z-scores would flag some
    main.write_text(
        main.read_text().replace("exclude_flagged_users: true", "exclude_flagged_users: false")
    )
    return root


@pytest.fixture
def service(project_root: Path) -> Iterator[routes_profiles.ProfilesService]:
    project = load_project(project_root)
    warehouse = Warehouse(project.settings.store_url)
    state = AppState(project, warehouse, Collector(warehouse, project.settings), KeyChecker((), ()))
    service = routes_profiles.ProfilesService(state)
    yield service
    service.stop()
    warehouse.close()


def test_batches_stored_during_the_replay_count_once(
    service: routes_profiles.ProfilesService, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = service.state.collector
    now = datetime.now(UTC) - timedelta(hours=1)
    history = _views(["ann", "bob"] * 50, now - timedelta(days=2), "history")
    collector.ingest_items(history, "test")
    before = _views(["ann", "cy"], now, "before")  # committed after the hook, before the snapshot
    during = _views(["bob", "cy", "cy"], now + timedelta(minutes=1), "during")  # after it
    snapshot = routes_profiles.stored_events

    def commit_around_snapshot(warehouse: Warehouse) -> pa.Table:
        assert collector.ingest_items(before, "test").count("accepted") == 2
        table = snapshot(warehouse)
        assert collector.ingest_items(during, "test").count("accepted") == 3
        return table

    monkeypatch.setattr(routes_profiles, "stored_events", commit_around_snapshot)
    service.start(wait=None)
    assert service.ready.is_set()
    after = _views(["dee"], now + timedelta(minutes=2), "after")
    collector.ingest_items(after, "test")

    expected = Counter(e["user_id"] for e in history + before + during + after)
    online = {p: (service.engine.features(p) or {}).get("views") for p in expected}
    assert online == dict(expected) == {"ann": 51, "bob": 51, "cy": 3, "dee": 1}
    assert service.engine.sizes()["browsers"] == 3


def test_server_answers_while_the_replay_runs(
    project_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = load_project(project_root)
    release = threading.Event()
    snapshot = routes_profiles.stored_events

    def slow_snapshot(warehouse: Warehouse) -> pa.Table:
        assert release.wait(30), "the test never released the replay"
        return snapshot(warehouse)

    monkeypatch.setattr(routes_profiles, "stored_events", slow_snapshot)
    app = create_app(project)
    key = project.settings.ingest_keys[0]
    with TestClient(app) as client:
        assert client.get("/healthz").json()["profiles"] == "replaying"
        events = _views(["eve"] * 4, datetime.now(UTC) - timedelta(minutes=5), "live")
        sent = client.post("/v1/events", json=events, headers={"Authorization": f"Bearer {key}"})
        assert sent.status_code == 200, sent.text  # acknowledged: stored during the replay
        release.set()
        assert app.state.profiles.ready.wait(30)
        assert client.get("/healthz").json()["profiles"] == "ready"
        assert app.state.profiles.engine.features("eve")["views"] == 4


def test_replayed_profiles_are_out_of_the_collectors_sight(
    service: routes_profiles.ProfilesService,
) -> None:
    # Full collections walk every object they see while holding the GIL (0.3–0.4 s at
    # the demo's size): profiles rebuilt after start-up must be frozen like its heap.
    start = datetime.now(UTC) - timedelta(hours=1)
    service.state.collector.ingest_items(_views(["ann"] * 3, start, "history"), "test")
    service.start(wait=None)
    assert service.ready.is_set()
    profile = service.store.update(["ann"], lambda loaded: loaded["ann"])
    assert profile is not None and gc.is_tracked(profile)
    assert not any(seen is profile for seen in gc.get_objects())
