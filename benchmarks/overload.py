"""Overload: ``/v1/decide`` at 3x the sustainable rate, admission control on vs off.

``tailorkit serve`` on the decide benchmark's project (10 placements, 20
features; ``benchmarks/decide_http.py``) with per-key rate limits off. In
one run:

1. the sustainable rate: wrk closed loop (each connection sends again as
   soon as it is answered) on a server with admission control off;
2. a fresh server with admission control on (the project defaults,
   ``admission`` in tailorkit.yaml) is offered 3x that rate open-loop by wrk
   (``benchmarks/wrk/decide.lua`` with ``TK_RATE``: request *i* is due at
   ``start + i / rate``) on ``--connections`` connections for ``--seconds``;
3. the same on a fresh server with admission control off (limits far above
   any load, ``max_lag_ms: 0``): the baseline.

wrk counts requests, HTTP errors (>= 400; a shed decide is a 200 with
default content, so these are real failures) and timeouts (2 s). The shed
share is the server's ``tailorkit_shed_total{class="decide"}`` over the
requests answered. Admitted latency comes from a probe (the open-loop client
of ``tests/server/test_overload.py``) sending ``PROBE_RATE`` requests/s on its
own connections alongside wrk: each answer is known shed (``reason:
"overloaded"``) or admitted, which wrk cannot tell; latency runs from sending.
RSS of the server process before the load and its highest reading during
it. Recovery: from the moment wrk stops, the time until a single request
first gets a full (not shed) answer within ``RECOVERED_MS``.

The machine has 2 cores shared with other jobs; the load average is printed
with the figures.

    python benchmarks/overload.py --seconds 20
    python benchmarks/overload.py --quick

The last line is the JSON summary (bench, metric, value, baseline, ratio):
the admitted p99 with admission control on, against off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import LiveServer, start_server
from tests.server.test_overload import _decide_body, _load, _rss_mb, _shed

from decide_http import run_wrk, write_bench_project
from scale import _without_rate_limits

#: admission control off: no in-flight bound reached, no lag shedding
ADMISSION_OFF = {"decide": 10**9, "ingest": 10**9, "admin": 10**9, "max_lag_ms": 0}
PROBE_RATE = 25.0
PROBE_CONNECTIONS = 32  # enough that the probe itself is not held back below ~1.3 s latency
RECOVERED_MS = 50.0
RECOVERY_LIMIT_S = 120.0


def _server(workdir: Path, name: str, admission: dict[str, Any] | None) -> LiveServer:
    """A fresh server on the decide benchmark's project; ``admission`` None: the defaults."""
    project, _ = write_bench_project(workdir / name)
    _without_rate_limits(project)
    if admission is not None:
        settings = yaml.safe_load((project / "tailorkit.yaml").read_text())
        settings["admission"] = admission
        (project / "tailorkit.yaml").write_text(yaml.safe_dump(settings))
    return start_server(project, workdir / f"{name}.log")


