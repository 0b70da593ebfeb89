"""What the decision path remembers per user: shown variants (dwell), showings
(frequency caps), logged exposures (deduplication) and consent opt-outs.

:class:`UserMemory` keeps it in process, bounded: the least recently seen
users are dropped past ``max_users``. Losing a user's entry only means a
dwell or a cap restarts, never a wrong or failed decision.
:class:`RedisUserMemory` (chosen when ``redis.url`` is set in
``tailorkit.yaml``, see :func:`make_memory`) shares it between server
replicas: the engine calls :meth:`~UserMemory.load` before a decision (one
``HGETALL`` of the user's hash) and :meth:`~UserMemory.save` after it (one
Lua script applying what changed, atomically), so a user does not flip
contents when their requests land on different replicas. If Redis is
unreachable, decisions go on with the in-process memory.
Opt-outs are different (they must hold): they are also written as consent
events to the warehouse and reloaded from it when the server starts.

>>> memory = UserMemory(max_users=2)
>>> memory.remember("u1", "hero", "vip", "rule", "vips", now=100.0)
>>> memory.held("u1", "hero", dwell=60.0, now=130.0).variant
'vip'
>>> memory.held("u1", "hero", dwell=60.0, now=170.0) is None
True
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from tailorkit.store.redis_fallback import Fallback, Listener, RedisOptions, connect

__all__ = [
    "ConsentRegistry",
    "RedisConsentRegistry",
    "RedisUserMemory",
    "Shown",
    "UserMemory",
    "make_consent",
    "make_memory",
]
log = logging.getLogger(__name__)
MAX_SHOWINGS = 64  # caps above 64 per window are not worth the memory


@dataclass(slots=True)
class Shown:
    """The variant a user was last shown in a placement, and since when."""

    variant: str
    source: str
    rule: str | None
    since: float


# A user's entry is one flat dict, like their Redis hash: ("s", placement) → the
# shown row (Shown's fields); ("c", placement, variant) → showing times;
# ("l", placement, variant) → last logged. Only tuples of strings and numbers, on
# purpose: the garbage collector stops tracking such a dict once it survived a full
# collection, so remembered users add nothing to its pauses. Dataclass instances,
# lists or nested dicts stay tracked and are scanned at every full collection
# (about 40 objects per user: a pause of about a second at 100,000 users).
_User = dict[tuple[str, ...], Any]


class UserMemory:
    """Per-user decision memory, least recently used first out (thread-safe)."""

    def __init__(self, max_users: int = 100_000) -> None:
        self.max_users = max_users
        self._users: OrderedDict[str, _User] = OrderedDict()
        self._lock = threading.Lock()

    def _user(self, person: str) -> _User:
        user = self._users.get(person)
        if user is None:
            user = self._users[person] = {}
            if len(self._users) > self.max_users:
                self._users.popitem(last=False)
        else:
            self._users.move_to_end(person)
        return user

    def held(self, person: str, placement: str, dwell: float, now: float) -> Shown | None:
        """The variant still within its minimum dwell, if any."""
        with self._lock:
            user = self._users.get(person)
            row = None if user is None else user.get(("s", placement))
        if row is None or now - row[3] >= dwell:
            return None
        return Shown(*row)

    def remember(
        self, person: str, placement: str, variant: str, source: str, rule: str | None, now: float
    ) -> None:
        """Record a showing; a change of variant restarts the dwell clock."""
        with self._lock:
            _remember(self._user(person), placement, variant, source, rule, now)

    def remember_and_log(
        self,
        person: str,
        placement: str,
        variant: str,
        source: str,
        rule: str | None,
        now: float,
        logged_as: str,
        period: float,
    ) -> bool:
        """:meth:`remember`, then :meth:`first_log` of ``logged_as`` (one lock, one lookup:
        the engine does both for most placements of every request).

        >>> m = UserMemory()
        >>> [m.remember_and_log("u", "p", "a", "rule", None, t, "a", 60.0) for t in (1.0, 2.0)]
        [True, False]
        >>> m.held("u", "p", dwell=60.0, now=3.0).since, m.capped("u", "p", "a", 2, 9.0, now=3.0)
        (1.0, True)
        """
        with self._lock:
            user = self._user(person)
            _remember(user, placement, variant, source, rule, now)
            return _first_log(user, placement, logged_as, period, now)

    def first_logs(
        self, person: str, placement: str, names: Sequence[str], period: float, now: float
    ) -> list[bool]:
        """:meth:`first_log` of each of ``names`` in turn (one lock, one lookup).

        >>> UserMemory().first_logs("u", "", ["a", "b", "a"], 60.0, now=1.0)
        [True, True, False]
        """
        with self._lock:
            user = self._user(person)
            return [_first_log(user, placement, name, period, now) for name in names]

    def capped(
        self, person: str, placement: str, variant: str, limit: int, window: float, now: float
    ) -> bool:
        """Whether the user has seen ``variant`` ``limit`` times within ``window`` seconds.

        >>> m = UserMemory()
        >>> for t in (1.0, 2.0):
        ...     m.remember("u", "p", "a", "rule", None, now=t)
        >>> m.capped("u", "p", "a", 2, 10.0, now=5.0), m.capped("u", "p", "a", 2, 10.0, now=11.5)
        (True, False)
        """
        with self._lock:
            user = self._users.get(person)
            times = None if user is None else user.get(("c", placement, variant))
            if not times:
                return False
            return sum(1 for t in times if now - t < window) >= limit

    def first_log(
        self, person: str, placement: str, variant: str, period: float, now: float
    ) -> bool:
        """True (and noted) when this decision was not logged within ``period`` seconds."""
        with self._lock:
            return _first_log(self._user(person), placement, variant, period, now)

    def forget(self, persons: Iterable[str]) -> int:
        """Drop everything remembered about ``persons``; returns how many were known."""
        with self._lock:
            return sum(self._users.pop(p, None) is not None for p in persons)

    def load(self, person: str) -> None:
        """Before a decision: bring in state shared by other replicas (none in process)."""

    def save(self, person: str, ttl: float) -> None:
        """After a decision: share what changed, kept ``ttl`` seconds (none in process)."""

    def __len__(self) -> int:
        return len(self._users)


def _remember(
    user: _User, placement: str, variant: str, source: str, rule: str | None, now: float
) -> None:
    """:meth:`UserMemory.remember` on a user's entry (the caller holds the lock)."""
    row = user.get(("s", placement))
    if row is None or row[0] != variant:
        user["s", placement] = (variant, source, rule, now)
    key = ("c", placement, variant)
    user[key] = (*user.get(key, ())[1 - MAX_SHOWINGS :], now)


