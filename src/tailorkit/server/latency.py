"""Keeping request latency low and measured: the timing middleware and GC tuning.

:class:`RequestTiming` measures latency per route as a plain ASGI middleware.
Starlette's ``@app.middleware("http")`` (``BaseHTTPMiddleware``) runs the rest
of the app in a separate task and streams the response through memory
channels: on the decision path that cost more than the decision itself.
This one only wraps ``send`` to see the status code.

:func:`tune_runtime` is called once the server has started. A full
collection of the cyclic garbage collector walks every live object while
holding the GIL: with a server's start-up heap (libraries, definitions,
profiles) that took 250-570 ms on the benchmark machine, a stall of every
request in flight. Objects alive at start-up are moved out of the
collector's sight (:func:`gc.freeze`) and young collections run less often;
so are the online profiles the server rebuilds in the background after it
started (:func:`freeze_heap`, at the end of the replay).
Background threads (exposure log, writer, bandit sweeps) hold the GIL for
up to the switch interval each time the event loop wants it back: 5 ms by
default, 1 ms here. Each collection's pause is observed in
``tailorkit_gc_pause_seconds{generation}``.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tailorkit import metrics


class RequestTiming:
    """Observe ``tailorkit_request_seconds{route, method, status}`` for every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._observers: dict[tuple[str, str, int], Callable[[float], None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            # the router put the matched route into the (shared) scope
            path = getattr(scope.get("route"), "path", "unmatched")
            self._observer(path, scope["method"], status)(time.perf_counter() - start)

    def _observer(self, path: str, method: str, status: int) -> Callable[[float], None]:
        key = (path, method, status)
        observe = self._observers.get(key)
        if observe is None:  # label lookups are not free: once per route, method and status
            observe = self._observers[key] = metrics.REQUEST_SECONDS.labels(
                path, method, str(status)
            ).observe
        return observe


#: Allocations between young collections (CPython's default is 700): a decision
#: allocates a few hundred containers, so the default collects every few requests.
#: Much higher, each collection scans more live young objects at once (queued
#: exposure events): at 1,500 decides/s, 20,000 gave young pauses of ~10 ms and
#: middle ones of ~50 ms, 5,000 ~2 ms and ~12 ms for the same total, 2,000 also
#: full collections of ~60 ms.
GEN0_THRESHOLD = 5_000
#: Seconds a thread may hold the GIL while another waits for it (default 0.005).
SWITCH_INTERVAL = 0.001


def tune_runtime() -> None:
    """Freeze the start-up heap, collect young objects less often, switch threads sooner.

    Call once, when the server has started (it affects the whole process).

    >>> tune_runtime(); gc.get_threshold()[0] == GEN0_THRESHOLD and gc.get_freeze_count() > 0
    True
    >>> sys.getswitchinterval()
    0.001
    """
    freeze_heap()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
    sys.setswitchinterval(SWITCH_INTERVAL)
    if _time_collection not in gc.callbacks:
        gc.callbacks.append(_time_collection)


def freeze_heap() -> None:
    """Collect once, then take every object alive now out of the collector's sight.

    For what lives as long as the server: its start-up heap, and the online
    profiles rebuilt in the background after it started. Full collections
    otherwise scan them all, stalling every request: at the demo's size
    (20,000 users, 30 days, ~800k objects) each took 0.3–0.4 s. Frozen objects
    are still freed when their last reference goes.

    >>> freeze_heap(); gc.get_freeze_count() > 0
    True
    """
    gc.collect()
    gc.freeze()


_pauses = [metrics.GC_PAUSE_SECONDS.labels(str(g)).observe for g in range(3)]
_collection_started = 0.0


def _time_collection(phase: str, info: dict[str, Any]) -> None:
    # collections hold the GIL from start to stop: one global start time is enough
    global _collection_started
    if phase == "start":
        _collection_started = time.perf_counter()
    else:
        _pauses[info["generation"]](time.perf_counter() - _collection_started)
