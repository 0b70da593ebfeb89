"""Ingestion throughput: bulk path vs raw DuckDB insert, and HTTP vs a constant endpoint.

Bulk: N generated events through tailorkit's full path (validate, dedup,
pseudonymize, store in DuckDB) vs a plain ``INSERT ... SELECT`` of the same
Arrow rows into a DuckDB table, in the same process and run.

HTTP: a load client in a second process posts batches of 100 events to
``tailorkit serve`` over loopback with C concurrent connections; the baseline is
the same client against a constant-answer FastAPI endpoint on uvicorn. After
the run the events in the store are counted and must equal those acknowledged.

    python benchmarks/ingest.py --events 5000000 --http-seconds 20

The last line is the JSON summary (bench, metric, value, baseline, ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import httpx

from tailorkit.collect.pipeline import ACCEPTED, Collector
from tailorkit.collect.raw import raw_from_arrow
from tailorkit.demo import generate_events_table, iter_event_dicts
from tailorkit.project import load_project
from tailorkit.project.init import write_project
from tailorkit.store.warehouse import Warehouse

CHUNK = 500_000


def bulk(n_events: int, workdir: Path) -> dict[str, Any]:
    """Events/s of the full bulk path and of a raw DuckDB insert of the same rows."""
    events = generate_events_table(n_events, seed=7)
    raw_db = duckdb.connect(str(workdir / "raw.duckdb"))
    raw_db.execute("CREATE TABLE events AS SELECT * FROM events LIMIT 0")
    start = time.perf_counter()
    for offset in range(0, n_events, CHUNK):
        part = events.slice(offset, CHUNK)  # noqa: F841 - referenced by DuckDB below
        raw_db.execute("INSERT INTO events SELECT * FROM part")
    raw_seconds = time.perf_counter() - start
    raw_db.close()

    project = load_project(write_project(workdir / "bulk"))
    collector = Collector(Warehouse(project.settings.store_url), project.settings)
    stored = 0
    start = time.perf_counter()
    for offset in range(0, n_events, CHUNK):
        stored += collector.ingest(raw_from_arrow(events.slice(offset, CHUNK)), "bench").count(
            ACCEPTED
        )
    ours_seconds = time.perf_counter() - start
    return {
        "events": n_events,
        "stored": stored,
        "tailorkit_events_per_s": n_events / ours_seconds,
        "raw_insert_events_per_s": n_events / raw_seconds,
        "ratio": raw_seconds / ours_seconds,
    }


CONSTANT_APP = """
from fastapi import FastAPI, Request
from fastapi.responses import Response
app = FastAPI()
BODY = b'{"accepted":100,"duplicates":0,"rejected":0,"consent_dropped":0,"statuses":[],"errors":[]}'
@app.post("/v1/events")
async def events(request: Request) -> Response:
    await request.body()
    return Response(BODY, media_type="application/json")
@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


def _load_client(
    url: str, key: str, batches: list[bytes], seconds: float, conns: int, out: Any
) -> None:
    async def worker(client: httpx.AsyncClient, deadline: float, acked: list[int], k: int) -> None:
        i = k
        while time.perf_counter() < deadline and i < len(batches):
            r = await client.post("/v1/events", content=batches[i])
            if r.status_code == 200:
                acked[0] += r.json()["accepted"]
                acked[1] += 1
            else:
                acked[2] += 1
            i += conns

    async def main() -> list[float]:
        acked = [0, 0, 0]
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        limits = httpx.Limits(max_connections=conns)
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as c:
            start = time.perf_counter()
            deadline = start + seconds
            await asyncio.gather(*(worker(c, deadline, acked, k) for k in range(conns)))
            return [acked[0], acked[1], acked[2], time.perf_counter() - start]

    out.put(asyncio.run(main()))


def _run_load(url: str, key: str, batches: list[bytes], seconds: float, conns: int) -> list[float]:
    queue: Any = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(
        target=_load_client, args=(url, key, batches, seconds, conns, queue)
    )
    proc.start()
    result: list[float] = queue.get()
    proc.join()
    return result


def _batches(n: int) -> list[bytes]:
    table = generate_events_table(n * 100, seed=11)
    events = list(iter_event_dicts(table))
    for e in events:  # fresh ids: every run stores new events
        e["event_id"] = str(uuid.uuid4())
    return [json.dumps(events[i : i + 100]).encode() for i in range(0, len(events), 100)]


def http(seconds: float, conns: int, workdir: Path) -> dict[str, Any]:
    """Events/s over HTTP with zero loss, and the constant endpoint's rate."""
    batches = _batches(int(seconds * 1500))
    (workdir / "const_app.py").write_text(CONSTANT_APP)
    port = _free_port()
    const = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "const_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=workdir,
    )
    try:
        _wait(f"http://127.0.0.1:{port}")
        base = _run_load(f"http://127.0.0.1:{port}", "x", batches, seconds, conns)
    finally:
        const.terminate()
        const.wait()
    root = write_project(workdir / "http")
    project = load_project(root)
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tailorkit.cli.main",
            "serve",
            "--project",
            str(root),
            "--port",
            str(port),
        ]
    )
    try:
        _wait(f"http://127.0.0.1:{port}")
        ours = _run_load(
            f"http://127.0.0.1:{port}", project.settings.ingest_keys[0], batches, seconds, conns
        )
    finally:
        server.terminate()
        server.wait()
    stored = Warehouse(project.settings.store_url).count_events()
    return {
        "connections": conns,
        "tailorkit_events_per_s": ours[0] / ours[3],
        "tailorkit_requests_per_s": ours[1] / ours[3],
        "tailorkit_errors": ours[2],
        "acknowledged": ours[0],
        "stored": stored,
        "lost": ours[0] - stored,
        "constant_endpoint_requests_per_s": base[1] / base[3],
        "constant_endpoint_events_per_s": base[1] * 100 / base[3],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--http-seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        b = bulk(args.events, workdir)
        print(json.dumps({"bench": "ingest_bulk", **b}))
        h = http(args.http_seconds, args.connections, workdir)
        print(json.dumps({"bench": "ingest_http", **h}))
    print(
        json.dumps(
            {
                "bench": "ingest",
                "metric": "bulk_events_per_s",
                "value": round(b["tailorkit_events_per_s"]),
                "baseline": round(b["raw_insert_events_per_s"]),
                "ratio": round(b["ratio"], 3),
                "http_events_per_s": round(h["tailorkit_events_per_s"]),
                "http_lost": h["lost"],
            }
        )
    )


if __name__ == "__main__":
    main()
