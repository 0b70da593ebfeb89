"""Data quality: ingestion outcomes per source and day, bots and outliers.

Bots are recognised by user agent (a pattern covering the common crawler,
spider and headless-browser signatures) and outliers by a robust z-score of
events per user and day: ``(x - median) / (1.4826 · MAD)``; a user whose
busiest day exceeds the threshold is flagged. Flagged users are excluded from
profiles, segments and experiment analysis by default
(:func:`clean_events`).

Computing the flags scans every event. Experiment analysis reads them from
the ``flagged_users`` table instead (:func:`current_flags`): ``tailorkit
quality`` and ``tailorkit build`` refresh it (:func:`refresh_flags`), and a
one-row ``flagged_users_state`` table keeps the watermark it was computed at
— the number of events and identity merges, the latest of each, and the
rules. When the watermark no longer matches the store (or the table is
missing) the flags are recomputed and stored again, so analysis results are
those of a fresh scan. Profiles and segments (:func:`clean_events`) read the
stored flags while fresh and compute them in the query otherwise.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir

from tailorkit.project.loader import QualitySettings
from tailorkit.store.warehouse import FLAGGED_USERS, FLAGS_STATE, INGEST_STATS, Warehouse

BOT_PATTERN = (
    r"(?i)(bot|crawl|spider|slurp|bingpreview|facebookexternalhit|headlesschrome|"
    r"phantomjs|python-requests|curl/|wget/|httpclient|scrapy|ahrefs|semrush)"
)
MAD_TO_SIGMA = 1.4826
#: Events tailorkit writes itself (segment membership changes, the decision log): not
#: behaviour. Exposures are kept out of profiles, bot and rate-outlier detection: a busy
#: page asks for many decisions, and that says nothing about the person.
SYSTEM_EVENT_TYPES = ("segment_entered", "segment_exited", "exposure")
#: Part of the watermark: changing the rules here makes stored flags stale.
RULES_VERSION = 2  # 2: exact median of person-day counts on DuckDB too


def flagged_users(wh: Warehouse, quality: QualitySettings) -> ir.Table:
    """Person ids flagged as bots or rate outliers, with the reason."""
    # Our own membership events would inflate event rates and move the flags; filtered
    # before the identity join, this is a scan of its own beside other uses of the events
    events = wh.resolved_events(without=SYSTEM_EVENT_TYPES)
    return flags_of(bot_persons(events), daily_counts(events), quality)


def bot_persons(events: ir.Table) -> ir.Table:
    """``person_id`` of the persons of resolved ``events`` with a bot's user agent."""
    # A person has few distinct agents: each event gives only the agent's JSON text (one
    # extraction); unescaping it and matching the pattern happen once per person and agent
    agent_json = events.context.cast("json")["user_agent"].cast("string")
    agents = events.select("person_id", _agent=agent_json).distinct()
    # an aggregate, not a filter: the engine would push a filter down to every event
    bots = agents.group_by("person_id").aggregate(
        _bot=agents._agent.cast("json").str.re_search(BOT_PATTERN).any()
    )
    return bots.filter(bots._bot).select("person_id")


def daily_counts(events: ir.Table) -> ir.Table:
    """Events per person and UTC day (``person_id``, ``day``, ``n``) of resolved ``events``."""
    return events.group_by(["person_id", events.timestamp.date().name("day")]).aggregate(
        n=events.count()
    )