def _first_log(user: _User, placement: str, variant: str, period: float, now: float) -> bool:
    """:meth:`UserMemory.first_log` on a user's entry (the caller holds the lock)."""
    key = ("l", placement, variant)
    last = user.get(key)
    if last is not None and now - last < period:
        return False
    user[key] = now
    return True


# The changes of one decision to a user's hash, applied atomically. ARGV: ttl (ms),
# then (kind, field, value) triples. "s": the shown variant ("variant\x1f..."),
# replaced only when the variant changes (the same variant keeps its dwell
# clock); "c": one more showing time, the last MAX_SHOWINGS kept; "l": last logged.
_SAVE = r"""
local key = KEYS[1]
for i = 2, #ARGV, 3 do
  local kind, f, v = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if kind == 's' then
    local cur = redis.call('HGET', key, f)
    if not cur or string.match(cur, '^[^\031]*') ~= string.match(v, '^[^\031]*') then
      redis.call('HSET', key, f, v)
    end
  elseif kind == 'c' then
    local cur = redis.call('HGET', key, f)
    if cur then
      v = cur .. ',' .. v
      local n = select(2, string.gsub(v, ',', ''))
      while n >= MAX_SHOWINGS do
        v = string.sub(v, string.find(v, ',', 1, true) + 1)
        n = n - 1
      end
    end
    redis.call('HSET', key, f, v)
  else
    redis.call('HSET', key, f, v)
  end
end
redis.call('PEXPIRE', key, ARGV[1])
return 1
""".replace("MAX_SHOWINGS", str(MAX_SHOWINGS))
_SEP = "\x1f"


