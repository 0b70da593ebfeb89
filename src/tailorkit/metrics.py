"""Prometheus metrics shared by the collector, the decision path and the server."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS = Counter("tailorkit_events_total", "Events received, by outcome", ["source", "outcome"])
INGEST_BATCH_SECONDS = Histogram(
    "tailorkit_ingest_commit_seconds",
    "Time to validate and durably store one group commit",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
REQUEST_SECONDS = Histogram(
    "tailorkit_request_seconds",
    "HTTP request latency by route",
    ["route", "method", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
_PAUSE_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
GC_PAUSE_SECONDS = Histogram(
    "tailorkit_gc_pause_seconds",
    "Cyclic garbage collections (every thread waits meanwhile), by generation",
    ["generation"],
    buckets=_PAUSE_BUCKETS,
)
EVENT_LOOP_LAG_SECONDS = Histogram(
    "tailorkit_event_loop_lag_seconds",
    "How late the server's event loop ran a timer (sampled every 10 ms)",
    buckets=_PAUSE_BUCKETS,
)
ERRORS = Counter("tailorkit_errors_total", "Internal errors by component", ["component"])
BUS_PUBLISHED = Counter(
    "tailorkit_bus_published_total", "Validated batches appended to the event bus stream"
)
BUS_SPOOLED = Counter(
    "tailorkit_bus_spooled_total", "Validated batches written to the local spool (Redis down)"
)
BUS_EVENTS_STORED = Counter(
    "tailorkit_bus_events_stored_total", "Events stored by this worker (duplicates excluded)"
)
DECISIONS = Counter(
    "tailorkit_decisions_total",
    "Placement decisions by source (rule, experiment, bandit, recommendation, default)",
    ["source"],
)
DECIDE_FALLBACKS = Counter(
    "tailorkit_decide_fallbacks_total",
    "Placements answered with their default because of a problem (deadline, error, render)",
    ["reason"],
)
DEFINITION_RELOADS = Counter(
    "tailorkit_definition_reloads_total",
    "Reloads of definition files by outcome (applied, refused)",
    ["file", "outcome"],
)
EXPOSURES_LOGGED = Counter(
    "tailorkit_exposures_logged_total",
    "Decision-log (exposure) events handed to the collector, by outcome (queued, dropped, failed)",
    ["outcome"],
)
RATE_LIMITED = Counter(
    "tailorkit_rate_limited_total",
    "Requests refused with 429 because their API key exceeded its rate, by key scope",
    ["scope"],
)
REDIS_FALLBACKS = Counter(
    "tailorkit_redis_fallbacks_total",
    "Calls to shared Redis state that failed and used in-process state instead, by component",
    ["component"],
)
REDIS_FAILURES = Counter(
    "tailorkit_redis_failures_total",
    "Calls to shared Redis state that failed (timeout, refused, reset), by component",
    ["component"],
)