def flags_of(bots: ir.Table, daily: ir.Table, quality: QualitySettings) -> ir.Table:
    """``person_id`` and ``reason`` of every flag, from everyone's :func:`bot_persons`
    and :func:`daily_counts` (each person's rows depend on their events only)."""
    bots = bots.select("person_id", reason=ibis.literal("bot_user_agent"))
    # exact on every backend: an approximate median (DuckDB's t-digest) could flag other
    # users than PostgreSQL or Spark; from the counts' histogram (a few hundred distinct
    # counts), not by sorting millions of person-days
    counts = daily.group_by("n").aggregate(k=daily.count())
    center = histogram_median(counts.select(x=counts.n.cast("float64"), k=counts.k))
    devs = counts.cross_join(center.select(med="median"))
    devs = devs.group_by(x=(devs.n - devs.med).abs()).aggregate(k=devs.k.sum())
    mad = center.select(med="median").cross_join(histogram_median(devs).select(mad="median"))
    scored = daily.cross_join(mad).mutate(
        z=(daily.n - mad.med) / ibis.greatest(mad.mad * MAD_TO_SIGMA, 1.0)
    )
    outliers = (
        scored.filter(scored.z > quality.robust_z_threshold)
        .select("person_id")
        .distinct()
        .mutate(reason=ibis.literal("extreme_event_rate"))
    )
    return bots.union(outliers)


