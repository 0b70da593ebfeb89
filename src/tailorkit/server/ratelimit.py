"""Rate limits per API key: token buckets, in process or shared through Redis.

Each key has a bucket of ``burst`` tokens refilled at ``per_second``; a
request takes one token, and without one it is refused with 429 and a
``Retry-After`` of the seconds until the next token (rounded up). Limits come
from ``rate_limits`` in ``tailorkit.yaml`` (per scope, with per-key
overrides). Buckets are named by a hash of the key: no key is ever stored
or sent to Redis.

:class:`RateLimiter` keeps buckets in process (one server, or a limit per
replica). :class:`RedisRateLimiter` keeps them in Redis, updated by one Lua
script (atomic, with Redis's clock), so replicas share one budget; while Redis
is unreachable it falls back to its in-process buckets.

>>> from tailorkit.project.loader import Rate
>>> clock = iter([0.0, 0.0, 0.0, 0.5]).__next__
>>> limiter = RateLimiter(clock=clock)
>>> [limiter.acquire("k", Rate(2, 2)) for _ in range(3)]
[0.0, 0.0, 0.5]
>>> limiter.acquire("k", Rate(2, 2))
0.0
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

from tailorkit.project.loader import Rate, RateLimits
from tailorkit.store.redis_fallback import Fallback, RedisOptions, connect

__all__ = ["KeyLimits", "RateLimiter", "RedisRateLimiter", "make_limiter"]


class RateLimiter:
    """In-process token buckets by name (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)
        self._lock = threading.Lock()

    def acquire(self, bucket: str, rate: Rate) -> float:
        """Take a token: 0.0 when allowed, else the seconds until one is available."""
        if rate.per_second <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens, at = self._buckets.get(bucket, (rate.burst, now))
            tokens = min(rate.burst, tokens + (now - at) * rate.per_second)
            if tokens >= 1.0:
                self._buckets[bucket] = (tokens - 1.0, now)
                return 0.0
            self._buckets[bucket] = (tokens, now)
            return (1.0 - tokens) / rate.per_second


# KEYS[1] bucket; ARGV rate, burst. Returns the wait in seconds as a string
# (Lua numbers come back from Redis as truncated integers).
_TAKE = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisRateLimiter(RateLimiter):
    """Token buckets in Redis shared by every replica; in process while Redis is down.

    >>> import redis
    >>> limiter = RedisRateLimiter(redis.Redis(), "doc-limits:")
    >>> [limiter.acquire("k", Rate(0.01, 2)) > 0 for _ in range(3)]
    [False, False, True]
    >>> limiter.client.delete("doc-limits:rate:k")
    1
    """

    def __init__(self, client: Any, prefix: str = "tailorkit:") -> None:
        super().__init__()
        self.client = client
        self.prefix = prefix
        self.fallback = Fallback("rate_limit", client)
        self._take = client.register_script(_TAKE)

    def acquire(self, bucket: str, rate: Rate) -> float:
        if rate.per_second <= 0:
            return 0.0
        if self.fallback.available():
            try:
                key = f"{self.prefix}rate:{bucket}"
                return float(self._take(keys=[key], args=[rate.per_second, rate.burst]))
            except Exception as exc:  # any Redis or network error: limit in process instead
                self.fallback.failed(exc)
        else:
            self.fallback.skipped()
        return super().acquire(bucket, rate)


def make_limiter(redis_url: str, prefix: str, options: RedisOptions | None = None) -> RateLimiter:
    """The limiter the settings ask for: shared through Redis when a URL is set."""
    if redis_url:
        return RedisRateLimiter(connect(redis_url, options), prefix)
    return RateLimiter()


class KeyLimits:
    """The bucket and rate of each configured key.

    >>> limits = KeyLimits(RateLimits(), ("ingest-key-0123456789",), ())
    >>> limits.of("ingest-key-0123456789")[1].per_second
    1000
    """

    def __init__(
        self,
        limits: RateLimits,
        ingest_keys: tuple[str, ...],
        admin_keys: tuple[str, ...],
        sdk_keys: tuple[str, ...] = (),
    ) -> None:
        self._by_key: dict[str, tuple[str, Rate]] = {}
        # SDK client keys are public like ingest keys, and limited like them
        public = (*sdk_keys, *ingest_keys)
        for keys, rate in ((public, limits.ingest), (admin_keys, limits.admin)):
            for key in keys:
                bucket = hashlib.sha256(key.encode()).hexdigest()[:24]
                self._by_key[key] = (bucket, limits.keys.get(key, rate))

    def of(self, key: str) -> tuple[str, Rate]:
        """The bucket name (a hash of the key) and rate of a known key."""
        return self._by_key[key]
