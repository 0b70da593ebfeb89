"""Bandit statistics shared by server replicas through Redis.

Each bandit is one Redis hash, ``<prefix>bandit:<key>:<fingerprint>``, whose
fields are the policy's additive sufficient statistics (``Policy.statistics``):
per segment × arm the observation count and reward sum (``<segment>|<arm>|n``,
``…|r``), or per arm a linear bandit's Gram matrix and ``b``. A redefined
bandit (new fingerprint) starts a new hash, as it starts a new local policy.

:meth:`RedisBanditStats.exchange` runs one Lua script, so it is atomic: it
adds a replica's batch of deltas with ``HINCRBYFLOAT`` and returns the hash,
the totals every replica learned. The first replica to reach an empty hash
seeds it with what it learned locally (e.g. from the state file), so moving
from the embedded default to Redis loses nothing. Redis being unreachable is
never an error for the caller: ``exchange`` answers ``None`` and the runtime
keeps learning locally and sends its deltas later.

>>> from tailorkit.store.redis_fallback import connect
>>> stats = RedisBanditStats(connect("redis://127.0.0.1:6379/0"), "doctest-bandit-state:")
>>> learned = {"0|n": 3.0, "0|r": 1.0}  # this replica's statistics, the batch included
>>> stats.exchange("hero:f1", {"0|n": 1.0}, lambda: learned)  # an empty hash: seeded
{'0|n': 3.0, '0|r': 1.0}
>>> stats.exchange("hero:f1", {"0|n": 2.0, "0|r": 2.0}, lambda: learned)
{'0|n': 5.0, '0|r': 3.0}
>>> stats.clear()
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from tailorkit.store.redis_fallback import Fallback, RedisOptions, connect

__all__ = ["SEEDED", "RedisBanditStats", "shared_stats"]

log = logging.getLogger(__name__)
SEEDED = "__seeded"

# KEYS[1] the hash; ARGV[1] number of seed pairs, then seed pairs, then delta pairs.
# An empty hash without seeds answers nil (the caller resends with its local
# statistics); an empty hash with seeds takes the seeds and *not* the deltas,
# because the seeds are the caller's statistics, which already hold them.
_EXCHANGE = """
local key = KEYS[1]
local nseed = tonumber(ARGV[1])
if redis.call('EXISTS', key) == 0 then
  if nseed == 0 then return false end
  redis.call('HSET', key, '__seeded', '1')
  for i = 2, 2 * nseed, 2 do redis.call('HINCRBYFLOAT', key, ARGV[i], ARGV[i + 1]) end
else
  for i = 2 + 2 * nseed, #ARGV, 2 do redis.call('HINCRBYFLOAT', key, ARGV[i], ARGV[i + 1]) end
end
return redis.call('HGETALL', key)
"""


def shared_stats(settings: Any) -> RedisBanditStats | None:
    """The replicas' shared statistics for project ``settings`` (``redis.url``), if configured."""
    if not settings.redis_url:
        return None
    return RedisBanditStats.from_url(
        settings.redis_url, settings.redis_prefix, settings.redis_options
    )


def _pairs(values: Mapping[str, float]) -> list[Any]:
    out: list[Any] = []
    for name, value in values.items():
        if value:
            out += [name, repr(float(value))]
    return out


class RedisBanditStats:
    """Sufficient statistics of every bandit in Redis hashes under ``prefix``."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix
        self.fallback = Fallback("bandits", client)
        self._script = client.register_script(_EXCHANGE)

    @classmethod
    def from_url(
        cls, url: str, prefix: str, options: RedisOptions | None = None
    ) -> RedisBanditStats:
        """Connect to ``redis://host:port/db`` (short timeouts; nothing is sent yet)."""
        return cls(connect(url, options), prefix)

    def key(self, name: str) -> str:
        """The Redis key of bandit ``name`` (``<bandit key>:<fingerprint>``)."""
        return f"{self.prefix}bandit:{name}"

    def exchange(
        self,
        name: str,
        deltas: Mapping[str, float],
        local: Callable[[], Mapping[str, float]],
    ) -> dict[str, float] | None:
        """Add ``deltas`` and return the shared totals; ``None`` if Redis is unreachable.

        ``local()`` gives this replica's statistics, used only to seed an empty hash.
        """
        if not self.fallback.available():
            self.fallback.skipped()
            return None
        import redis

        key = self.key(name)
        delta_args = _pairs(deltas)
        try:
            raw = self._script(keys=[key], args=[0, *delta_args])
            if raw is None:
                seeds = _pairs(local())
                seed_args = seeds or [SEEDED, "0"]
                raw = self._script(keys=[key], args=[len(seed_args) // 2, *seed_args])
        except (redis.RedisError, OSError) as exc:
            self.fallback.failed(exc)
            return None
        return _totals(raw)

    def clear(self) -> None:
        """Delete every hash under the prefix (tests, resets)."""
        keys = list(self.redis.scan_iter(match=f"{self.prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            self.redis.delete(*keys[start : start + 500])


def _totals(raw: list[Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for i in range(0, len(raw), 2):
        name = raw[i].decode() if isinstance(raw[i], bytes) else str(raw[i])
        if name != SEEDED:
            out[name] = float(raw[i + 1])
    return out
