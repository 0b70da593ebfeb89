"""Decision API latency under fixed offered load: `tailorkit serve` vs a constant endpoint.

A project with 10 placements (rules on context, profile segments and
attributes, an experiment, a bandit, recommendations, caps and dwell) and 20
features in features.yaml is served by ``tailorkit serve``. A load client in
a separate process sends ``POST /v1/decide`` open-loop at fixed rates:
request *i* is due at ``start + i / rate`` whatever happened to earlier ones.

The load client is ``wrk`` (C, one thread) with ``benchmarks/wrk/decide.lua``
when it is installed (``apt-get install wrk``), else a Python asyncio client
(``--load python``), which on a 2-core machine becomes the bottleneck well
before the baseline does. wrk measures latency from when a request is sent;
requests sent more than 1 ms after their due time (no free connection) are
counted as late, and a rate with more than 1 % late requests was not held.
The Python client measures from the due time (no coordinated omission).
Each rate runs for ``--seconds`` after an unmeasured warm-up; rates go up
until p99 passes 1 s, requests fail or the rate is not held.

The baseline, in the same run and on the same stack (uvicorn, one worker, no
access log): a minimal FastAPI endpoint answering the same number of bytes of
constant JSON. Requests come as visits (a user asks on 5 pages in a row, users drawn
from 10,000), so first-time exposure logging is part of the load as on a real site.
The summary metric is the highest offered rate with p99 <= 10 ms,
no errors and the rate held; ``ratio`` is ours over the baseline's. The load
average (the machine is shared) is printed with the figures.

    python benchmarks/decide_http.py --seconds 5

The last line is the JSON summary (bench, metric, value, baseline, ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
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
RATES = (250, 500, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 10000, 12000, 16000)
USERS = 10_000
PAGES = 5  # decisions per visit (one per page view)
TIMEOUT = 2.0
CONNECTIONS = 32
P99_TARGET_MS = 10.0
MAX_LATE_SHARE = 0.01  # wrk: more requests than this sent late means the rate was not held
WRK_SCRIPT = Path(__file__).parent / "wrk" / "decide.lua"


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
        variants: dict[str, Any] = {
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
    # the rate limiter stays on (its cost is measured) but far above the offered rates
    settings["rate_limits"] = {"ingest": {"per_second": 1_000_000}}
    (project / "tailorkit.yaml").write_text(yaml.safe_dump(settings))
    return project, settings["keys"]["ingest"][0]


def request_bodies(n: int = 4000, seed: int = 1) -> list[bytes]:
    """Decision requests as sessions: a user (of ``USERS``) asks on ``PAGES`` pages in a row."""
    rng = random.Random(seed)
    out: list[bytes] = []
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


def run_wrk(
    port: int, key: str, rate: float, seconds: float, connections: int = CONNECTIONS
) -> dict[str, Any]:
    """One fixed-rate wrk run (``rate`` 0: as fast as the connections go)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
         "--timeout", f"{max(1, round(TIMEOUT))}s",
         "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=seconds + 60,
        env={**os.environ, "TK_KEY": key, "TK_RATE": str(rate)},
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError((out.stderr or out.stdout)[-2000:])
    raw: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    errors = raw["errors_status"] + raw["errors_socket"]
    return {
        "rate": rate,
        "sent": raw["requests"],
        "ok": raw["requests"] - errors,
        "errors": errors,
        "errors_status": raw["errors_status"],  # HTTP >= 400
        "errors_socket": raw["errors_socket"],  # connect, read, write, timeout
        "late": raw["late"],
        "achieved": round(raw["requests"] / raw["seconds"], 1),
        "p50_ms": round(raw["p50_ms"], 2),
        "p99_ms": round(raw["p99_ms"], 2),
        "max_ms": round(raw["max_ms"], 2),
    }


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_rate(
    port: int,
    key: str,
    rate: float,
    seconds: float,
    warmup: float,
    load: str = "wrk",
    pid: int | None = None,
) -> dict[str, Any]:
    """One rate; with the server's ``pid``, also its CPU milliseconds per request."""
    if load == "wrk":
        if warmup > 0:
            run_wrk(port, key, rate, warmup)
        before, shed_before = (cpu_seconds(pid) if pid else 0.0), shed_answers(port)
        row = run_wrk(port, key, rate, seconds)
        row["shed"] = shed_answers(port) - shed_before
        if pid and row["sent"]:
            row["cpu_ms_per_request"] = round((cpu_seconds(pid) - before) * 1000 / row["sent"], 3)
        return row
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


def held(row: dict[str, Any]) -> bool:
    """The offered rate was sent on time (wrk) and answered without errors, each request
    with a decision (admission control's default answers are 200 too, but no decision)."""
    late_ok = row.get("late", 0) <= MAX_LATE_SHARE * row["sent"]
    return not row["errors"] and not row.get("shed", 0) and late_ok


