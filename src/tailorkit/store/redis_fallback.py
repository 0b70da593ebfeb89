"""Redis clients for tailorkit, and shared state in Redis that never fails a request.

:func:`connect` is the one way tailorkit builds a Redis client: short
connect and socket timeouts (``redis.timeout_ms``, ``redis.connect_timeout_ms``
in ``tailorkit.yaml``) and no retry of a timed-out call, so a hung Redis (a
stopped process, a lost network) costs a request one timeout at most,
never a stall.

Profiles, rate-limit buckets, minimum dwell, frequency caps, bandit
statistics and opt-outs are shared by server replicas through Redis when it
is configured. Redis being down must not fail (or slow) the page, so callers
ask a :class:`Fallback` whether to try Redis. The first failed call marks
that Redis server down for every component using it (one warning in the log),
and from then on callers use their in-process state without touching Redis
(counted in ``tailorkit_redis_fallbacks_total{component}``; failed calls in
``tailorkit_redis_failures_total{component}``). A background thread pings
the server every ``redis.retry_after_seconds`` and marks it up again when it
answers (one info line).

>>> breaker = Fallback("doc", connect("redis://127.0.0.1:1/0", RedisOptions(retry_after=60.0)))
>>> breaker.available()
True
>>> breaker.failed(ConnectionError("down"))
>>> breaker.available(), breaker.guard(lambda: "from redis", lambda: "in process")
(False, 'in process')
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tailorkit import metrics

__all__ = ["Fallback", "Listener", "RedisOptions", "connect"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RedisOptions:
    """Timeouts of tailorkit's Redis clients (``redis`` in ``tailorkit.yaml``), in seconds.

    A loopback or same-zone Redis answers in well under a millisecond, so
    100 ms means "hung", not "busy".
    """

    timeout: float = 0.1
    connect_timeout: float = 0.1
    retry_after: float = 5.0  # how often a server marked down is pinged


def connect(url: str, options: RedisOptions | None = None) -> Any:
    """A ``redis.Redis`` client for ``url`` with short timeouts (nothing is sent yet).

    A call that times out is not retried (the default client retries ten
    times with backoff: seconds on a hung server); a broken connection (say
    Redis restarted) is retried once on a fresh one.
    """
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options = options or RedisOptions()
    client = redis.Redis.from_url(
        url,
        socket_timeout=options.timeout,
        socket_connect_timeout=options.connect_timeout,
        retry=Retry(NoBackoff(), 1, (redis.ConnectionError,)),
    )
    _health(client).retry_after = options.retry_after
    return client


class _Health:
    """Whether one Redis server (host and port) is usable, shared by every component."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.retry_after = RedisOptions().retry_after
        self.down_since: float | None = None
        self.failures = 0
        self._lock = threading.Lock()

    def down(self, component: str, exc: BaseException, client: Any) -> None:
        with self._lock:
            self.failures += 1
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
            self.failures = 1
        log.warning(
            "redis %s unreachable (%s: %s, noticed by %s); shared state falls back to "
            "process memory, checking again every %.1f s",
            self.target, type(exc).__name__, exc, component, self.retry_after,
        )  # fmt: skip
        probe = threading.Thread(target=self._probe, args=(client,), daemon=True)
        probe.name = f"tk-redis-probe-{self.target}"
        probe.start()

    def _probe(self, client: Any) -> None:
        """Ping until the server answers, then mark it up (the only way back up)."""
        while True:
            time.sleep(self.retry_after)
            try:
                client.ping()
            except Exception:  # still down: any Redis or network error
                continue
            with self._lock:
                since, failures = self.down_since or time.monotonic(), self.failures
                self.down_since = None
            log.info(
                "redis %s reachable again after %.1f s (%d failed calls meanwhile)",
                self.target, time.monotonic() - since, failures,
            )  # fmt: skip
            return


_HEALTH: dict[str, _Health] = {}
_HEALTH_LOCK = threading.Lock()


def _health(client: Any) -> _Health:
    kwargs = client.connection_pool.connection_kwargs
    target = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    with _HEALTH_LOCK:
        health = _HEALTH.get(target)
        if health is None:
            health = _HEALTH[target] = _Health(target)
        return health


class Fallback:
    """Whether ``component`` should use Redis (through ``client``) now: not while it is down."""

    def __init__(self, component: str, client: Any) -> None:
        self.component = component
        self.client = client
        self._health = _health(client)
        self._fallbacks = metrics.REDIS_FALLBACKS.labels(component)
        self._failures = metrics.REDIS_FAILURES.labels(component)

    @property
    def pause(self) -> float:
        """Seconds between checks of a server marked down."""
        return self._health.retry_after

    def available(self) -> bool:
        """False while the server is marked down (no call would be sent)."""
        return self._health.down_since is None

    def failed(self, exc: BaseException) -> None:
        """Note a failed call: count it and mark the server down (logged once per outage)."""
        self._failures.inc()
        self._fallbacks.inc()
        self._health.down(self.component, exc, self.client)

    def skipped(self) -> None:
        """Count a call answered from process memory while Redis is down."""
        self._fallbacks.inc()

    def guard(self, call: Callable[[], T], fallback: Callable[[], T]) -> T:
        """``call()``, or ``fallback()`` if Redis is down or the call fails with a Redis error.

        Other errors propagate: they are bugs, not outages.
        """
        import redis

        if not self.available():
            self.skipped()
            return fallback()
        try:
            return call()
        except (redis.RedisError, OSError) as exc:
            self.failed(exc)
            return fallback()


class Listener:
    """A thread following the channel ``channel`` of ``fallback.client``.

    After each (re)connection it subscribes, then calls ``catch_up()`` (what
    was missed while disconnected: nothing published in between is lost), then
    ``handle(data)`` for each message. Redis down or a bad message: a pause of
    ``fallback.pause``, then it starts over.
    """

    def __init__(
        self,
        fallback: Fallback,
        channel: str,
        catch_up: Callable[[], None],
        handle: Callable[[bytes], None],
        name: str,
    ) -> None:
        self.fallback = fallback
        self.channel = channel
        self.catch_up = catch_up
        self.handle = handle
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread (within about half a second)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pubsub = self.fallback.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                self.catch_up()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        self.handle(message["data"])
                pubsub.close()
            except Exception as exc:  # Redis down or a bad message: retry after a pause
                self.fallback.failed(exc)
                self._stop.wait(self.fallback.pause)
