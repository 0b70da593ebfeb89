"""Ingestion throughput: bulk path vs raw DuckDB insert, and HTTP vs a constant endpoint.

Bulk: N generated events through tailorkit's full path (validate, dedup,
pseudonymize, store in DuckDB) vs a plain ``INSERT ... SELECT`` of the same
Arrow rows into a DuckDB table, in the same process and run.

HTTP: wrk (``benchmarks/wrk/events.lua``, a second process) posts batches of 100
fresh events to ``tailorkit serve`` over loopback with C connections; the
baseline is wrk against a constant-answer FastAPI endpoint on uvicorn. After
the run the events in the store are counted and must equal those acknowledged.

    python benchmarks/ingest.py --events 5000000 --http-seconds 20

The last line is the JSON summary (bench, metric, value, baseline, ratio).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx

from tailorkit.collect.pipeline import ACCEPTED, Collector
from tailorkit.collect.raw import raw_from_arrow
from tailorkit.demo import generate_events_table
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


WRK_DIR = Path(__file__).parent / "wrk"


def _wrk(url: str, script: str, seconds: float, conns: int, key: str = "") -> dict[str, Any]:
    """Run wrk (a C load generator, second process) and parse the JSON its script prints."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{int(seconds)}s", "-s", str(WRK_DIR / script), url],
        capture_output=True,
        text=True,
        check=True,
        env={"TK_KEY": key, "PATH": "/usr/bin:/bin"},
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def http(seconds: float, conns: int, workdir: Path) -> dict[str, Any]:
    """Events/s over HTTP with zero loss, and the constant endpoint's request rate."""
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
        base = _wrk(f"http://127.0.0.1:{port}/v1/events", "constant.lua", seconds, conns)
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
        ours = _wrk(
            f"http://127.0.0.1:{port}",
            "events.lua",
            seconds,
            conns,
            project.settings.ingest_keys[0],
        )
    finally:
        server.terminate()
        server.wait()
    stored = Warehouse(project.settings.store_url).count_events()
    return {
        "connections": conns,
        "tailorkit_events_per_s": ours["accepted"] / ours["seconds"],
        "tailorkit_requests_per_s": ours["requests"] / ours["seconds"],
        "tailorkit_p99_ms": ours["p99_ms"],
        "tailorkit_errors": ours["errors_status"] + ours["errors_socket"],
        "acknowledged": ours["accepted"],
        "stored": stored,
        # Requests in flight when wrk stops are stored but not counted by wrk.
        "lost": max(0, ours["accepted"] - stored),
        "constant_endpoint_requests_per_s": base["requests"] / base["seconds"],
        "constant_endpoint_events_per_s": base["requests"] * 100 / base["seconds"],
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
