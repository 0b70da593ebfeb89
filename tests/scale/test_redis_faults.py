"""Redis faults with real processes on loopback: a hung Redis, a worker dying mid-batch.

* A Redis that hangs (SIGSTOP: connections are accepted by the kernel, nothing
  answers) while ``tailorkit serve`` takes decisions and events: decisions keep
  coming fast (no profile) with no 5xx, one warning is logged (the recovery
  line is at INFO, which ``serve`` does not show), and after SIGCONT
  decisions use profiles again.
* A worker killed right after its store commit, before the profile update
  (``TAILORKIT_TEST_KILL_AFTER_STORE``): the worker that takes over applies the
  batch to profiles, once, so profiles equal a replay of every acknowledged event.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
import yaml

from tailorkit.collect.bus import KILL_AFTER_STORE_ENV
from tailorkit.project.init import write_project
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
    "segments": {"browsers": {"condition": {"views_24h": {"$gte": 1}}, "force": True}},
}
DEADLINE_MS = 200
PLACEMENTS = {
    "settings": {"deadline_ms": DEADLINE_MS},
    "placements": {
        "hero": {
            "default": "generic",
            "variants": {"generic": {"content": "hi"}, "back": {"content": "welcome back"}},
            "rules": [
                {"id": "b", "priority": 1, "condition": {"segments": "browsers"}, "variant": "back"}
            ],
        }
    },
}
USERS = [f"u{i}" for i in range(20)]


def _now_event(user: str) -> dict[str, Any]:
    return event(user_id=user, timestamp=datetime.now(UTC).isoformat().replace("+00:00", "Z"))


@dataclass
class Decisions:
    """Threads deciding (and one posting events) until stopped; latency per decision."""

    server: LiveServer
    stop: threading.Event = field(default_factory=threading.Event)
    rows: list[tuple[float, float, int, bool]] = field(default_factory=list)  # at, s, status, seg
    ingest: list[int] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._decide, args=(i,)) for i in range(2)]
        self.threads.append(threading.Thread(target=self._post))
        for thread in self.threads:
            thread.start()

    def _decide(self, offset: int) -> None:
        with httpx.Client(base_url=self.server.url, timeout=10) as client:
            n = offset
            while not self.stop.is_set():
                n += 2
                body = {"user_id": USERS[n % len(USERS)], "placements": ["hero"]}
                started = time.perf_counter()
                r = client.post("/v1/decide", json=body, headers=self.server.ingest_headers)
                took = time.perf_counter() - started
                segmented = r.status_code == 200 and bool(r.json()["segments"])
                self.rows.append((time.monotonic(), took, r.status_code, segmented))
                time.sleep(0.01)

    def _post(self) -> None:
        key = self.server.project.settings.ingest_keys[0]
        with httpx.Client(base_url=self.server.url, timeout=10) as client:
            while not self.stop.is_set():
                batch = [_now_event(u) for u in USERS[:5]]
                self.ingest.append(post(client, batch, key).status_code)
                time.sleep(0.05)

    def between(self, start: float, end: float) -> list[tuple[float, float, int, bool]]:
        return [row for row in self.rows if start <= row[0] < end]

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def _hung_redis_project(root: Path, redis_url: str) -> Path:
    project = write_project(root)
    settings = yaml.safe_load((project / "tailorkit.yaml").read_text())
    settings["redis"] = {"url": redis_url, "prefix": "tk-hang:", "retry_after_seconds": 0.5}
    settings["rate_limits"] = {"ingest": {"per_second": 0}}  # Redis-backed otherwise: fine too
    (project / "tailorkit.yaml").write_text(yaml.safe_dump(settings))
    segments = {**SEGMENTS, "profiles": {"store": redis_url, "key_prefix": "tk-hang:"}}
    (project / "segments.yaml").write_text(yaml.safe_dump(segments))
    (project / "placements.yaml").write_text(yaml.safe_dump(PLACEMENTS))
    return project


def test_hung_redis_does_not_stall_decisions(tmp_path: Path, reaper: list[Any]) -> None:
    own = OwnRedis(tmp_path / "redis")
    own.start()
    reaper.append(own)
    assert own.process is not None
    project = _hung_redis_project(tmp_path / "shop", own.url)
    server = start_server(project, tmp_path / "server.log")
    reaper.append(server)
    traffic = Decisions(server)
    traffic.start()
    try:
        wait_until(lambda: any(r[3] for r in traffic.rows[-5:]), 20, "decisions with segments")
        stopped = time.monotonic()
        os.kill(own.process.pid, signal.SIGSTOP)  # hung, not gone: connects still succeed
        time.sleep(4.0)
        resumed = time.monotonic()
        os.kill(own.process.pid, signal.SIGCONT)
        wait_until(
            lambda: any(r[3] for r in traffic.between(resumed + 0.1, time.monotonic())),
            15,
            "decisions with segments again after the recovery",
        )
        with server.client() as client:
            metrics = client.get("/metrics").text
    finally:
        traffic.finish()
        server.stop()
        if own.process.poll() is None:
            os.kill(own.process.pid, signal.SIGCONT)
    during = traffic.between(stopped, resumed)
    assert len(during) > 50, "decisions went on while Redis hung"
    assert {r[2] for r in traffic.rows} == {200} and set(traffic.ingest) == {200}
    latencies = np.array([r[1] for r in during])
    p99 = float(np.quantile(latencies, 0.99))
    assert p99 < DEADLINE_MS / 1000 + 0.3, f"p99 {p99:.3f} s while Redis hung"
    assert latencies.max() < 2.0, f"max {latencies.max():.3f} s (p99 {p99:.3f} s)"
    assert not any(r[3] for r in traffic.between(stopped + 0.5, resumed)), "no profile: default"
    failures = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("tailorkit_redis_failures_total{")
    ]
    assert sum(failures) >= 1
    log = server.log_path.read_text()
    assert "Traceback" not in log
    target = f"127.0.0.1:{own.port}"
    assert log.count(f"redis {target} unreachable") == 1, "one warning per outage"


def test_worker_killed_between_store_and_profiles(
    tmp_path: Path, pg_url: str, prefix: str, reaper: list[Any]
) -> None:
    project = bus_project(
        tmp_path / "shop", pg_url, SHARED_REDIS, prefix, segments=SEGMENTS, claim_idle_seconds=0.5
    )
    server = start_server(project, tmp_path / "server.log")  # first: it creates the tables
    reaper.append(server)
    # the second commit: after the first the shared store is not empty, so w2 does not
    # rebuild it from the warehouse (a rebuild would also replay w1's pending batch)
    env = {**os.environ, KILL_AFTER_STORE_ENV: "2"}
    doomed = start_worker(project, tmp_path / "w1.log", "w1", env=env)
    reaper.append(doomed)
    acked: list[str] = []
    client = redis.Redis.from_url(SHARED_REDIS)
    key = server.project.settings.ingest_keys[0]
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:

            def send(rounds: int) -> None:
                for n in range(rounds):
                    batch = [_now_event(USERS[(n + i) % 10]) for i in range(7)]
                    r = post(http, batch, key)
                    assert r.status_code == 200
                    for e, status in zip(batch, r.json()["statuses"], strict=True):
                        if status == "accepted":
                            acked.append(e["user_id"])

            send(3)
            wait_until(lambda: stream_empty(client, f"{prefix}events"), 30, "w1's first batch")
            send(3)
            wait_until(lambda: doomed.poll() is not None, 30, "w1 to die")
            send(3)
            assert doomed.wait(30) == -signal.SIGKILL, "w1 died after its second store commit"
            send(5)
            taker = start_worker(project, tmp_path / "w2.log", "w2")
            reaper.append(taker)
            send(3)
            wait_until(lambda: stream_empty(client, f"{prefix}events"), 30, "stream drained")
            taker.terminate()
            assert taker.wait(30) == 0
            summary = json.loads((tmp_path / "w2.log").read_text().strip().splitlines()[-1])
            assert summary["claimed"] >= 1 and summary["duplicates"] >= 1, "w1's batch redone"
            admin = server.admin_headers
            views = {}
            for user in sorted(set(acked)):
                profile = http.get(f"/v1/admin/profiles/{user}", headers=admin).json()
                views[user] = profile["features"]["views_24h"]
            sizes = http.get("/v1/admin/segments?batch=false", headers=admin).json()
    finally:
        server.stop()
        client.close()
    assert views == dict(Counter(acked)), "profiles = a replay of every acknowledged event"
    assert sizes["online_sizes"] == {"browsers": len(set(acked))}
