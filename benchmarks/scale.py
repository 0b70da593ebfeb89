"""Scale-out: ingestion through the Redis Streams bus with 1 and 2 workers vs in process,
and decision throughput with 1 and 2 server replicas.

Ingestion: wrk (``benchmarks/wrk/events.lua``, a second process) posts batches
of 100 fresh events to one ``tailorkit serve`` for ``--seconds``. The
baseline is the embedded in-process path (the server's own writer stores
each group commit), on the same PostgreSQL warehouse, so that the only
difference is the bus. On the bus path the server acknowledges once Redis
has the batch and ``tailorkit worker`` processes store it; the clock stops
when the stream is drained, so "stored/s" is end-to-end (acknowledged and
in the warehouse). Every run checks that the store holds each acknowledged
event exactly once.

Decisions: wrk (``benchmarks/wrk/decide.lua``, unpaced, as fast as the
connections go) against one replica with C connections, then against two
replicas sharing Redis (profiles) and PostgreSQL, one wrk per replica with
C/2 connections each; requests/s are summed.

The machine has 2 cores shared by everything here (servers, workers, Redis,
PostgreSQL and the load generators), so a second worker or replica competes
for the same cores: these figures show overheads, not the scaling a second
machine would bring. The load average is printed with the figures.

    python benchmarks/scale.py --seconds 10

The last line is the JSON summary (bench, metric, value, baseline, ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis
import yaml

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import throwaway_database
from tests.scale.conftest import CLI, SHARED_REDIS, bus_project, start_worker, stream_empty

from decide_http import wait_ready, write_bench_project
from ingest import _free_port, _wrk
from tailorkit.store.warehouse import Warehouse


def _serve(project: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--project", str(project), "--port", str(port)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/healthz", 300)  # two replicas start side by side on 2 cores
    return process, url


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(60)


def _without_rate_limits(project: Path) -> None:
    """The load generators are single clients far above the default per-key rates."""
    settings = yaml.safe_load((project / "tailorkit.yaml").read_text())
    settings["rate_limits"] = {"ingest": {"per_second": 0}, "admin": {"per_second": 0}}
    (project / "tailorkit.yaml").write_text(yaml.safe_dump(settings))


def _key(project: Path) -> str:
    key: str = yaml.safe_load((project / "tailorkit.yaml").read_text())["keys"]["ingest"][0]
    return key


def ingest(workers: int, seconds: float, conns: int, workdir: Path) -> dict[str, Any]:
    """Events/s acknowledged and stored, in process (``workers == 0``) or through the bus."""
    prefix = f"tk-bench-{uuid.uuid4().hex[:8]}:"
    name = f"ingest-{workers}"
    client = redis.Redis.from_url(SHARED_REDIS)
    with throwaway_database("tk_scale") as pg_url:
        project = bus_project(workdir / name, pg_url, SHARED_REDIS, prefix)
        if workers == 0:
            settings = yaml.safe_load((project / "tailorkit.yaml").read_text())
            del settings["bus"]
            (project / "tailorkit.yaml").write_text(yaml.safe_dump(settings))
        _without_rate_limits(project)
        started = [
            start_worker(project, workdir / f"{name}-w{i}.log", f"w{i}") for i in range(workers)
        ]
        try:
            server, url = _serve(project, workdir / f"{name}.log")
            started.append(server)
            begin = time.perf_counter()
            load = _wrk(url, "events.lua", seconds, conns, _key(project))
            while workers and not stream_empty(client, f"{prefix}events"):
                time.sleep(0.05)
            elapsed = time.perf_counter() - begin
        finally:
            _stop(started)
        wh = Warehouse(pg_url)
        ids = wh.events.event_id.to_pyarrow()
        stored, distinct = len(ids), len(set(ids.to_pylist()))
        wh.close()
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    return {
        "path": "bus" if workers else "in_process",
        "workers": workers,
        "acknowledged_per_s": round(load["accepted"] / load["seconds"]),
        "stored_per_s": round(stored / elapsed),
        "drain_seconds": round(max(0.0, elapsed - load["seconds"]), 2),
        "p99_ms": load["p99_ms"],
        "errors": load["errors_status"] + load["errors_socket"],
        "acknowledged": load["accepted"],
        "stored": stored,
        "stored_twice": stored - distinct,
        # wrk does not count requests in flight when it stops; they are stored anyway.
        "lost": max(0, load["accepted"] - stored),
    }


def decide(replicas: int, seconds: float, conns: int, workdir: Path) -> dict[str, Any]:
    """Decisions/s (closed loop) of 1 or 2 replicas sharing Redis and PostgreSQL."""
    prefix = f"tk-bench-{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(SHARED_REDIS)
    with throwaway_database("tk_scale") as pg_url:
        bench, _ = write_bench_project(workdir / f"decide-{replicas}")
        segments = yaml.safe_load((bench / "segments.yaml").read_text())
        project = bus_project(workdir / f"decide-{replicas}-bus", pg_url, SHARED_REDIS, prefix)
        for name in ("features.yaml", "placements.yaml"):
            (project / name).write_text((bench / name).read_text())
        segments["profiles"] = {"store": SHARED_REDIS, "key_prefix": prefix}
        _without_rate_limits(project)
        (project / "segments.yaml").write_text(yaml.safe_dump(segments))
        with ThreadPoolExecutor(replicas) as pool:
            starting = [
                pool.submit(_serve, project, workdir / f"decide-{replicas}-{i}.log")
                for i in range(replicas)
            ]
        servers = [f.result() for f in starting if f.exception() is None]
        failed = [f.exception() for f in starting if f.exception() is not None]
        try:
            if failed:
                raise RuntimeError("a replica did not start") from failed[0]
            key = _key(project)
            each = max(1, conns // replicas)
            with ThreadPoolExecutor(replicas) as pool:
                runs = list(
                    pool.map(
                        lambda url: _wrk(f"{url}/v1/decide", "decide.lua", seconds, each, key),
                        [url for _, url in servers],
                    )
                )
        finally:
            _stop([process for process, _ in servers])
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    return {
        "replicas": replicas,
        "connections": each * replicas,
        "decisions_per_s": round(
            sum((r["requests"] - r["errors_status"]) / r["seconds"] for r in runs)
        ),
        "p99_ms": max(r["p99_ms"] for r in runs),
        "errors": sum(r["errors_status"] + r["errors_socket"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="load seconds per run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for workers in (0, 1, 2):
            rows.append(
                {
                    "bench": "scale_ingest",
                    **ingest(workers, args.seconds, args.connections, workdir),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        for replicas in (1, 2):
            rows.append(
                {
                    "bench": "scale_decide",
                    **decide(replicas, args.seconds, 2 * args.connections, workdir),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    inproc, one, two, d1, d2 = rows
    print(
        json.dumps(
            {
                "bench": "scale",
                "metric": "bus_2_workers_stored_events_per_s",
                "value": two["stored_per_s"],
                "baseline": inproc["stored_per_s"],
                "ratio": round(two["stored_per_s"] / inproc["stored_per_s"], 3),
                "bus_1_worker_stored_events_per_s": one["stored_per_s"],
                "bus_1_worker_ratio": round(one["stored_per_s"] / inproc["stored_per_s"], 3),
                "decide_1_replica_per_s": d1["decisions_per_s"],
                "decide_2_replicas_per_s": d2["decisions_per_s"],
                "decide_2_over_1": round(d2["decisions_per_s"] / d1["decisions_per_s"], 3),
                "lost": sum(r.get("lost", 0) for r in rows),
                "stored_twice": sum(r.get("stored_twice", 0) for r in rows),
                "load_average": [round(x, 2) for x in os.getloadavg()],
            }
        )
    )


if __name__ == "__main__":
    main()
