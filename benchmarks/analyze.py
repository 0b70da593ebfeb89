"""Experiment analysis: the whole ``tailorkit analyze`` vs the bare aggregation SQL.

An experiment with 10,000,000 exposures and 50,000,000 metric events (plus
segment membership events) is generated directly in DuckDB
(``benchmarks/analyze_data.py``): 3 variations, 3 metrics (conversion within
7 days; revenue per user, winsorized at p99 and CUPED-adjusted with 14 days
before exposure; add-to-carts per session, a ratio) and 5 segments.

* **tailorkit**: :func:`tailorkit.measure.analysis.analyze_experiment` — the
  Ibis statements, then the engine: overall results with corrections,
  every segment, cumulative results by day, health checks, recommendation.
  Bot/outlier exclusion is on, as in a project (``--no-exclude-flagged``
  turns it off): the flags are read from the stored ``flagged_users`` table
  (:func:`tailorkit.collect.quality.current_flags` checks its watermark).
  The table is refreshed once before the timed runs, as ``tailorkit
  quality`` / ``tailorkit build`` do; that refresh (a scan of every event)
  is timed and printed separately (``flags_refresh_seconds``).
* **baseline**: one hand-written DuckDB statement computing what any
  analysis of this experiment must compute: first exposure per user
  (without the flagged users of the same table), segments at exposure,
  per-user metric values in their windows, the p99
  cap, then n, Σx, Σx², Σy, Σy², Σxy per variation and per variation ×
  segment. No identity resolution, no per-day split, no engine.

Both run on the same file in the same process, best of ``--repeat``; the
baseline's numbers are checked against tailorkit's. The last line is JSON:
``{"bench": "analyze", "metric": "seconds", "value": ..., "baseline": ..., "ratio": ...}``.

    python benchmarks/analyze.py                       # 10M exposures (~4 min to generate)
    python benchmarks/analyze.py --exposures 1000000   # scaled down
    python benchmarks/analyze.py --db /tmp/exp.duckdb  # reuse (or create) a generated file
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).parent))

from analyze_data import EXPERIMENT, SEGMENTS, generate
from tailorkit.collect.quality import refresh_flags
from tailorkit.measure.analysis import parse_experiment
from tailorkit.measure.analysis.pipeline import build_report
from tailorkit.measure.analysis.query import sufficient_stats
from tailorkit.project.loader import QualitySettings
from tailorkit.store.warehouse import FLAGGED_USERS, Warehouse

AS_OF = datetime(2026, 5, 1, tzinfo=UTC)
FEATURES = {
    "experiments": {
        EXPERIMENT: {
            "variations": ["control", "one-page checkout", "express checkout"],
            "weights": [1, 1, 1],
            "segments": list(SEGMENTS),
            "metrics": {
                "purchase": {"type": "binomial", "event": "purchase", "window_hours": 168},
                "revenue": {
                    "type": "mean",
                    "event": "purchase",
                    "value": "revenue",
                    "winsorize_percentile": 99,
                    "cuped": {"pre_period_days": 14},
                },
                "carts_per_session": {
                    "type": "ratio",
                    "numerator": {"event": "add_to_cart"},
                    "denominator": {"event": "session_start"},
                },
            },
        }
    }
}

BASELINE = """
WITH exposed AS MATERIALIZED (
    SELECT user_id AS person, min(timestamp) AS exposed_at, min(v) AS variation, max(v) AS vmax
    FROM (SELECT user_id, timestamp, properties ->> '$.key' AS k,
                 CAST(properties ->> '$.variation' AS INTEGER) AS v
          FROM events WHERE type = 'exposure')
    WHERE k = '{key}' {unflagged}
    GROUP BY 1
),
membership AS (
    SELECT person, segment FROM (
        SELECT e.user_id AS person, e.properties ->> '$.segment' AS segment,
               arg_max(e.type, e.timestamp) AS last
        FROM events e JOIN exposed x ON e.user_id = x.person AND e.timestamp <= x.exposed_at
        WHERE e.type IN ('segment_entered', 'segment_exited')
        GROUP BY 1, 2)
    WHERE last = 'segment_entered'
),
vals AS (
    SELECT x.person,
        max(CASE WHEN type = 'purchase' AND ts >= exposed_at AND ts < exposed_at + INTERVAL 168 HOUR
                 THEN 1.0 ELSE 0.0 END)::DOUBLE AS conv,
        sum(revenue) FILTER (WHERE ts >= exposed_at) AS rev,
        sum(revenue) FILTER (WHERE ts < exposed_at) AS rev_pre,
        count(*) FILTER (WHERE type = 'add_to_cart' AND ts >= exposed_at) AS carts,
        count(*) FILTER (WHERE type = 'session_start' AND ts >= exposed_at) AS sessions
    FROM (SELECT user_id, type, timestamp AS ts,
                 CASE WHEN type = 'purchase'
                      THEN CAST(properties ->> '$.revenue' AS DOUBLE) END AS revenue
          FROM events
          WHERE type IN ('purchase', 'add_to_cart', 'session_start')
            AND timestamp <= TIMESTAMPTZ '{as_of}') e
    JOIN exposed x ON e.user_id = x.person AND e.ts >= x.exposed_at - INTERVAL 14 DAY
    GROUP BY 1
),
users AS MATERIALIZED (
    SELECT x.person, x.variation, coalesce(conv, 0.0) AS conv, coalesce(rev, 0.0) AS rev,
           coalesce(rev_pre, 0.0) AS pre, CAST(coalesce(carts, 0) AS DOUBLE) AS carts,
           CAST(coalesce(sessions, 0) AS DOUBLE) AS sessions
    FROM exposed x LEFT JOIN vals USING (person)
    WHERE x.variation = x.vmax
),
capped AS (
    SELECT u.* REPLACE (least(rev, c.cap) AS rev)
    FROM users u, (SELECT quantile_cont(rev, 0.99) AS cap FROM users) c
),
rows AS (
    SELECT variation, NULL AS segment, * EXCLUDE (variation) FROM capped
    UNION ALL
    SELECT variation, m.segment, capped.* EXCLUDE (variation)
    FROM capped JOIN membership m USING (person)
)
SELECT variation, segment, count(*) AS n,
    sum(conv) AS conv, sum(rev) AS rev, sum(rev * rev) AS rev2, sum(pre) AS pre,
    sum(pre * pre) AS pre2, sum(rev * pre) AS rev_pre, sum(carts) AS carts,
    sum(carts * carts) AS carts2, sum(sessions) AS sessions,
    sum(sessions * sessions) AS sessions2, sum(carts * sessions) AS carts_sessions