class RedisUserMemory(UserMemory):
    """Decision memory shared by replicas through one Redis hash per user.

    The in-process entries of :class:`UserMemory` serve as the working copy:
    :meth:`load` replaces a user's entry with the hash, the engine reads and
    changes it as usual, and :meth:`save` applies the changes to the hash.
    While Redis is unreachable the working copy is all there is (counted in
    ``tailorkit_redis_fallbacks_total{component="decide_memory"}``).

    >>> import redis
    >>> a = RedisUserMemory(redis.Redis(), "doc-memory:")
    >>> b = RedisUserMemory(redis.Redis(), "doc-memory:")
    >>> a.load("u1"); a.remember("u1", "hero", "vip", "rule", "vips", now=100.0)
    >>> a.save("u1", ttl=3600)
    >>> b.load("u1"); b.held("u1", "hero", dwell=60.0, now=130.0).variant
    'vip'
    >>> b.forget(["u1"])
    1
    """

    def __init__(self, client: Any, prefix: str = "tailorkit:", max_users: int = 100_000) -> None:
        super().__init__(max_users)
        self.client = client
        self.prefix = prefix
        self.fallback = Fallback("decide_memory", client)
        self._save = client.register_script(_SAVE)
        self._changes: dict[str, list[str]] = {}

    def _key(self, person: str) -> str:
        return f"{self.prefix}memory:{person}"

    def load(self, person: str) -> None:
        if not self.fallback.available():
            self.fallback.skipped()
            return
        try:
            raw: dict[bytes, bytes] = self.client.hgetall(self._key(person))
        except Exception as exc:  # any Redis or network error: go on in process
            self.fallback.failed(exc)
            return
        user = _parse(raw)
        with self._lock:
            self._changes.pop(person, None)
            if raw:
                self._users[person] = user
                self._users.move_to_end(person)
                if len(self._users) > self.max_users:
                    self._users.popitem(last=False)
            else:  # unknown, expired or forgotten by another replica
                self._users.pop(person, None)

    def remember(
        self, person: str, placement: str, variant: str, source: str, rule: str | None, now: float
    ) -> None:
        super().remember(person, placement, variant, source, rule, now)
        shown = _SEP.join((variant, source, rule or "", repr(now)))
        self._note(person, "s", f"s{_SEP}{placement}", shown)
        self._note(person, "c", f"c{_SEP}{placement}{_SEP}{variant}", repr(now))

    def remember_and_log(
        self,
        person: str,
        placement: str,
        variant: str,
        source: str,
        rule: str | None,
        now: float,
        logged_as: str,
        period: float,
    ) -> bool:
        # one after the other: each notes its changes for save()
        self.remember(person, placement, variant, source, rule, now)
        return self.first_log(person, placement, logged_as, period, now)

    def first_logs(
        self, person: str, placement: str, names: Sequence[str], period: float, now: float
    ) -> list[bool]:
        return [self.first_log(person, placement, name, period, now) for name in names]

    def first_log(
        self, person: str, placement: str, variant: str, period: float, now: float
    ) -> bool:
        first = super().first_log(person, placement, variant, period, now)
        if first:
            self._note(person, "l", f"l{_SEP}{placement}{_SEP}{variant}", repr(now))
        return first

    def _note(self, person: str, kind: str, name: str, value: str) -> None:
        with self._lock:
            self._changes.setdefault(person, []).extend((kind, name, value))

    def save(self, person: str, ttl: float) -> None:
        with self._lock:
            changes = self._changes.pop(person, None)
        if not changes:
            return
        if not self.fallback.available():
            self.fallback.skipped()
            return
        try:
            self._save(keys=[self._key(person)], args=[max(1000, int(ttl * 1000)), *changes])
        except Exception as exc:
            self.fallback.failed(exc)

    def forget(self, persons: Iterable[str]) -> int:
        persons = list(persons)
        known = super().forget(persons)
        if persons and self.fallback.available():
            try:
                known = max(known, int(self.client.delete(*map(self._key, persons))))
            except Exception as exc:
                self.fallback.failed(exc)
        return known


def _parse(raw: dict[bytes, bytes]) -> _User:
    """A user's hash as an in-process entry."""
    user: _User = {}
    for name_b, value_b in raw.items():
        kind, *names = name_b.decode().split(_SEP)
        value = value_b.decode()
        if kind == "s" and len(names) == 1:
            variant, source, rule, since = value.split(_SEP)
            user["s", names[0]] = (variant, source, rule or None, float(since))
        elif kind == "c" and len(names) == 2:
            user["c", *names] = tuple(float(t) for t in value.split(","))
        elif kind == "l" and len(names) == 2:
            user["l", *names] = float(value)
    return user