def shed_answers(port: int) -> int:
    """Requests admission control answered with default content so far (0 without /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    if answer.status_code != 200:
        return 0  # the baseline has no metrics, and sheds nothing
    families = text_string_to_metric_families(answer.text)
    shed = (f for f in families if f.name == "tailorkit_shed")  # the parser drops "_total"
    return int(sum(s.value for f in shed for s in f.samples if s.name.endswith("_total")))


def sweep(
    name: str, port: int, key: str, seconds: float, warmup: float, load: str, pid: int
) -> list[dict[str, Any]]:
    run_rate(port, key, 200, 3, 0, load)  # warm caches, user memory, connections; not reported
    rows = []
    for rate in RATES:
        row = run_rate(port, key, rate, seconds, warmup, load, pid)
        row["server"] = name
        row["load_average"] = round(os.getloadavg()[0], 2)
        rows.append(row)
        print(
            f"{name:9s} {rate:6.0f}/s  p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms"
            f"  errors {row['errors']}  late {row.get('late', '-')}  shed {row.get('shed', '-')}"
            f"  cpu/request {row.get('cpu_ms_per_request', '-')} ms"
            f"  load {row['load_average']}",
            file=sys.stderr,
        )
        if not held(row) or row["p99_ms"] > 1000:
            break
    return rows


def best_rate(rows: list[dict[str, Any]]) -> float:
    good = [r["rate"] for r in rows if r["p99_ms"] <= P99_TARGET_MS and held(r)]
    return max(good, default=0.0)


def most_held(rows: list[dict[str, Any]]) -> float:
    """The highest offered rate held at all (any latency): the sustainable throughput."""
    return max((r["rate"] for r in rows if held(r)), default=0.0)


def max_throughput(port: int, key: str, seconds: float, load: str) -> float:
    """Requests/s answered closed-loop (each connection sends as soon as it is answered)."""
    if load != "wrk":
        return 0.0
    shed_before = shed_answers(port)
    row = run_wrk(port, key, 0, seconds)
    shed = shed_answers(port) - shed_before
    decided = row["achieved"] * (1 - shed / row["sent"]) if row["sent"] else 0.0
    print(
        f"closed loop: {row['achieved']}/s, errors {row['errors']}, shed {shed}"
        f" (decided {decided:.0f}/s)",
        file=sys.stderr,
    )
    return round(decided, 1) if not row["errors"] else 0.0


def pauses(port: int) -> dict[str, Any]:
    """From the server's /metrics: GC pauses and event-loop lags over 10 ms, and the longest.

    Both stall every request in flight, so they explain a p99 the CPU cost does not.
    """
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in ("tailorkit_gc_pause_seconds", "tailorkit_event_loop_lag_seconds"):
            continue
        over, longest, total = 0.0, 0.0, 0.0
        buckets: dict[float, float] = {}
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value  # summed over labels
        previous = 0.0
        for bound in sorted(buckets):
            count = buckets[bound] - previous
            previous = buckets[bound]
            total += count
            if count and bound > P99_TARGET_MS / 1000:
                over += count
            if count:
                longest = bound
        name = "gc_pauses" if "gc" in family.name else "loop_lags"
        out[f"{name}_over_10ms"] = int(over)
        out[f"{name}_longest_le_s"] = longest
    return out


def _median_cpu(rows: list[dict[str, Any]]) -> float | None:
    """Server CPU per request over the rates it held (load-independent cost)."""
    values = sorted(r["cpu_ms_per_request"] for r in rows if held(r) and "cpu_ms_per_request" in r)
    return values[len(values) // 2] if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per rate")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per rate")
    parser.add_argument(
        "--load",
        choices=("wrk", "python"),
        default="wrk" if shutil.which("wrk") else "python",
        help="load client (default wrk when installed)",
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
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
            ours_rows = sweep(
                "tailorkit", ours_port, key, args.seconds, args.warmup, args.load, ours.pid
            )
            ours_max = max_throughput(ours_port, key, args.seconds, args.load)
            ours_pauses = pauses(ours_port)
            print(f"pauses over the whole run: {ours_pauses}", file=sys.stderr)
        finally:
            ours.terminate()
            ours.wait(30)
        base = subprocess.Popen(
            [sys.executable, __file__, "--baseline", str(base_port), str(body_file)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_ready(f"http://127.0.0.1:{base_port}/healthz")
            base_rows = sweep(
                "baseline", base_port, key, args.seconds, args.warmup, args.load, base.pid
            )
            base_max = max_throughput(base_port, key, args.seconds, args.load)
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
                "errors_at_1000": next((r["errors"] for r in ours_rows if r["rate"] == 1000), None),
                "held_rate": most_held(ours_rows),
                "baseline_held_rate": most_held(base_rows),
                "held_ratio": round(most_held(ours_rows) / most_held(base_rows), 3)
                if most_held(base_rows)
                else None,
                "max_throughput_per_s": ours_max,
                "baseline_max_throughput_per_s": base_max,
                "max_throughput_ratio": round(ours_max / base_max, 3) if base_max else None,
                "cpu_ms_per_request": _median_cpu(ours_rows),
                "baseline_cpu_ms_per_request": _median_cpu(base_rows),
                **ours_pauses,
                "load": args.load,
                "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
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
