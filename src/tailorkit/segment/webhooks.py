"""Webhooks on membership changes: asynchronous, retried, signed, dead-lettered.

:meth:`WebhookDispatcher.submit` only appends to an in-memory schedule and
returns; worker threads deliver. A slow or failing receiver therefore never
slows ingestion: at worst the schedule fills up (``max_pending``) and further
deliveries go straight to the dead-letter list.

Delivery: ``POST`` of the JSON payload with

* ``X-Tailorkit-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``
  (when the webhook has a secret; check it with :func:`verify_signature`),
* ``X-Tailorkit-Delivery``: the payload's ``event_id`` (an idempotency key:
  retries resend the same id).

A 2xx answer is success. Network errors, timeouts, 408, 429 and 5xx are
retried with exponential backoff (``base_delay * 2**(attempt-1)``, capped at
``max_delay``, ±20 % jitter) up to the webhook's ``max_attempts``; other
answers, and exhausted retries, go to the dead-letter list (and to a JSON
lines file when ``dead_letter_path`` is set).

>>> header = sign(b'{"a":1}', "s3cret", timestamp=1700000000)
>>> verify_signature(b'{"a":1}', "s3cret", header, now=1700000010)
True
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from tailorkit.segment.definitions import Webhook

log = logging.getLogger(__name__)
RETRY_STATUSES = frozenset({408, 429})


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The signature header value for ``body``."""
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def verify_signature(
    body: bytes, secret: str, header: str, tolerance: float = 300.0, now: float | None = None
) -> bool:
    """Check a signature header (for receivers); rejects stale timestamps (replays)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        stamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - stamp) > tolerance:
        return False
    expected = sign(body, secret, stamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    hook: Webhook = field(compare=False)
    body: bytes = field(compare=False)
    delivery_id: str = field(compare=False)
    attempts: int = field(default=0, compare=False)


@dataclass
class WebhookStats:
    """Counters for ``/metrics`` and tests."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0


class WebhookDispatcher:
    """Deliver payloads in background threads with retries and a dead-letter list.

    >>> from tailorkit.segment.definitions import Webhook
    >>> hooks = WebhookDispatcher(workers=1, max_pending=1)
    >>> hooks.submit(Webhook("http://127.0.0.1:9/"), {"event_id": "e1"})  # not started: waits
    True
    >>> hooks.submit(Webhook("http://127.0.0.1:9/"), {"event_id": "e2"})  # full: dead letter
    False
    >>> hooks.dead_letters[0]["delivery_id"], hooks.dead_letters[0]["error"]
    ('e2', 'too many pending deliveries')
    """

    def __init__(
        self,
        workers: int = 4,
        max_pending: int = 10_000,
        base_delay: float = 0.5,
        max_delay: float = 300.0,
        dead_letter_path: Path | None = None,
        max_dead_letters: int = 10_000,
    ) -> None:
        self.workers = workers
        self.max_pending = max_pending
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.dead_letter_path = dead_letter_path
        self.dead_letters: deque[dict[str, Any]] = deque(maxlen=max_dead_letters)
        self.stats = WebhookStats()
        self._heap: list[_Job] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._busy = 0
        self._last_warning = -1e9
        self._client = httpx.Client(follow_redirects=False)

    def start(self) -> None:
        """Start the worker threads (idempotent)."""
        with self._cond:
            if self._threads:
                return
            self._stopping = False
            for i in range(self.workers):
                thread = threading.Thread(target=self._work, name=f"tk-webhook-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers; pending deliveries stay in memory (not delivered)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def submit(self, hook: Webhook, payload: dict[str, Any]) -> bool:
        """Schedule a delivery now; never blocks. ``False``: dead-lettered (schedule full)."""
        body = orjson.dumps(payload)
        job = _Job(time.monotonic(), next(self._seq), hook, body, str(payload.get("event_id", "")))
        with self._cond:
            if len(self._heap) >= self.max_pending:
                self._dead(job, "too many pending deliveries")
                return False
            heapq.heappush(self._heap, job)
            self._cond.notify()
        return True

    def pending(self) -> int:
        """Deliveries waiting or in flight."""
        with self._cond:
            return len(self._heap) + self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending() == 0:
                return True
            time.sleep(0.01)
        return False

    def _next(self) -> _Job | None:
        with self._cond:
            while not self._stopping:
                if self._heap:
                    wait = self._heap[0].due - time.monotonic()
                    if wait <= 0:
                        self._busy += 1
                        return heapq.heappop(self._heap)
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                self._deliver(job)
            finally:
                with self._cond:
                    self._busy -= 1

    def _deliver(self, job: _Job) -> None:
        job.attempts += 1
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "tailorkit-webhooks",
            "X-Tailorkit-Delivery": job.delivery_id,
        }
        if job.hook.secret:
            headers["X-Tailorkit-Signature"] = sign(job.body, job.hook.secret)
        try:
            answer = self._client.post(
                job.hook.url, content=job.body, headers=headers, timeout=job.hook.timeout_seconds
            )
        except httpx.HTTPError as exc:
            self._failed(job, f"{type(exc).__name__}: {exc}", retry=True)
            return
        if 200 <= answer.status_code < 300:
            self.stats.delivered += 1
            return
        status = answer.status_code
        self._failed(job, f"HTTP {status}", retry=status >= 500 or status in RETRY_STATUSES)

    def _failed(self, job: _Job, error: str, retry: bool) -> None:
        if not retry or job.attempts >= job.hook.max_attempts:
            self._dead(job, error)
            return
        delay = min(self.max_delay, self.base_delay * 2 ** (job.attempts - 1))
        job.due = time.monotonic() + delay * random.uniform(0.8, 1.2)
        self.stats.retried += 1
        with self._cond:
            heapq.heappush(self._heap, job)
            self._cond.notify()

    def _dead(self, job: _Job, error: str) -> None:
        entry = {
            "url": job.hook.url,
            "delivery_id": job.delivery_id,
            "attempts": job.attempts,
            "error": error,
            "at": time.time(),
            "payload": orjson.loads(job.body),
        }
        self.stats.dead += 1
        self.dead_letters.append(entry)
        now = time.monotonic()
        if now - self._last_warning > 10:  # a dead receiver must not flood the log
            self._last_warning = now
            log.warning(
                "webhook to %s dead-lettered after %d attempts: %s (%d dead letters so far)",
                job.hook.url,
                job.attempts,
                error,
                self.stats.dead,
            )
        if self.dead_letter_path is not None:
            with self.dead_letter_path.open("ab") as out:
                out.write(orjson.dumps(entry) + b"\n")
