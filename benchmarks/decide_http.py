"""Decision API latency under fixed offered load: `tailorkit serve` vs a constant endpoint.

A project with 10 placements (rules on context, profile segments and
attributes, an experiment, a bandit, recommendations, caps and dwell) and 20
features in features.yaml is served by ``tailorkit serve``. A load client in
a separate process sends ``POST /v1/decide`` open-loop: request *i* is due
at ``start + i / rate`` whatever happened to earlier ones, and its latency
is measured from when it was due, so a stalled server cannot hide queueing
(no coordinated omission). Each rate runs for ``--seconds`` after a warm-up;
rates go up until p99 passes 50 ms or requests fail.

The baseline, in the same run and on the same stack (uvicorn, one worker, no
access log): a minimal FastAPI endpoint answering the same number of bytes of
constant JSON. Requests come as visits (a user asks on 5 pages in a row, users drawn
from 10,000), so first-time exposure logging is part of the load as on a real site.
The summary metric is the highest offered rate with p99 <= 10 ms
and no errors; ``ratio`` is ours over the baseline's.

    python benchmarks/decide_http.py --seconds 5

The last line is the JSON summary (bench, metric, value, baseline, ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from fastapi import FastAPI, Request, Response  # module level: the baseline's annotations

DEVICE = "{{ context.device }}"
RATES = (250, 500, 1000, 1500, 2000, 2500, 3000, 4000, 5000)
USERS = 10_000
PAGES = 5  # decisions per visit (one per page view)
TIMEOUT = 2.0
CONNECTIONS = 32
P99_TARGET_MS = 10.0


# -- the project -------------------------------------------------------------------------


def features_doc() -> dict[str, Any]:
    """20 features: flags with targeting, rollouts and experiments."""
    features: dict[str, Any] = {}
    for i in range(8):
        features[f"flag_{i}"] = {
            "defaultValue": False,
            "rules": [{"condition": {"country": {"$in": ["DE", "AT"]}}, "force": True}],
        }
    for i in range(6):
        features[f"rollout_{i}"] = {
            "defaultValue": "off",
            "rules": [{"force": "on", "coverage": 0.3, "hashAttribute": "id"}],
        }
    for i in range(6):
        features[f"test_{i}"] = {
            "defaultValue": "a",
            "rules": [{"key": f"exp-{i}", "variations": ["a", "b"], "hashVersion": 2}],
        }
    return {"features": features}


def placements_doc() -> dict[str, Any]:
    """10 placements with rules, owners and stability settings."""
    placements: dict[str, Any] = {}
    for i in range(10):
        variants = {
            "default": {"content": f"<section class='p{i}'><h2>Welcome</h2></section>"},
            "mobile": {"content": f"<section class='p{i}'><h2>On the go, {DEVICE}</h2></section>"},
            "germany": {"content": f"<section class='p{i}'><h2>Willkommen</h2></section>"},
            "vip": {
                "content": f"<section class='p{i}'><h2>Hello again {{{{ user.id }}}}</h2></section>"
            },
        }
        rules: list[dict[str, Any]] = [
            {"id": "vip", "priority": 40, "condition": {"segments": "vip"}, "variant": "vip"},
            {"id": "german", "priority": 30, "condition": {"country": "DE"}, "variant": "germany"},
            {
                "id": "mobile",
                "priority": 20,
                "condition": {"device": "mobile"},
                "variant": "mobile",
            },
        ]
        placement: dict[str, Any] = {"default": "default", "variants": variants, "rules": rules}
        if i == 0:
            rules.append({"id": "test", "priority": 10, "experiment": {
                "key": "hero-test", "variations": ["default", "vip"]}})  # fmt: skip
        if i == 1:
            placement = {"default": "default", "variants": variants, "bandit": "promo"}
        if i == 2:
            variants["recs"] = {
                "content": "{% for r in recommendations %}<li>{{ r.name }}</li>{% endfor %}"
            }
            rules.append({"id": "recs", "priority": 5, "variant": "recs",
                          "recommendations": {"from": "popular", "count": 3}})  # fmt: skip
        if i == 3:
            placement["min_dwell"] = "10m"
            variants["germany"]["frequency_cap"] = {"max": 5, "window": "1d"}
        placements[f"placement_{i}"] = placement
    return {
        "settings": {"deadline_ms": 50},
        "recommendations": {
            "popular": {"items": [{"id": f"p{i}", "name": f"Product {i}"} for i in range(10)]}
        },
        "bandits": {
            "promo": {
                "arms": ["default", "mobile", "germany"],
                "floor": 0.02,
                "reward": {"event": "click", "window": "1h"},
            }
        },
        "placements": placements,
    }


def write_bench_project(root: Path) -> tuple[Path, str]:
    """The benchmark project; returns its folder and an ingest key."""
    from tailorkit.project.init import write_project

    project = write_project(root)
    (project / "features.yaml").write_text(yaml.safe_dump(features_doc()))
    (project / "placements.yaml").write_text(yaml.safe_dump(placements_doc(), sort_keys=False))
    segments = {
        "features": {"page_views_7d": {"count": {"events": ["page_view"], "window": "7d"}}},
        "segments": {"vip": {"condition": {"page_views_7d": {"$gte": 50}}}},
    }
    (project / "segments.yaml").write_text(yaml.safe_dump(segments))
    settings = yaml.safe_load((project / "tailorkit.yaml").read_text())
    return project, settings["keys"]["ingest"][0]


def request_bodies(n: int = 4000, seed: int = 1) -> list[bytes]:
    """Decision requests as sessions: a user (of ``USERS``) asks on ``PAGES`` pages in a row."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        user = f"user-{rng.randrange(USERS)}"
        country = rng.choice(["DE", "FR", "US", "GB", "AT"])
        device = rng.choice(["mobile", "desktop"])
        for page in range(PAGES):
            body = {
                "user_id": user,
                "attributes": {"country": country},
                "context": {"device": device, "path": f"/page/{page}"},
            }
            out.append(orjson.dumps(body))
    return out[:n]


