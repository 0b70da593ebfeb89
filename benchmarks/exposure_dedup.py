"""The flag-exposure log's duplicate check on a store that already holds a day of events.

A DuckDB store gets ``--stored`` events timestamped today (behavioural
events, as a busy shop stores through the day), then flag-exposure flushes
of ``--batch`` new exposures each are stored as ``tailorkit serve`` stores
them (``store_exposures(daily_ids=True)``): the baseline asks the store which
ids it holds (a scan of every event stored today), tailorkit keeps the day's
flag-exposure ids in memory (:class:`~tailorkit.decide.log.StoredToday`,
read from the store at its first flush). The two alternate, each on fresh
exposures; the figure is the median CPU per flush (the process's, so
DuckDB's own threads count), the first flush of the in-memory side included
in its runs but not in the median.

    python benchmarks/exposure_dedup.py --stored 1000000

The last line is the JSON summary (bench, metric, value, baseline, ratio).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tailorkit.collect.pipeline import Collector
from tailorkit.decide.exposures import EXPOSURE_SOURCE, exposure_event_for
from tailorkit.decide.log import StoredToday, store_exposures
from tailorkit.evaluate import ExposureRecord
from tailorkit.project.loader import PiiSettings, Settings
from tailorkit.store.warehouse import Warehouse

RECORD = ExposureRecord("checkout-test", 1, "b", "id", "u", "checkout", 0.5, 0.5)


def fill(wh: Warehouse, n: int, now: datetime) -> None:
    """``n`` behavioural events of today, up to ``now`` (one per 10 ms back)."""
    raw = wh.con.con
    raw.execute(
        "INSERT INTO events (event_id, type, user_id, timestamp, received_at, source, "
        "properties, personalization) SELECT uuid()::VARCHAR, 'page_view', 'v' || i, "
        "?::TIMESTAMPTZ - to_microseconds(i * 10), ?::TIMESTAMPTZ, 'http', '{}', true "
        "FROM range(?) t(i)",
        [now, now, n],
    )


def flush(
    collector: Collector, tag: str, n: int, now: datetime, today: StoredToday | None
) -> float:
    """Store ``n`` new flag exposures; returns the process CPU seconds it took."""
    events = [
        exposure_event_for(RECORD, user_id=f"{tag}-{i}", anonymous_id=None, timestamp=now)
        for i in range(n)
    ]
    start = time.process_time()
    stored = store_exposures(collector, events, EXPOSURE_SOURCE, daily_ids=True, stored_today=today)
    took = time.process_time() - start
    assert stored == n, (stored, n)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stored", type=int, default=1_000_000, help="events stored today")
    parser.add_argument("--batch", type=int, default=600, help="exposures per flush")
    parser.add_argument("--flushes", type=int, default=20, help="flushes per side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wh = Warehouse(f"duckdb://{Path(tmp) / 'store.duckdb'}")
        collector = Collector(wh, Settings(store_url=wh.url, pii=PiiSettings(hmac_key="k" * 20)))
        now = datetime.now(UTC).replace(microsecond=0)
        fill(wh, args.stored, now)
        today = StoredToday(EXPOSURE_SOURCE)
        scans, memory = [], []
        for i in range(args.flushes):
            scans.append(flush(collector, f"s{i}", args.batch, now, None))
            memory.append(flush(collector, f"m{i}", args.batch, now, today))
        value = statistics.median(memory[1:]) * 1000
        baseline = statistics.median(scans[1:]) * 1000
    print(
        json.dumps(
            {
                "bench": "exposure_dedup",
                "metric": "cpu_ms_per_flush",
                "value": round(value, 2),
                "baseline": round(baseline, 2),
                "ratio": round(value / baseline, 3),
                "first_flush_ms": round(memory[0] * 1000, 2),
                "stored_today": args.stored,
                "batch": args.batch,
            }
        )
    )


if __name__ == "__main__":
    main()
