"""The server's runtime metrics: garbage-collection pauses and event-loop lag.

Both explain latency spikes that no handler causes (a collection stops every
thread; a late loop delays every request), so they are exported next to the
request latencies.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from tailorkit.project import load_project
from tailorkit.server.app import create_app
from tests.decide.conftest import write_decide_project


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_count", labels) or 0.0


def test_gc_pauses_and_loop_lag_are_exported(tmp_path: Path) -> None:
    project = load_project(write_decide_project(tmp_path / "shop"))
    headers = {"Authorization": f"Bearer {project.settings.ingest_keys[0]}"}
    with TestClient(create_app(project)) as client:
        young, old = (
            _count("tailorkit_gc_pause_seconds", generation="0"),
            _count("tailorkit_gc_pause_seconds", generation="2"),
        )
        gc.collect(0)
        gc.collect(2)
        assert _count("tailorkit_gc_pause_seconds", generation="0") == young + 1
        assert _count("tailorkit_gc_pause_seconds", generation="2") == old + 1
        lag = _count("tailorkit_event_loop_lag_seconds")
        assert client.post("/v1/decide", json={"user_id": "ada"}, headers=headers).is_success
        time.sleep(0.2)  # the loop samples its lag every 10 ms once a request came
        assert _count("tailorkit_event_loop_lag_seconds") >= lag + 5
        text = client.get("/metrics").text
    assert 'tailorkit_gc_pause_seconds_bucket{generation="2",le="0.001"}' in text
    assert "tailorkit_event_loop_lag_seconds_bucket" in text