# -- servers -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def baseline_server(port: int, body_file: str) -> None:
    """A minimal FastAPI endpoint answering constant JSON (run in a subprocess)."""
    import uvicorn

    body = Path(body_file).read_bytes()
    app = FastAPI()

    @app.post("/v1/decide")
    async def decide(request: Request) -> Response:
        await request.body()
        return Response(body, media_type="application/json")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- the open-loop client ------------------------------------------------------------------


async def _one(
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    port: int,
    request: bytes,
    due: float,
    latencies: list[float],
    errors: list[str],
) -> None:
    reader, writer = await pool.get()  # waiting for a connection counts: latency runs from `due`
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - due)
        if status != 200:
            errors.append(f"status {status}")
        pool.put_nowait((reader, writer))
    except Exception as exc:
        errors.append(type(exc).__name__)
        writer.close()
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))


async def offered_load(
    port: int, key: str, rate: float, seconds: float, warmup: float
) -> dict[str, Any]:
    """Send requests at ``rate`` per second, open-loop; latency from each one's due time."""
    bodies = request_bodies()
    requests = [
        (
            f"POST /v1/decide HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n"
        ).encode()
        + b
        for b in bodies
    ]
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(CONNECTIONS):  # a fixed set of keep-alive connections, like wrk2
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    errors: list[str] = []
    tasks = set()
    total = int((seconds + warmup) * rate)
    measured_from = int(warmup * rate)
    start = time.perf_counter() + 0.05
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sink_l, sink_e = (latencies, errors) if i >= measured_from else ([], [])
        task = asyncio.create_task(
            _one(pool, port, requests[i % len(requests)], due, sink_l, sink_e)
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=TIMEOUT + 1)
    while not pool.empty():
        pool.get_nowait()[1].close()
    latencies.sort()
    n = len(latencies)

    def pct(q: float) -> float:
        return round(latencies[min(n - 1, int(q * n))] * 1000, 2) if n else float("nan")

    sent = total - measured_from
    failed = sum(1 for e in errors if not e.startswith("status"))  # no response at all
    return {
        "rate": rate,
        "sent": sent,
        "ok": n - len(errors),
        "errors": len(errors) + max(0, sent - n - failed),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
    }


def client_main(port: int, key: str, rate: float, seconds: float, warmup: float) -> None:
    """The load client process: one rate, prints one JSON line."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(offered_load(port, key, rate, seconds, warmup))))


def run_rate(port: int, key: str, rate: float, seconds: float, warmup: float) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            str(port),
            key,
            str(rate),
            str(seconds),
            str(warmup),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + warmup + 60,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def sweep(name: str, port: int, key: str, seconds: float, warmup: float) -> list[dict[str, Any]]:
    run_rate(port, key, 200, 3, 0)  # warm caches, user memory and connections; not reported
    rows = []
    for rate in RATES:
        row = run_rate(port, key, rate, seconds, warmup)
        row["server"] = name
        rows.append(row)
        print(
            f"{name:9s} {rate:6.0f}/s  p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms"
            f"  errors {row['errors']}",
            file=sys.stderr,
        )
        if row["errors"] or row["p99_ms"] > 1000:
            break
    return rows


def best_rate(rows: list[dict[str, Any]]) -> float:
    good = [r["rate"] for r in rows if r["p99_ms"] <= P99_TARGET_MS and not r["errors"]]
    return max(good, default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per rate")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per rate")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project, key = write_bench_project(Path(tmp) / "bench")
        ours_port, base_port = free_port(), free_port()
        log = (Path(tmp) / "server.log").open("w")
        ours = subprocess.Popen(
            [sys.executable, "-m", "tailorkit.cli.main", "serve", "--project", str(project),
             "--port", str(ours_port)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_ready(f"http://127.0.0.1:{ours_port}/healthz")
            sample = httpx.post(
                f"http://127.0.0.1:{ours_port}/v1/decide",
                content=request_bodies(1)[0],
                headers={"Authorization": f"Bearer {key}"},
            ).content
            body_file = Path(tmp) / "constant.json"
            body_file.write_bytes(sample)
            ours_rows = sweep("tailorkit", ours_port, key, args.seconds, args.warmup)
        finally:
            ours.terminate()
            ours.wait(30)
        base = subprocess.Popen(
            [sys.executable, __file__, "--baseline", str(base_port), str(body_file)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_ready(f"http://127.0.0.1:{base_port}/healthz")
            base_rows = sweep("baseline", base_port, key, args.seconds, args.warmup)
        finally:
            base.terminate()
            base.wait(30)
    value, baseline = best_rate(ours_rows), best_rate(base_rows)
    for row in ours_rows + base_rows:
        print(json.dumps(row))
    print(
        json.dumps(
            {
                "bench": "decide_http",
                "metric": "max_rate_p99_le_10ms_per_s",
                "value": value,
                "baseline": baseline,
                "ratio": round(value / baseline, 3) if baseline else None,
                "response_bytes": len(sample),
                "p99_ms_at_1000": next((r["p99_ms"] for r in ours_rows if r["rate"] == 1000), None),
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        port_, key_, rate_, seconds_, warmup_ = sys.argv[2:7]
        client_main(int(port_), key_, float(rate_), float(seconds_), float(warmup_))
    elif len(sys.argv) > 1 and sys.argv[1] == "--baseline":
        baseline_server(int(sys.argv[2]), sys.argv[3])
    else:
        main()
