"""Admission control: shed load at once instead of queueing it without bound.

Requests are sorted into classes by path: ``decide`` (``/v1/decide``,
``/ofrep/``, ``/api/features/``), ``ingest`` (``/v1/events``,
``/v1/segment/``, ``/v1/consent``) and ``admin`` (``/v1/admin/``); health,
metrics, ``/sdk.js``, the dashboard and the OpenAPI document are not limited.
A request is refused before any work when

* its class already has ``admission.<class>`` requests in flight, or
* the event loop is late by more than ``admission.max_lag_ms`` (a timer is
  that much overdue) and was at its last sample too: every request then
  waits that long before it even starts (the backlog sits in socket
  buffers), so taking more only makes every answer later. Two late readings
  in a row, so that one stall of a CPU busy elsewhere does not shed.

A refused request costs a fraction of a millisecond and is answered with
``Retry-After: 1``: ``503 {"detail": ...}`` for ingest, admin and OFREP, so
clients retry with backoff (the Python client and the browser snippet do).
``POST /v1/decide`` keeps its contract (the page never breaks): 200 with each
placement's default content, ``source: "default"`` and ``reason:
"overloaded"``. Refusals are counted in ``tailorkit_shed_total{class,reason}``.

Memory stays bounded: at most the in-flight limits of requests are held
(an ingest request up to ``limits.max_request_bytes``), whatever is offered.

>>> request_class("/v1/decide"), request_class("/v1/admin/segments"), request_class("/healthz")
('decide', 'admin', None)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from tailorkit.metrics import EVENT_LOOP_LAG_SECONDS as LAG
from tailorkit.project.loader import AdmissionSettings

__all__ = ["Admission", "default_answer", "request_class"]

SHED = Counter("tailorkit_shed_total", "Requests refused by admission control", ["class", "reason"])
#: how often the event-loop lag is sampled
LAG_SAMPLE_SECONDS = 0.01
_CLASSES = (
    ("/v1/decide", "decide"),
    ("/ofrep/", "decide"),
    ("/api/features/", "decide"),
    ("/v1/events", "ingest"),
    ("/v1/segment/", "ingest"),
    ("/v1/consent", "ingest"),
    ("/v1/admin/", "admin"),
)
_RETRY = [(b"retry-after", b"1"), (b"content-type", b"application/json")]


def request_class(path: str) -> str | None:
    """The admission class of a path, or ``None`` when it is never limited."""
    for prefix, name in _CLASSES:
        if path.startswith(prefix):
            return name
    return None


class Admission:
    """ASGI middleware: bounded in-flight requests per class, and shedding on event-loop lag.

    Runs in the server's event loop, so the counters need no lock.
    """

    def __init__(self, app: ASGIApp, settings: AdmissionSettings) -> None:
        self.app = app
        self.limits = {"decide": settings.decide, "ingest": settings.ingest}
        self.limits["admin"] = settings.admin
        self.max_lag = settings.max_lag_ms / 1000.0
        self.in_flight = dict.fromkeys(self.limits, 0)
        self._due = time.perf_counter()
        self._last_lag = 0.0
        self._watcher: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit, or answer at once."""
        kind = request_class(scope["path"]) if scope["type"] == "http" else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        if self._watcher is None and self.max_lag > 0:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_lag())
        reason = None
        if self.in_flight[kind] >= self.limits[kind]:
            reason = "in_flight"
        elif self.max_lag > 0 and self._late():
            reason = "lag"
        if reason is not None:
            SHED.labels(kind, reason).inc()
            await self._shed(scope, send, kind)
            return
        self.in_flight[kind] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight[kind] -= 1

    def _late(self) -> bool:
        """The loop is late now (its timer is overdue) and was at the last sample too."""
        overdue = time.perf_counter() - self._due
        return overdue > self.max_lag and self._last_lag > self.max_lag

    async def _watch_lag(self) -> None:
        """Sample how late the loop runs a timer: how long a request arriving now waits
        (the backlog sits in socket buffers, invisible to the loop until read)."""
        while True:
            self._due = time.perf_counter() + LAG_SAMPLE_SECONDS
            await asyncio.sleep(LAG_SAMPLE_SECONDS)
            self._last_lag = max(0.0, time.perf_counter() - self._due)
            LAG.observe(self._last_lag)

    async def _shed(self, scope: Scope, send: Send, kind: str) -> None:
        if scope["path"] == "/v1/decide" and scope["method"] == "POST":
            status, body = 200, default_answer(scope.get("app"), "overloaded")
        else:
            status = 503
            detail = f"overloaded: too many {kind} requests in progress; retry after 1 s"
            body = orjson.dumps({"detail": detail})
        headers = [*_RETRY, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def default_answer(app: Any, reason: str) -> bytes:
    """Every placement's default content, as a decide answer (overloaded server, internal error)."""
    service = getattr(getattr(app, "state", None), "decide", None)
    placements = {} if service is None else service.engine.defaults(reason)
    answer: dict[str, Any] = {
        "user_id": None,
        "anonymous_id": None,
        "segments": [],
        "flags": {},
        "experiments": [],
        "holdout": False,
        "placements": placements,
    }
    return orjson.dumps(answer)
