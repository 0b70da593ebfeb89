"""What the dashboard pages show, read through the same functions as the API.

Heavy reads (segment report, experiment analysis) go through a second
warehouse connection and are cached for a short while: a page view must not
stall ingestion, and several viewers must not run the same query at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
from prometheus_client import REGISTRY

from tailorkit.cli.experiments import power_report
from tailorkit.measure.analysis import analyze_experiment
from tailorkit.measure.bandit_report import report_for
from tailorkit.segment.batch import reader, stored_membership, stored_report
from tailorkit.server.app import AppState

CACHE_SECONDS = 60.0
SEGMENT_HISTORY_DAYS = 7


class Cache:
    """Results by key for ``CACHE_SECONDS``; one computation per key at a time."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[float, Any]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        """The cached value of ``key`` or a fresh one."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # a second viewer waits for the first computation instead of repeating it
            hit = self._values.get(key)
            if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
                return hit[1]
            value = compute()
            self._values[key] = (time.monotonic(), value)
            return value


def _counter(name: str, label: str) -> dict[str, float]:
    """Current totals of a Prometheus counter by one label."""
    out: dict[str, float] = {}
    for family in REGISTRY.collect():
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = sample.labels.get(label, "")
                out[key] = out.get(key, 0.0) + sample.value
    return out


def overview(state: AppState) -> dict[str, Any]:
    """Events per minute (last hour of data), active users, decisions by source, errors."""
    with reader(state.warehouse) as view:
        events = view.events
        latest = events.timestamp.max().to_pyarrow().as_py()
        now = datetime.now(UTC)
        # a demo without live traffic ends at midnight: show its last hour instead of nothing
        end = now if latest is None or now - latest < timedelta(hours=1) else latest
        since = end - timedelta(hours=1)
        recent = events.filter(events.timestamp > since, events.timestamp <= end)
        minute = recent.timestamp.truncate("m").name("minute")
        per_minute = recent.group_by(minute).aggregate(n=recent.count()).to_pyarrow().to_pylist()
        active = recent.filter(recent.timestamp > end - timedelta(minutes=30))
        active_users = int(
            ibis.coalesce(active.user_id, active.anonymous_id).nunique().to_pyarrow().as_py()
        )
        total = int(events.count().to_pyarrow().as_py())
    counts = {r["minute"]: r["n"] for r in per_minute}
    minutes = [
        (since + timedelta(minutes=i + 1)).replace(second=0, microsecond=0) for i in range(60)
    ]
    return {
        "end": end.isoformat(),
        "live": end == now,
        "labels": [m.strftime("%H:%M") for m in minutes],
        "events_per_minute": [int(counts.get(m, 0)) for m in minutes],
        "active_users": active_users,
        "events_total": total,
        "decisions": _counter("tailorkit_decisions", "source"),
        "events_by_outcome": _counter("tailorkit_events", "outcome"),
        "errors": _counter("tailorkit_errors", "component"),
        "fallbacks": _counter("tailorkit_decide_fallbacks", "reason"),
    }


def segments(state: AppState, definitions: Any, cache: Cache) -> dict[str, Any]:
    """The batch segment report (sizes, overlap, history) as of now."""

    def compute() -> dict[str, Any]:
        quality, now = state.project.settings.quality, datetime.now(UTC)
        with reader(state.warehouse) as view:
            return stored_report(definitions, view, quality, now, SEGMENT_HISTORY_DAYS)

    result: dict[str, Any] = cache.get("segments", compute)
    return result


def members_sample(state: AppState, definitions: Any, key: str, n: int = 5) -> list[str]:
    """A few current members of segment ``key`` (warehouse view)."""
    with reader(state.warehouse) as view:
        quality = state.project.settings.quality
        members = stored_membership(definitions, view, quality, datetime.now(UTC))
        rows = members.filter(members[key]).select("person_id").order_by("person_id").limit(n)
        return [str(r["person_id"]) for r in rows.to_pyarrow().to_pylist()]


def experiment_keys(state: AppState) -> list[str]:
    """Experiments with analysis settings in features.yaml."""
    doc = state.project.definitions.get("features") or {}
    return sorted((doc.get("experiments") or {}).keys())