FROM rows GROUP BY ALL ORDER BY ALL
"""


def tailorkit_run(db: str, quality: QualitySettings) -> tuple[float, dict[str, Any], float]:
    """Seconds for the whole analysis (SQL + report), the report, and the SQL share."""
    spec = parse_experiment(FEATURES, EXPERIMENT)
    start = time.perf_counter()
    wh = Warehouse(f"duckdb://{db}")
    table = sufficient_stats(wh, spec, quality, AS_OF)
    sql_done = time.perf_counter()
    report = build_report(spec, table, AS_OF, quality)
    total = time.perf_counter() - start
    wh.close()
    return total, report, sql_done - start


def baseline_run(db: str, exclude_flagged: bool) -> tuple[float, list[tuple[Any, ...]]]:
    """Seconds for the hand-written aggregation, and its rows."""
    unflagged = (
        f"AND user_id NOT IN (SELECT person_id FROM {FLAGGED_USERS})" if exclude_flagged else ""
    )
    sql = BASELINE.format(key=EXPERIMENT, as_of=AS_OF.isoformat(), unflagged=unflagged)
    start = time.perf_counter()
    con = duckdb.connect(db)
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute(sql).fetchall()
    seconds = time.perf_counter() - start
    con.close()
    return seconds, rows


def check(report: dict[str, Any], rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Both computed the same thing: users and conversion rate per variation agree."""
    overall = {r[0]: r for r in rows if r[1] is None}
    users = [v["users"] for v in report["variations"]]
    base_users = [overall[v][2] for v in sorted(overall)]
    purchase = report["metrics"][0]
    rates = [purchase["control"]["mean"]] + [v["mean"] for v in purchase["variations"]]
    base_rates = [float(overall[v][3]) / overall[v][2] for v in sorted(overall)]
    same = users == base_users and all(
        abs(a - b) < 1e-12 for a, b in zip(rates, base_rates, strict=True)
    )
    return {
        "same_users": users == base_users,
        "users": users,
        "baseline_users": base_users,
        "same": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exposures", type=int, default=10_000_000)
    parser.add_argument("--events-per-exposure", type=float, default=5.0)
    parser.add_argument("--db", help="generated DuckDB file to reuse (created if missing)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each side (best kept)")
    parser.add_argument(
        "--exclude-flagged",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="exclude bots and rate outliers (the project default)",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="tk-bench-analyze-"))
    db = args.db or str(workdir / "experiment.duckdb")
    if not Path(db).exists():
        print(
            json.dumps({"generated": generate(db, args.exposures, args.events_per_exposure)}),
            flush=True,
        )
    quality = QualitySettings(exclude_flagged_users=args.exclude_flagged)
    refresh = None
    if args.exclude_flagged:
        # what `tailorkit quality` / `tailorkit build` do between analyses
        start = time.perf_counter()
        wh = Warehouse(f"duckdb://{db}")
        refresh_flags(wh, quality)
        wh.close()
        refresh = round(time.perf_counter() - start, 2)
    ours, base = float("inf"), float("inf")
    for _ in range(args.repeat):
        seconds, rows = baseline_run(db, args.exclude_flagged)
        base = min(base, seconds)
        total, report, sql_seconds = tailorkit_run(db, quality)
        if total < ours:
            ours, sql_share = total, sql_seconds
    summary = {
        "check": check(report, rows),
        "exclude_flagged": args.exclude_flagged,
        "excluded_flagged": report["users"]["excluded_flagged"],
        "flags_refresh_seconds": refresh,
        "tailorkit_sql_seconds": round(sql_share, 2),
        "report_seconds": round(ours - sql_share, 2),
        "recommendation": report["recommendation"]["action"],
    }
    print(json.dumps(summary), flush=True)
    print(json.dumps({"bench": "analyze", "metric": "seconds", "value": round(ours, 2),
                      "baseline": round(base, 2), "ratio": round(ours / base, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
