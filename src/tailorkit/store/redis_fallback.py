"""Shared state in Redis that never fails a request: fall back to process memory.

Rate-limit buckets, minimum dwell and frequency caps are shared by server
replicas through Redis when ``redis.url`` is configured. Redis being down must
not fail (or slow) the page, so callers ask :class:`Fallback` whether to try
Redis; after a failure it answers no for ``pause`` seconds, during which
callers use their in-process state (counted in
``tailorkit_redis_fallbacks_total{component}``). Clients get short timeouts.

>>> breaker = Fallback("doc", pause=60.0)
>>> breaker.available()
True
>>> breaker.failed(ConnectionError("down"))
>>> breaker.available()
False
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tailorkit import metrics

__all__ = ["Fallback", "connect"]

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 0.1  # a loopback or same-zone Redis answers in well under a millisecond


def connect(url: str) -> Any:
    """A ``redis.Redis`` client for ``url`` with short timeouts (nothing is sent yet)."""
    import redis

    return redis.Redis.from_url(
        url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
    )


class Fallback:
    """Whether to use Redis now: not for ``pause`` seconds after a failure."""

    def __init__(self, component: str, pause: float = 5.0) -> None:
        self.component = component
        self.pause = pause
        self._until = 0.0
        self._counter = metrics.REDIS_FALLBACKS.labels(component)

    def available(self) -> bool:
        """True unless a failure happened less than ``pause`` seconds ago."""
        return time.monotonic() >= self._until

    def failed(self, exc: BaseException) -> None:
        """Note a failed call: count it, log it (once per pause), stop trying for a while."""
        self._counter.inc()
        if self.available():
            log.warning(
                "redis unavailable for %s (%s); using in-process state for %.0f s",
                self.component, exc, self.pause,
            )  # fmt: skip
        self._until = time.monotonic() + self.pause

    def skipped(self) -> None:
        """Count a call answered from process memory while Redis is paused."""
        self._counter.inc()
