"""Synthetic experiment data for ``benchmarks/analyze.py``, generated inside DuckDB.

Rows are computed from hash functions of their index (no Python loop, no
Collector), so 10 million exposures and 50 million metric events take a few
minutes. Everything is a deterministic function of the row index:

* user ``u`` (``0 ≤ u < users``): variation ``hash(u) % 3``, first exposure
  at a hashed second of the 28-day experiment; 5% of users are exposed twice,
  and one in 50 of those second exposures shows another variation (≈0.1%
  multiple-exposure users);
* metric events: ``session_start``, ``add_to_cart``, ``page_view`` and
  ``purchase`` (lognormal ``revenue``) between 14 days before and 21 days after
  the user's exposure; heavy users (low ``u``) have more events, so pre- and
  post-exposure revenue correlate (CUPED has something to remove); after
  exposure, variation 1 converts 10% and variation 2 5% more often;
* 0.1% of users browse with a crawler's user agent (flagged as bots);
* segments: 80% of users enter one of 5 segments before their exposure, and
  10% of those leave it again (half before, half after the exposure).

    python benchmarks/analyze_data.py --exposures 1000000 --db /tmp/exp.duckdb
"""

from __future__ import annotations

import argparse
import time

import duckdb

from tailorkit.store.warehouse import Warehouse

START = "2026-03-02 00:00:00+00"
DAYS = 28
SEGMENTS = ("new_visitors", "bargain_hunters", "loyal", "mobile_first", "big_spenders")
EXPERIMENT = "checkout_redesign"

# u(x, salt): a uniform in [0, 1) from a hash; one macro for every draw
MACROS = """
CREATE OR REPLACE MACRO unif(x, salt) AS (hash(x, salt) % 1000000007) / 1000000007.0;
CREATE OR REPLACE MACRO variation_of(u) AS hash(u, 'variation') % 3;
CREATE OR REPLACE MACRO exposed_at(u, days) AS
    TIMESTAMPTZ '{start}' + to_microseconds(CAST(unif(u, 'exposed') * days * 86400e6 AS BIGINT));
"""

EXPOSURES = """
INSERT INTO events
SELECT
    'x' || i AS event_id,
    'exposure' AS type,
    'u' || u AS user_id,
    NULL AS anonymous_id,
    ts AS timestamp,
    ts AS received_at,
    0 AS clock_skew_ms,
    'bench' AS source,
    '{{"kind":"experiment","key":"{key}","variation":' || v || ',"variation_key":"' || v
        || '","propensity":0.3333333333,"hash_attribute":"id","hash_value":"u' || u || '"}}'
        AS properties,
    '{{"user_agent":"Mozilla/5.0"}}' AS context,
    TRUE AS personalization
FROM (
    SELECT i, u,
        CASE WHEN i >= {users} AND unif(i, 'switch') < 0.02
             THEN (variation_of(u) + 1) % 3 ELSE variation_of(u) END AS v,
        exposed_at(u, {days}) + CASE WHEN i >= {users}
             THEN to_microseconds(CAST(unif(i, 'again') * 3 * 86400e6 AS BIGINT))
             ELSE INTERVAL 0 SECOND END AS ts
    FROM (SELECT i, CASE WHEN i < {users} THEN i
                         ELSE CAST(unif(i, 'repeat') * {users} AS BIGINT) END AS u
          FROM range({exposures}) r(i))
)
"""