def make_memory(
    redis_url: str, prefix: str, max_users: int, options: RedisOptions | None = None
) -> UserMemory:
    """The memory the settings ask for: shared through Redis when a URL is set."""
    if redis_url:
        return RedisUserMemory(connect(redis_url, options), prefix, max_users)
    return UserMemory(max_users)


class ConsentRegistry:
    """Ids (user or anonymous) that opted out of personalization.

    >>> consent = ConsentRegistry()
    >>> consent.set(["u1", "a9"], personalization=False)
    >>> consent.opted_out("u2", "a9"), consent.opted_out("u2", None)
    (True, False)
    """

    def __init__(self) -> None:
        self._out: set[str] = set()
        self._lock = threading.Lock()

    def set(self, ids: Iterable[str], personalization: bool) -> None:
        """Record the choice of every id of one person."""
        with self._lock:
            for i in ids:
                if personalization:
                    self._out.discard(i)
                else:
                    self._out.add(i)

    def load(self, opted_out: Iterable[str], opted_in: Iterable[str] = ()) -> None:
        """Merge the warehouse's view (at start-up); later choices win over it."""
        with self._lock:
            self._out.update(opted_out)
            self._out.difference_update(opted_in)

    def opted_out(self, user_id: str | None, anonymous_id: str | None) -> bool:
        """Whether either id opted out."""
        out = self._out
        return (user_id is not None and user_id in out) or (
            anonymous_id is not None and anonymous_id in out
        )

    def start(self) -> None:
        """Start following other replicas' choices (none in process)."""

    def stop(self) -> None:
        """Stop following them."""

    def __len__(self) -> int:
        return len(self._out)


class RedisConsentRegistry(ConsentRegistry):
    """Opt-outs shared by replicas: a Redis set, and a channel announcing each change.

    Requests read only the in-process set (no Redis call per decision). A
    choice is written to the set ``<prefix>consent:out`` and published on
    ``<prefix>consent``; every replica's listener thread applies what it
    hears, and after each (re)connection merges the whole set (opt-outs missed
    while disconnected; an opt-in missed then keeps the user opted out until
    the next one: the safe side). While Redis is unreachable a replica keeps
    its own view.

    >>> import redis, time
    >>> a = RedisConsentRegistry(redis.Redis(), "doc-consent:")
    >>> b = RedisConsentRegistry(redis.Redis(), "doc-consent:"); b.start()
    >>> a.set(["u1"], personalization=False)
    >>> for _ in range(50):
    ...     if b.opted_out("u1", None): break
    ...     time.sleep(0.1)
    >>> b.opted_out("u1", None)
    True
    >>> b.stop(); a.client.delete("doc-consent:consent:out")
    1
    """

    def __init__(self, client: Any, prefix: str = "tailorkit:") -> None:
        super().__init__()
        self.client = client
        self.key = f"{prefix}consent:out"
        self.channel = f"{prefix}consent"
        self.fallback = Fallback("consent", client)
        self._listener = Listener(
            self.fallback, self.channel, self._merge, self._apply, "tk-consent"
        )

    def set(self, ids: Iterable[str], personalization: bool) -> None:
        ids = list(ids)
        super().set(ids, personalization)
        if not ids or not self.fallback.available():
            return
        try:
            with self.client.pipeline() as pipe:
                (pipe.srem if personalization else pipe.sadd)(self.key, *ids)
                message = {"ids": ids, "personalization": personalization}
                pipe.publish(self.channel, orjson.dumps(message))
                pipe.execute()
        except Exception as exc:
            self.fallback.failed(exc)

    def start(self) -> None:
        self._listener.start()

    def stop(self) -> None:
        self._listener.stop()

    def _merge(self) -> None:
        members = self.client.smembers(self.key)
        self.load(m.decode() for m in members)

    def _apply(self, data: bytes) -> None:
        change = orjson.loads(data)
        ConsentRegistry.set(self, change["ids"], change["personalization"])


def make_consent(
    redis_url: str, prefix: str, options: RedisOptions | None = None
) -> ConsentRegistry:
    """Opt-outs shared through Redis when a URL is set, else in process."""
    if redis_url:
        return RedisConsentRegistry(connect(redis_url, options), prefix)
    return ConsentRegistry()