def histogram_median(hist: ir.Table) -> ir.Table:
    """One row, ``median``: the median of the values ``x`` repeated ``k`` times each.

    Averages the two middle values of an even count, as SQL's
    ``percentile_cont(0.5)`` and DuckDB's ``median`` do (null when empty).

    >>> import pyarrow as pa
    >>> hist = ibis.memtable(pa.table({"x": [1.0, 2.0, 10.0], "k": [2, 1, 1]}))
    >>> histogram_median(hist).to_pyarrow().to_pylist()
    [{'median': 1.5}]
    """
    total = hist.k.sum().over()
    ranked = hist.mutate(upto=hist.k.sum().over(order_by=hist.x, rows=(None, 0)), n=total)
    # 0-based ranks of the middle values: (n - 1) // 2 and n // 2
    low = ranked.x.min(where=ranked.upto > (ranked.n - 1) // 2)
    high = ranked.x.min(where=ranked.upto > ranked.n // 2)
    return ranked.aggregate(median=(low + high) / 2.0)


def flags_watermark(wh: Warehouse, quality: QualitySettings) -> str:
    """What the flags depend on: event and identity counts and latest arrivals, and the rules.

    Cheap on DuckDB (counts and maxima come from the storage statistics).
    Any insert raises a count and a deletion lowers one; deletions followed
    by as many inserts still move the latest arrival (``received_at`` and
    ``merged_at`` are set at ingestion).

    >>> mark = json.loads(flags_watermark(Warehouse("duckdb://:memory:"), QualitySettings()))
    >>> mark["events"], mark["identities"], mark["robust_z_threshold"]
    (0, 0, 6.0)
    """
    events, ids = wh.events, wh.identities
    expr = events.aggregate(events=events.count(), received=events.received_at.max()).cross_join(
        ids.aggregate(identities=ids.count(), merged=ids.merged_at.max())
    )
    with wh.lock:
        row = wh.con.to_pyarrow(expr).to_pylist()[0]
    for key in ("received", "merged"):
        row[key] = row[key].isoformat() if row[key] is not None else None
    rules = {"rules": RULES_VERSION, "bot_pattern": BOT_PATTERN, "mad_to_sigma": MAD_TO_SIGMA}
    return json.dumps({**row, **rules, "robust_z_threshold": quality.robust_z_threshold})


def stored_flags(wh: Warehouse, quality: QualitySettings) -> ir.Table | None:
    """The ``flagged_users`` table if it matches the store's current watermark, else ``None``.

    >>> stored_flags(Warehouse("duckdb://:memory:"), QualitySettings()) is None
    True
    """
    with wh.lock:
        if not {FLAGGED_USERS, FLAGS_STATE} <= set(wh.con.list_tables()):
            return None
        marks = wh.con.to_pyarrow(wh.con.table(FLAGS_STATE).watermark).to_pylist()
        return wh.con.table(FLAGGED_USERS) if marks == [flags_watermark(wh, quality)] else None


def refresh_flags(wh: Warehouse, quality: QualitySettings) -> ir.Table:
    """Recompute the flags into ``flagged_users`` (``person_id``, ``reason``, ``flagged_at``).

    ``flagged_at`` is when a refresh first saw the flag (kept across refreshes).

    >>> wh = Warehouse("duckdb://:memory:")
    >>> refresh_flags(wh, QualitySettings()).columns
    ('person_id', 'reason', 'flagged_at')
    >>> stored_flags(wh, QualitySettings()) is not None
    True
    """
    with wh.lock:
        # read before the scan: a write during it leaves the table stale, never wrongly fresh
        mark = flags_watermark(wh, quality)
        now = ibis.literal(datetime.now(UTC), "timestamp('UTC')")
        flags = flagged_users(wh, quality)
        if FLAGGED_USERS in wh.con.list_tables():
            old = wh.con.table(FLAGGED_USERS)
            flags = flags.left_join(old, ["person_id", "reason"])
            since = flags.flagged_at.fill_null(now)
        else:
            since = now
        flags = flags.select("person_id", "reason", flagged_at=since)
        wh.con.create_table(FLAGGED_USERS, flags, overwrite=True)
        state = ibis.memtable({"watermark": [mark], "refreshed_at": [datetime.now(UTC)]})
        wh.con.create_table(FLAGS_STATE, state, overwrite=True)
        return wh.con.table(FLAGGED_USERS)


def current_flags(wh: Warehouse, quality: QualitySettings) -> ir.Table:
    """The stored flags, refreshed first when missing or stale (same rows as :func:`flagged_users`).

    >>> current_flags(Warehouse("duckdb://:memory:"), QualitySettings()).count().execute()
    0
    """
    with wh.lock:
        stored = stored_flags(wh, quality)
        return stored if stored is not None else refresh_flags(wh, quality)


def clean_events(wh: Warehouse, quality: QualitySettings) -> ir.Table:
    """Resolved events without flagged users (or all of them when disabled).

    The flags are the stored ones when their watermark matches the store
    (the same rows as a scan, without its cost), else computed in the query
    (always for a view of part of the events, ``wh.complete`` false);
    nothing is written (this runs beside the writer, on reader connections).
    """
    events = wh.resolved_events()
    if not quality.exclude_flagged_users:
        return events
    stored = stored_flags(wh, quality) if wh.complete else None
    flagged = stored if stored is not None else flagged_users(wh, quality)
    # .view(): both sides derive from the same tables; Ibis 12 needs them told apart
    return events.view().anti_join(flagged, "person_id")


def quality_report(wh: Warehouse, quality: QualitySettings, days: int = 30) -> dict[str, Any]:
    """The ``tailorkit quality`` report as a JSON-ready dict."""
    with wh.lock:
        stats = wh.con.table(INGEST_STATS)
        since = (datetime.now(UTC) - timedelta(days=days)).date()
        per_day = (
            stats.filter(stats.day >= since)
            .group_by(["day", "source", "outcome", "reason"])
            .aggregate(n=stats.n.sum())
            .order_by(["day", "source", "outcome", "reason"])
            .to_pyarrow()
            .to_pylist()
        )
        # refreshes the stored flags when stale, so analyses after this need no scan
        flags = current_flags(wh, quality).order_by(["person_id", "reason"])
        flagged = wh.con.to_pyarrow(flags.select("person_id", "reason")).to_pylist()
    for row in per_day:
        row["day"] = row["day"].isoformat()
    reasons: dict[str, int] = {}
    for row in flagged:
        reasons[row["reason"]] = reasons.get(row["reason"], 0) + 1
    return {
        "days": days,
        "ingestion": per_day,
        "flagged_users": len({r["person_id"] for r in flagged}),
        "flagged_by_reason": reasons,
        "excluded_from_analysis": quality.exclude_flagged_users,
        "flagged_sample": flagged[:20],
    }