METRIC_EVENTS = """
INSERT INTO events
SELECT
    'm' || i, kind, 'u' || u, NULL, ts, ts, 0, 'bench',
    CASE WHEN kind = 'purchase'
         THEN '{{"revenue":' || round(exp(3.0 + 0.8 * z), 2) || ',"currency":"EUR"}}'
         ELSE '{{"url":"/p/' || (i % 997) || '"}}' END,
    CASE WHEN unif(u, 'bot') < 0.001 THEN '{{"user_agent":"Googlebot/2.1"}}'
         ELSE '{{"user_agent":"Mozilla/5.0"}}' END,
    TRUE
FROM (
    SELECT i, u, ts,
        -- variation 1: +10% purchases after exposure, variation 2: +5%
        CASE WHEN r < 0.40 THEN 'session_start'
             WHEN r < 0.65 THEN 'add_to_cart'
             WHEN r < 0.95 - CASE WHEN after THEN lift ELSE 0 END THEN 'page_view'
             ELSE 'purchase' END AS kind,
        sqrt(-2 * ln(greatest(unif(i, 'z1'), 1e-12))) * cos(2 * pi() * unif(i, 'z2')) AS z
    FROM (
        SELECT i, u, r, offset_s >= 0 AS after,
            exposed_at(u, {days}) + to_microseconds(CAST(offset_s * 1e6 AS BIGINT)) AS ts,
            CASE variation_of(u) WHEN 1 THEN 0.005 WHEN 2 THEN 0.0025 ELSE 0 END AS lift
        FROM (
            SELECT i,
                -- skewed: low user numbers are heavy users (more events before and after)
                CAST(power(unif(i, 'user'), 1.6) * {users} AS BIGINT) AS u,
                unif(i, 'type') AS r,
                (unif(i, 'offset') * 35 - 14) * 86400 AS offset_s
            FROM range({metric_events}) r(i)
        )
    )
)
"""

SEGMENT_EVENTS = """
INSERT INTO events
SELECT
    's' || u || kind, kind, 'u' || u, NULL, ts, ts, 0, 'segments',
    '{{"segment":"' || segment || '","reason":"event"}}', NULL, TRUE
FROM (
    SELECT u, 'segment_entered' AS kind, segment,
        exposed_at(u, {days})
            - to_microseconds(CAST((1 + unif(u, 'enter') * 20) * 86400e6 AS BIGINT)) AS ts
    FROM users WHERE member
    UNION ALL
    SELECT u, 'segment_exited', segment,
        exposed_at(u, {days})
            + to_microseconds(CAST((unif(u, 'exit') - 0.5) * 2 * 86400e6 AS BIGINT))
    FROM users WHERE member AND unif(u, 'leaves') < 0.1
)
"""

USERS = """
CREATE TEMP TABLE users AS
SELECT u, unif(u, 'member') < 0.8 AS member,
    list_extract({segments}, CAST(hash(u, 'segment') % 5 AS INTEGER) + 1) AS segment
FROM range({users}) r(u)
"""


def generate(db_path: str, exposures: int, events_per_exposure: float = 5.0) -> dict[str, float]:
    """Fill a tailorkit warehouse at ``db_path`` with the synthetic experiment."""
    Warehouse(f"duckdb://{db_path}").close()  # creates the tables with tailorkit's schema
    con = duckdb.connect(db_path)
    users = int(exposures / 1.05)
    params = {
        "exposures": exposures,
        "users": users,
        "metric_events": int(exposures * events_per_exposure),
        "days": DAYS,
        "key": EXPERIMENT,
        "segments": "[" + ", ".join(f"'{s}'" for s in SEGMENTS) + "]",
    }
    timings: dict[str, float] = {}
    con.execute("SET preserve_insertion_order = false")  # parallel inserts
    con.execute(MACROS.format(start=START))
    for name, sql in (
        ("users", USERS),
        ("exposures", EXPOSURES),
        ("metric_events", METRIC_EVENTS),
        ("segment_events", SEGMENT_EVENTS),
    ):
        start = time.perf_counter()
        con.execute(sql.format(**params))
        timings[name] = time.perf_counter() - start
    con.execute("CHECKPOINT")
    timings["rows"] = con.execute("SELECT count(*) FROM events").fetchone()[0]  # type: ignore[index]
    con.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exposures", type=int, default=10_000_000)
    parser.add_argument("--events-per-exposure", type=float, default=5.0)
    parser.add_argument("--db", required=True, help="DuckDB file to create")
    args = parser.parse_args()
    print(generate(args.db, args.exposures, args.events_per_exposure))


if __name__ == "__main__":
    main()