def experiment(state: AppState, key: str, cache: Cache) -> dict[str, Any]:
    """The analysis report of one experiment (what ``tailorkit analyze KEY --json`` prints)."""

    def compute() -> dict[str, Any]:
        with reader(state.warehouse) as view:
            return analyze_experiment(state.project, key, warehouse=view)

    result: dict[str, Any] = cache.get(f"experiment:{key}", compute)
    return result


def status(report: dict[str, Any]) -> str:
    """One word-ish status of an experiment report: waiting, running or ready to decide.

    >>> status({"users": {"analysed": 0}, "recommendation": {"action": "keep_running"}})
    'waiting for exposures'
    >>> status({"users": {"analysed": 9}, "start": "2024-05-01T00:00:00+00:00",
    ...         "as_of": "2024-05-03T12:00:00+00:00", "recommendation": {"action": "ship"}})
    'ready to decide (2.5 days)'
    """
    if not (report.get("users") or {}).get("analysed"):
        return "waiting for exposures"
    days = ""
    if report.get("start") and report.get("as_of"):
        span = datetime.fromisoformat(report["as_of"]) - datetime.fromisoformat(report["start"])
        days = f" ({span.total_seconds() / 86_400:.1f} days)"
    running = report.get("recommendation", {}).get("action") == "keep_running"
    return ("running" if running else "ready to decide") + days


#: the change the power section plans for: a relative lift of the primary metric
PLANNED_LIFT = 0.10


def power(report: dict[str, Any], lift: float = PLANNED_LIFT) -> dict[str, Any] | None:
    """Power now and expected duration for a ``lift`` of the (binomial) primary metric.

    Baseline: the control's rate; users: the smallest arm; daily users: the
    experiment's users so far over the days since its start. Mean metrics
    need a standard deviation the report does not carry: None for them.

    >>> r = {"metrics": [{"role": "primary", "type": "binomial", "key": "buy",
    ...     "control": {"mean": 0.2}}], "variations": [{"users": 600}, {"users": 580}],
    ...     "settings": {"alpha": 0.05}, "start": "2024-05-01T00:00:00+00:00",
    ...     "as_of": "2024-05-03T00:00:00+00:00"}
    >>> p = power(r)
    >>> p["per_variation"], round(p["at_users"]["power"], 2), p["duration"]["days"]
    (6507, 0.13, 23)
    """
    primary = next((m for m in report.get("metrics", []) if m.get("role") == "primary"), None)
    users = [v["users"] for v in report.get("variations", [])]
    if primary is None or primary.get("type") != "binomial" or not users or min(users) < 1:
        return None
    baseline = (primary.get("control") or {}).get("mean")
    if not baseline or not 0.0 < baseline < 1.0 or baseline * (1 + lift) >= 1.0:
        return None
    alpha = report.get("settings", {}).get("alpha", 0.05)
    elapsed = None
    if report.get("start") and report.get("as_of"):
        span = datetime.fromisoformat(report["as_of"]) - datetime.fromisoformat(report["start"])
        elapsed = span.total_seconds() / 86_400
    daily = sum(users) / elapsed if elapsed and elapsed > 0 else None
    plan = power_report(baseline, lift, relative=True, alpha=alpha, variations=len(users),
                        users=min(users), daily_users=daily)  # fmt: skip
    return {**plan, "metric_key": primary["key"], "lift": lift, "elapsed_days": elapsed}


def model_file(root: Path, model: str, name: str) -> dict[str, Any] | None:
    """A JSON file of a model's current version (``models/<model>/CURRENT``)."""
    folder = root / "models" / model
    current = folder / "CURRENT"
    if not current.exists():
        return None
    path = folder / current.read_text().strip() / name
    if not path.exists():
        return None
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def bandit_report(state: AppState, spec: Any, policy: Any, cache: Cache) -> dict[str, Any]:
    """The report of one bandit (what ``GET /v1/admin/bandits/{key}/report`` answers)."""

    def compute() -> dict[str, Any]:
        with reader(state.warehouse) as view:
            return report_for(view, spec, policy)

    result: dict[str, Any] = cache.get(f"bandit:{spec.key}:{spec.fingerprint}", compute)
    return result
