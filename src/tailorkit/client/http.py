"""A Python client for server-side apps: ``track``, ``identify``, ``decide``.

Events are queued and sent in batches from a background thread (every
``flush_interval`` seconds or ``batch_size`` events), retried with
exponential backoff and jitter on network errors, 429 and 5xx. When the
server stays unreachable the client falls back locally:

* events stay queued (up to ``max_queue``; past that they are appended as
  NDJSON to ``spool_path`` when one is given, ready for ``tailorkit ingest``,
  else the oldest are dropped and counted);
* ``decide`` answers the default content of each placement, from the last
  ``/v1/decide/defaults`` it fetched or from ``fallback_defaults``, with
  ``source: "default"`` and ``reason: "server unreachable"``.

>>> client = Client("http://127.0.0.1:9", "tk_ingest_x", timeout=0.2, max_retries=0,
...                 fallback_defaults={"hero": "<h1>Welcome</h1>"}, start_thread=False)
>>> client.decide(user_id="u1")["placements"]["hero"]["reason"]
'server unreachable'
>>> client.track("page_view", user_id="u1")
>>> client.pending
1
>>> client.close()
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

__all__ = ["Client"]

log = logging.getLogger(__name__)
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class Client:
    """HTTP client of a tailorkit server (thread-safe)."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        timeout: float = 2.0,
        decide_timeout: float = 0.25,
        max_retries: int = 3,
        backoff: float = 0.2,
        max_queue: int = 10_000,
        spool_path: str | Path | None = None,
        fallback_defaults: Mapping[str, str] | None = None,
        start_thread: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.decide_timeout = decide_timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_queue = max_queue
        self.spool_path = Path(spool_path) if spool_path else None
        self.dropped = 0
        self._defaults: dict[str, dict[str, Any]] = {
            k: {"content": v, "variant": "default", "source": "default"}
            for k, v in (fallback_defaults or {}).items()
        }
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {key}"},
            transport=transport,
        )
        self._queue: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if start_thread:
            self._thread = threading.Thread(target=self._run, name="tailorkit-client", daemon=True)
            self._thread.start()

    # -- events -----------------------------------------------------------------------

    def track(
        self,
        event_type: str,
        *,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        properties: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        timestamp: datetime | None = None,
    ) -> None:
        """Queue one event (sent in the background)."""
        if user_id is None and anonymous_id is None:
            raise ValueError("track needs a user_id or an anonymous_id")
        event: dict[str, Any] = {
            "event_id": str(uuid.uuid4()),
            "type": event_type,
            "timestamp": (timestamp or datetime.now(UTC)).isoformat(),
            "properties": dict(properties or {}),
            "context": dict(context or {}),
        }
        if user_id is not None:
            event["user_id"] = user_id
        if anonymous_id is not None:
            event["anonymous_id"] = anonymous_id
        self._enqueue(event)

    def identify(
        self,
        user_id: str,
        traits: Mapping[str, Any] | None = None,
        *,
        anonymous_id: str | None = None,
    ) -> None:
        """Queue an ``identify`` event: traits, and the merge of ``anonymous_id`` into the user."""
        self.track("identify", user_id=user_id, anonymous_id=anonymous_id, properties=traits)

    def _enqueue(self, event: dict[str, Any]) -> None:
        with self._lock:
            if len(self._queue) >= self.max_queue:
                self._overflow(self._queue.popleft())
            self._queue.append(event)
            full = len(self._queue) >= self.batch_size
        if full:
            self._wake.set()

    def _overflow(self, event: dict[str, Any]) -> None:
        if self.spool_path is not None:
            with self.spool_path.open("ab") as spool:
                spool.write(orjson.dumps(event) + b"\n")
        else:
            self.dropped += 1

    @property
    def pending(self) -> int:
        """Events queued and not yet acknowledged by the server."""
        return len(self._queue)

    def flush(self) -> bool:
        """Send every queued event now; False when the server could not be reached."""
        with self._send_lock:
            while True:
                with self._lock:
                    batch = [self._queue[i] for i in range(min(self.batch_size, len(self._queue)))]
                if not batch:
                    return True
                if not self._send(batch):
                    return False
                with self._lock:
                    for _ in batch:
                        self._queue.popleft()

    def _send(self, batch: list[dict[str, Any]]) -> bool:
        sent_at = datetime.now(UTC).isoformat()
        body = orjson.dumps([{**e, "sent_at": sent_at} for e in batch])
        response = self._request("POST", "/v1/events", body)
        if response is None:
            return False
        if response.status_code >= 400 and response.status_code != 422:
            # 4xx other than per-event rejections (bad key, too large) will not get better.
            log.error("events refused (%d): %s", response.status_code, response.text[:200])
        return True

    def _request(
        self, method: str, path: str, body: bytes | None, timeout: float | None = None
    ) -> httpx.Response | None:
        """One request with retries (backoff with jitter); None when the server is unreachable."""
        for attempt in range(self.max_retries + 1):
            try:
                response = self._http.request(
                    method,
                    path,
                    content=body,
                    headers={"Content-Type": "application/json"},
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
                if response.status_code not in RETRY_STATUSES:
                    return response
                delay = _retry_after(response) or self._delay(attempt)
            except httpx.HTTPError:
                delay = self._delay(attempt)
            if attempt < self.max_retries:
                self._stop.wait(delay)  # a closing client stops waiting at once
        return None

    def _delay(self, attempt: int) -> float:
        return self.backoff * (2**attempt) * (0.5 + random.random())

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._queue:
                self.flush()

    def close(self) -> None:
        """Stop the background thread after a last flush."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._queue:
            self.flush()
        self._http.close()

    # -- decisions --------------------------------------------------------------------

    def decide(
        self,
        *,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        placements: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Decisions for one user; defaults (never an exception) when the server is unreachable."""
        doc: dict[str, Any] = {
            "user_id": user_id,
            "anonymous_id": anonymous_id,
            "attributes": dict(attributes or {}),
            "context": dict(context or {}),
        }
        if placements is not None:
            doc["placements"] = list(placements)
        response = self._request("POST", "/v1/decide", orjson.dumps(doc), self.decide_timeout)
        if response is not None and response.status_code == 200:
            answer: dict[str, Any] = response.json()
            return answer
        return self._fallback(user_id, anonymous_id, placements)

    def refresh_defaults(self) -> bool:
        """Fetch every placement's default content (the local fallback)."""
        response = self._request("GET", "/v1/decide/defaults", None)
        if response is None or response.status_code != 200:
            return False
        self._defaults = dict(response.json().get("placements") or {})
        return True

    def _fallback(
        self, user_id: str | None, anonymous_id: str | None, placements: Sequence[str] | None
    ) -> dict[str, Any]:
        keys = list(placements) if placements is not None else list(self._defaults)
        out = {
            k: {**self._defaults[k], "reason": "server unreachable"}
            for k in keys
            if k in self._defaults
        }
        return {
            "user_id": user_id,
            "anonymous_id": anonymous_id,
            "segments": [],
            "flags": {},
            "experiments": [],
            "holdout": False,
            "placements": out,
        }


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return min(30.0, float(value))
    except ValueError:
        return None
