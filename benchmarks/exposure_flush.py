"""How long the background exposure flushes stall an asyncio loop (the server's request path).

The decision engine of ``decide_http.py``'s project decides ``--rate``
requests per second (visits of 5 pages, users drawn from 10,000; clock
simulated) ahead of time; its decision-log events and flag exposure records
are kept per 0.5 s window. Then, as in ``tailorkit serve``, two background
threads store one window each every 0.5 s into the project's DuckDB file (or
``--store`` URL): the decision log with ``store_exposures(fresh_ids=True)``,
flag exposures through an :class:`ExposureLog` whose sink is
``store_exposures(daily_ids=True)``. Meanwhile the main thread runs an asyncio
loop that starts ``--rate`` callbacks per second, each spinning ``--work-ms``
of Python (a request), and records how late each one starts: a flush
holding the GIL delays every callback due meanwhile.

Printed per run (one JSON line): events stored, flusher CPU ms per 1,000
events (thread time; DuckDB's GIL-free work included), lateness p99/max, and
stalls (callbacks starting more than 2, 5 and 10 ms late, counted once per
stall: a stall is a run of late callbacks). On a shared machine lateness
is mostly the OS's (compare with ``--no-flush``); the GIL the flushers hold is
measured better from outside, with py-spy's ``--gil`` samples of the two
``Flusher`` threads (a thread is sampled only while it holds the GIL):

    nice -n 19 python benchmarks/exposure_flush.py --seconds 10
    nice -n 19 py-spy record --gil --threads --nonblocking --rate 1000 --format raw \
        -o gil.txt -- python benchmarks/exposure_flush.py --seconds 10
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from decide_http import request_bodies, write_bench_project
from tailorkit.collect.pipeline import Collector
from tailorkit.decide.exposures import EXPOSURE_SOURCE, ExposureLog
from tailorkit.decide.log import store_exposures
from tailorkit.decide.service import DecideService
from tailorkit.project.loader import load_project
from tailorkit.server.routes_decide import _json_object, parse_decide
from tailorkit.store.warehouse import Warehouse

WINDOW = 0.5  # seconds between flushes (the server's interval)


def decide_windows(project: Any, rate: int, windows: int) -> list[tuple[list[Any], list[Any]]]:
    """Per window: the decision-log events and (user, anonymous id, record) flag exposures."""
    engine = DecideService(project).engine
    start = time.time() - windows * WINDOW
    clock = [start]
    engine.clock = lambda: clock[0]
    events: list[dict[str, Any]] = []
    engine.exposures = events.extend
    records: list[Any] = []
    engine.flag_exposures = lambda uid, aid: lambda r: records.append((uid, aid, r))
    per_window = int(rate * WINDOW)
    out = []
    bodies = request_bodies(per_window * windows)
    for w in range(windows):
        for body in bodies[w * per_window : (w + 1) * per_window]:
            clock[0] += 1 / rate
            engine.decide(parse_decide(_json_object(body)), started=1e12)
        out.append((events[:], records[:]))
        events.clear()
        records.clear()
    return out


def flag_logs(collector: Collector, windows: list[Any]) -> list[ExposureLog]:
    """One exposure log per window with its records queued (the request path's part)."""

    def sink(events: list[dict[str, Any]]) -> object:
        return store_exposures(collector, events, EXPOSURE_SOURCE, daily_ids=True)

    logs = []
    for _, records in windows:
        log = ExposureLog(sink)
        for uid, aid, record in records:
            log.record(record, uid, aid)
        logs.append(log)
    return logs


class Flusher(threading.Thread):
    """Calls ``jobs[i]()`` at ``start + offset + i * WINDOW``; sums its own CPU time."""

    def __init__(self, jobs: list[Any], start_at: float, offset: float) -> None:
        super().__init__(daemon=True)
        self.jobs, self.start_at, self.offset = jobs, start_at, offset
        self.cpu = 0.0
        self.events = 0

    def run(self) -> None:
        for i, job in enumerate(self.jobs):
            due = self.start_at + self.offset + i * WINDOW
            time.sleep(max(0.0, due - time.perf_counter()))
            before = time.thread_time()
            self.events += job()
            self.cpu += time.thread_time() - before


def stalls(lateness: list[float], limit: float) -> int:
    """Runs of consecutive callbacks later than ``limit`` seconds."""
    count, inside = 0, False
    for late in lateness:
        if late > limit and not inside:
            count += 1
        inside = late > limit
    return count


async def request_loop(rate: int, seconds: float, work: float) -> list[float]:
    """Start ``rate`` callbacks a second, each spinning ``work`` s; returns their lateness."""
    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    done = asyncio.Event()
    n = int(rate * seconds)
    start = time.perf_counter() + 0.01

    def request(due: float) -> None:
        now = time.perf_counter()
        lateness.append(now - due)
        while time.perf_counter() - now < work:
            pass
        if len(lateness) == n:
            done.set()

    base = loop.time() - time.perf_counter()
    for i in range(n):
        due = start + i / rate
        loop.call_at(base + due, request, due)
    await done.wait()
    return lateness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1500, help="decisions per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--loop-rate", type=int, help="callbacks per second (default: --rate)")
    parser.add_argument("--work-ms", type=float, default=0.3, help="CPU per callback")
    parser.add_argument("--no-flush", action="store_true", help="measure the noise alone")
    parser.add_argument("--store", help="store URL (default: the project's DuckDB file)")
    args = parser.parse_args()
    windows = int(args.seconds / WINDOW)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        root, _ = write_bench_project(Path(tmp) / "p")
        project = load_project(root)
        warehouse = Warehouse(args.store or project.settings.store_url)
        collector = Collector(warehouse, project.settings)
        decided = decide_windows(project, args.rate, windows)
        logs = flag_logs(collector, decided)
        decisions = [
            lambda ev=ev: store_exposures(collector, ev, "decide", fresh_ids=True)
            for ev, _ in decided
        ]
        start = time.perf_counter() + 0.05
        threads = [] if args.no_flush else [
            Flusher(decisions, start, 0.0), Flusher([log.flush for log in logs], start, 0.25)
        ]  # fmt: skip
        for t in threads:
            t.start()
        time.sleep(max(0.0, start - time.perf_counter()))  # (the flushers wait too)
        late = asyncio.run(
            request_loop(args.loop_rate or args.rate, args.seconds, args.work_ms / 1000)
        )
        for t in threads:
            t.join()
        out: dict[str, Any] = {
            "events": sum(t.events for t in threads),
            "decision_log": threads[0].events if threads else 0,
            "flag": threads[1].events if threads else 0,
            "flusher_cpu_ms_per_1k": [
                round(t.cpu * 1000 * 1000 / max(1, t.events), 2) for t in threads
            ],
        }
        out["stalls_over"] = {f"{ms}ms": stalls(late, ms / 1000) for ms in (2, 5, 10)}
        late.sort()
        out["p99_ms"] = round(late[int(len(late) * 0.99)] * 1000, 2)
        out["max_ms"] = round(late[-1] * 1000, 2)
        out["stored"] = warehouse.count_events()
        out["load"] = os.getloadavg()[0]
        warehouse.close()
        print(json.dumps(out))


if __name__ == "__main__":
    main()
