"""Faults on loopback with real processes: a worker SIGKILLed mid-batch, Redis stopped.

Every acknowledged event must end up stored exactly once, the server must
never answer 5xx, and decisions must keep coming while Redis is away.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from tailorkit.store.warehouse import Warehouse
from tests.conftest import LiveServer, start_server
from tests.helpers import event
from tests.scale.conftest import (
    SHARED_REDIS,
    OwnRedis,
    bus_project,
    post,
    start_worker,
    stream_empty,
    wait_until,
)

SEGMENTS = {
    "features": {"views_24h": {"count": {"events": ["page_view"], "window": "24h"}}},
    "segments": {"browsers": {"condition": {"views_24h": {"$gte": 1}}}},
}


@dataclass
class Traffic:
    """Threads posting batches of events until stopped, recording what was acknowledged."""

    server: LiveServer
    sent: list[str] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    decide_statuses: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, posters: int = 2, decide: bool = False) -> None:
        targets = [self._post] * posters + ([self._decide] if decide else [])
        self.threads = [threading.Thread(target=t) for t in targets]
        for thread in self.threads:
            thread.start()

    def _post(self) -> None:
        key = self.server.project.settings.ingest_keys[0]
        with httpx.Client(base_url=self.server.url, timeout=10) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                batch = [event(user_id=f"u{n % 40}") for _ in range(20)]
                self.sent.extend(e["event_id"] for e in batch)
                r = post(client, batch, key)
                self.statuses.append(r.status_code)
                if r.status_code == 200:
                    pairs = zip(batch, r.json()["statuses"], strict=True)
                    self.acked.extend(e["event_id"] for e, s in pairs if s == "accepted")

    def _decide(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=10) as client:
            while not self.stop.is_set():
                r = client.post(
                    "/v1/decide", json={"user_id": "u1"}, headers=self.server.ingest_headers
                )
                self.decide_statuses.append(r.status_code)
                time.sleep(0.02)

    def wait_acked(self, n: int, timeout: float = 30) -> None:
        wait_until(lambda: len(self.acked) >= n, timeout, f"{n} acknowledged events")

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def _stored(pg_url: str) -> list[str]:
    wh = Warehouse(pg_url)
    try:
        return [str(v) for v in wh.events.event_id.to_pyarrow().to_pylist()]
    finally:
        wh.close()


def _assert_exactly_once(pg_url: str, traffic: Traffic) -> None:
    stored = _stored(pg_url)
    assert len(stored) == len(set(stored)), "an event was stored twice"
    missing = set(traffic.acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost"
    assert set(stored) <= set(traffic.sent)


def test_worker_sigkilled_mid_batch(
    tmp_path: Path, pg_url: str, prefix: str, reaper: list[Any]
) -> None:
    project = bus_project(tmp_path / "shop", pg_url, SHARED_REDIS, prefix, claim_idle_seconds=1)
    stream = f"{prefix}events"
    client = redis.Redis.from_url(SHARED_REDIS)
    first = start_worker(project, tmp_path / "w1.log", "w1")
    reaper.append(first)
    server = start_server(project, tmp_path / "server.log")
    reaper.append(server)
    traffic = Traffic(server)
    try:
        traffic.start()
        traffic.wait_acked(400)

        def holding_entries() -> bool:  # kill while w1 has entries it has not acknowledged
            consumers = client.xinfo_consumers(stream, "workers")
            return any(c["name"] == b"w1" and c["pending"] > 0 for c in consumers)

        wait_until(holding_entries, 20, "w1 to hold unacknowledged entries")
        first.kill()  # SIGKILL mid-batch
        first.wait(10)
        acked_at_kill = len(traffic.acked)
        traffic.wait_acked(acked_at_kill + 300)  # the server keeps acknowledging
        second = start_worker(project, tmp_path / "w2.log", "w2")
        reaper.append(second)
        traffic.wait_acked(len(traffic.acked) + 300)
        traffic.finish()
        wait_until(lambda: stream_empty(client, stream), 30, "the stream to be drained")
        second.terminate()  # SIGTERM: a clean stop with a summary
        assert second.wait(30) == 0
    finally:
        traffic.finish()
        server.stop()
        client.close()
    assert set(traffic.statuses) == {200}
    summary = json.loads((tmp_path / "w2.log").read_text().strip().splitlines()[-1])
    assert summary["claimed"] >= 1, "w2 took over the entries w1 held"
    _assert_exactly_once(pg_url, traffic)


def test_redis_stopped_and_restarted(tmp_path: Path, pg_url: str, reaper: list[Any]) -> None:
    own = OwnRedis(tmp_path / "redis")
    own.start()
    reaper.append(own)
    prefix = "tk-fault:"
    project = bus_project(tmp_path / "shop", pg_url, own.url, prefix, segments=SEGMENTS)
    worker = start_worker(project, tmp_path / "w.log", "w")
    reaper.append(worker)
    server = start_server(project, tmp_path / "server.log")
    reaper.append(server)
    traffic = Traffic(server)
    health: list[dict] = []
    try:
        traffic.start(decide=True)
        traffic.wait_acked(300)
        own.kill()
        during = len(traffic.acked)
        traffic.wait_acked(during + 300)  # acknowledged from the spool
        with server.client() as client:
            health.append(client.get("/healthz").json()["bus"])
        decisions_during = len(traffic.decide_statuses)
        own.start()
        traffic.wait_acked(len(traffic.acked) + 300)
        traffic.finish()
        check = redis.Redis.from_url(own.url)
        with server.client() as client:

            def drained() -> bool:
                bus = client.get("/healthz").json()["bus"]
                return not bus["spooled"] and stream_empty(check, f"{prefix}events")

            wait_until(drained, 30, "spool and stream drained")
            health.append(client.get("/healthz").json()["bus"])
        worker.terminate()
        assert worker.wait(30) == 0
    finally:
        traffic.finish()
        server.stop()
    assert set(traffic.statuses) == {200}, "no 5xx (nor anything else) while Redis was away"
    assert set(traffic.decide_statuses) == {200}
    assert len(traffic.decide_statuses) > decisions_during, "decisions went on"
    assert health[0]["redis"] is False and health[0]["spooled"] is True
    assert health[1] == {"stream": f"{prefix}events", "redis": True, "spooled": False}
    assert not list((project / ".tailorkit" / "spool").glob("drain-*.log"))
    _assert_exactly_once(pg_url, traffic)