def _port(server: LiveServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def _key(server: LiveServer) -> str:
    return server.project.settings.ingest_keys[0]


def _shed_total(server: LiveServer) -> float:
    """Decide requests shed so far, from the server's Prometheus metrics."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tailorkit_shed_total" and sample.labels.get("class") == "decide"
    )


def sustainable_rate(workdir: Path, seconds: float, connections: int) -> float:
    """Decisions/s answered closed-loop (admission control off, so nothing is shed)."""
    server = _server(workdir, "closed-loop", ADMISSION_OFF)
    try:
        run_wrk(_port(server), _key(server), 0, 2, connections)  # warm-up
        row = run_wrk(_port(server), _key(server), 0, seconds, connections)
    finally:
        server.stop()
    print(f"closed loop: {row}", file=sys.stderr)
    return float(row["achieved"]) * row["ok"] / max(1, row["sent"])


def _recovery_seconds(server: LiveServer, stopped: float) -> float | None:
    """Seconds from ``stopped`` until one request gets a full answer within RECOVERED_MS."""
    with server.client(headers=server.ingest_headers) as client:
        n = 0
        while time.perf_counter() - stopped < RECOVERY_LIMIT_S:
            n += 1
            sent = time.perf_counter()
            try:
                r = client.post("/v1/decide", json=_decide_body(n), timeout=10)
            except httpx.HTTPError:
                continue
            now = time.perf_counter()
            if r.status_code == 200 and not _shed(r) and now - sent < RECOVERED_MS / 1000:
                return round(now - stopped, 3)
            time.sleep(0.01)
    return None


def _pct(values: list[float], q: float) -> float | None:
    values = sorted(values)
    return round(values[int(q * (len(values) - 1))] * 1000, 2) if values else None


def overload(
    workdir: Path,
    name: str,
    admission: dict[str, Any] | None,
    sustainable: float,
    seconds: float,
    connections: int,
) -> dict[str, Any]:
    """Offer 3x ``sustainable`` to a fresh server; what was shed, admitted latency, memory,
    recovery."""
    server = _server(workdir, name, admission)
    try:
        port, key, pid = _port(server), _key(server), server.process.pid
        run_wrk(port, key, sustainable / 2, 2, connections)  # warm-up below the limit
        rss_before = _rss_mb(pid)
        shed_before = _shed_total(server)
        rss_peak = [rss_before]
        loading = threading.Event()
        loading.set()

        def sample_rss() -> None:
            while loading.is_set():
                rss_peak.append(_rss_mb(pid))
                time.sleep(0.25)

        with ThreadPoolExecutor(2) as pool:
            pool.submit(sample_rss)
            wrk = pool.submit(run_wrk, port, key, 3 * sustainable, seconds, connections)
            probe = asyncio.run(_load(server, PROBE_RATE, seconds, PROBE_CONNECTIONS))
            load = wrk.result()
            stopped = time.perf_counter()
            loading.clear()
        recovery = _recovery_seconds(server, stopped)
        rss_after = _rss_mb(pid)
        shed = _shed_total(server) - shed_before
    finally:
        server.stop()
    answered = load["sent"] + len(probe)
    admitted = [latency for latency, status, was_shed in probe if status == 200 and not was_shed]
    row = {
        "bench": "overload",
        "admission": "on" if admission is None else "off",
        "sustainable_per_s": round(sustainable, 1),
        "offered_per_s": round(3 * sustainable, 1),
        "achieved_per_s": load["achieved"],
        "late": load["late"],
        "answered": answered,
        "shed": int(shed),
        "shed_share": round(shed / answered, 4) if answered else None,
        "probe_shed_share": round(1 - len(admitted) / len(probe), 4) if probe else None,
        # decisions answered in full per second
        "goodput_per_s": round(load["achieved"] * (1 - shed / answered), 1) if answered else None,
        "shed_p50_ms": _pct([latency for latency, _, was_shed in probe if was_shed], 0.50),
        "admitted_p50_ms": _pct(admitted, 0.50),
        "admitted_p99_ms": _pct(admitted, 0.99),
        "probe_admitted": len(admitted),
        "wrk_p50_ms": load["p50_ms"],
        "wrk_p99_ms": load["p99_ms"],
        "errors_5xx": load["errors_status"] + sum(1 for _, status, _ in probe if status >= 500),
        "errors_timeout": load["errors_socket"],
        "rss_before_mb": round(rss_before, 1),
        "rss_peak_mb": round(max(rss_peak), 1),
        "rss_after_mb": round(rss_after, 1),
        "recovery_s": recovery,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of overload per run")
    parser.add_argument("--connections", type=int, default=1024, help="wrk connections")
    parser.add_argument("--quick", action="store_true", help="5 s runs (a smoke test)")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else args.seconds
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sustainable = sustainable_rate(workdir, min(seconds, 10.0), 32)
        rows = []
        for name, admission in (("on", None), ("off", ADMISSION_OFF)):
            folder = f"admission-{name}"  # not "on": YAML would read that project name as true
            rows.append(
                overload(workdir, folder, admission, sustainable, seconds, args.connections)
            )
            print(json.dumps(rows[-1]), flush=True)
    on, off = rows
    value, baseline = on["admitted_p99_ms"], off["admitted_p99_ms"]
    print(
        json.dumps(
            {
                "bench": "overload",
                "metric": "admitted_p99_ms_at_3x",
                "value": value,
                "baseline": baseline,
                "ratio": round(value / baseline, 3) if value and baseline else None,
                "sustainable_per_s": on["sustainable_per_s"],
                "offered_per_s": on["offered_per_s"],
                **{k: on[k] for k in SUMMARY},
                **{f"baseline_{k}": off[k] for k in SUMMARY},
                "seconds": seconds,
                "connections": args.connections,
                "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            }
        )
    )


#: per-run figures repeated in the summary (``baseline_``: admission control off)
SUMMARY = (
    "shed_share",
    "admitted_p50_ms",
    "shed_p50_ms",
    "achieved_per_s",
    "goodput_per_s",
    "errors_5xx",
    "errors_timeout",
    "rss_before_mb",
    "rss_peak_mb",
    "rss_after_mb",
    "recovery_s",
)


if __name__ == "__main__":
    main()
