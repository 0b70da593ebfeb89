"""Data quality: ingestion outcomes per source and day, bots and outliers.

Bots are recognised by user agent (a pattern covering the common crawler,
spider and headless-browser signatures) and outliers by a robust z-score of
events per user and day: ``(x - median) / (1.4826 · MAD)``; a user whose
busiest day exceeds the threshold is flagged. Flagged users are excluded from
profiles, segments and experiment analysis by default
(:func:`clean_events`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir

from tailorkit.project.loader import QualitySettings
from tailorkit.store.warehouse import INGEST_STATS, Warehouse

BOT_PATTERN = (
    r"(?i)(bot|crawl|spider|slurp|bingpreview|facebookexternalhit|headlesschrome|"
    r"phantomjs|python-requests|curl/|wget/|httpclient|scrapy|ahrefs|semrush)"
)
MAD_TO_SIGMA = 1.4826
#: Events tailorkit writes itself (segment membership changes, the decision log): not
#: behaviour. Exposures are kept out of profiles, bot and rate-outlier detection: a busy
#: page asks for many decisions, and that says nothing about the person.
SYSTEM_EVENT_TYPES = ("segment_entered", "segment_exited", "exposure")


def flagged_users(wh: Warehouse, quality: QualitySettings) -> ir.Table:
    """Person ids flagged as bots or rate outliers, with the reason."""
    events = wh.resolved_events()
    # Our own membership events would inflate event rates and move the flags
    events = events.filter(events.type.notin(SYSTEM_EVENT_TYPES))
    agent = events.context.cast("json")["user_agent"].str
    bots = (
        events.filter(agent.re_search(BOT_PATTERN))
        .select("person_id")
        .distinct()
        .mutate(reason=ibis.literal("bot_user_agent"))
    )
    daily = events.group_by(["person_id", events.timestamp.date().name("day")]).aggregate(
        n=events.count()
    )
    median = daily.n.approx_median() if wh.backend == "duckdb" else daily.n.median()
    center = daily.aggregate(med=median)
    with_dev = daily.cross_join(center).mutate(dev=lambda t: (t.n - t.med).abs())
    mad = with_dev.aggregate(mad=with_dev.dev.median(), med=with_dev.med.max())
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


def clean_events(wh: Warehouse, quality: QualitySettings) -> ir.Table:
    """Resolved events without flagged users (or all of them when disabled)."""
    events = wh.resolved_events()
    if not quality.exclude_flagged_users:
        return events
    flagged = flagged_users(wh, quality)
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
        flagged = flagged_users(wh, quality).to_pyarrow().to_pylist()
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
