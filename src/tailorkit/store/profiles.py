"""Profile stores: where the online executor keeps profiles, aliases and its timer wheel.

:class:`MemoryProfileStore` (default) keeps live objects in the process.
:class:`RedisProfileStore` shares them between server replicas: one key per
profile (serialized), a hash of identity aliases, a sorted set as the timer
wheel and a hash of segment sizes. Updates are optimistic transactions
(``WATCH``/``MULTI``), so two replicas updating the same profile retry rather
than lose an update; the update function must therefore be free of side
effects and return what should happen once it has committed.

:meth:`ProfileStore.apply_once` is the idempotent form used by ``tailorkit
worker``: the profiles, the aliases, the timer wheel, the sizes *and* an
"applied" marker per stream entry are written in one transaction (Redis
``MULTI``/``EXEC``), and a batch whose marker exists is not applied again.

>>> store = MemoryProfileStore()
>>> store.set_aliases({"anon-1": "u1"})
>>> store.aliases(["anon-1", "anon-2"])
{'anon-1': 'u1'}
"""

from __future__ import annotations

import heapq
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, Protocol, TypeVar

from tailorkit.profile.online import Profile
from tailorkit.store.redis_fallback import Fallback, RedisOptions, connect

T = TypeVar("T")
#: Profiles by person for one update; assign ``None`` to delete.
Profiles = MutableMapping[str, Profile | None]
#: How long an "applied" marker is kept: longer than any entry can wait to be redelivered.
APPLIED_TTL_SECONDS = 24 * 3600


class Writes(Protocol):
    """What :meth:`ProfileStore.apply_once` writes besides the profiles."""

    @property
    def aliases(self) -> Mapping[str, str]: ...
    @property
    def wakes(self) -> Mapping[str, int]: ...
    @property
    def sizes(self) -> Mapping[str, int]: ...


W = TypeVar("W", bound=Writes)


class ProfileStore(ABC):
    """What the online executor needs from a store."""

    #: Set by stores on a network service: whether to call it now (see ``redis_fallback``).
    fallback: Fallback | None = None

    @abstractmethod
    def apply_once(
        self, persons: Iterable[str], fn: Callable[[Profiles], W], markers: Sequence[str]
    ) -> W | None:
        """Like :meth:`update`, also writing ``fn``'s aliases, wakes and sizes and the
        ``markers``, all atomically; ``None`` (nothing done) if a marker already exists."""

    @abstractmethod
    def applied(self, markers: Sequence[str]) -> set[str]:
        """The ``markers`` already written by :meth:`apply_once`."""

    @abstractmethod
    def update(self, persons: Iterable[str], fn: Callable[[Profiles], T]) -> T:
        """Load ``persons`` (missing ones as ``None``), let ``fn`` change them, save atomically."""

    @abstractmethod
    def get(self, person: str) -> Profile | None:
        """One profile, read-only."""

    @abstractmethod
    def persons(self) -> Iterator[str]:
        """Every stored person id."""

    @abstractmethod
    def aliases(self, anonymous_ids: Iterable[str]) -> dict[str, str]:
        """Known user ids of anonymous ids that have been merged."""

    @abstractmethod
    def set_aliases(self, mapping: Mapping[str, str]) -> None:
        """Record merges; the first user an anonymous id was merged into stays."""

    @abstractmethod
    def schedule(self, wakes: Mapping[str, int]) -> None:
        """Ask to re-check persons at the given minute."""

    @abstractmethod
    def due(self, minute: int) -> list[str]:
        """Persons scheduled at or before ``minute``, removed from the wheel."""

    @abstractmethod
    def add_sizes(self, deltas: Mapping[str, int]) -> None:
        """Adjust segment sizes."""

    @abstractmethod
    def sizes(self) -> dict[str, int]:
        """Current segment sizes."""

    @abstractmethod
    def clear(self) -> None:
        """Forget everything."""


class MemoryProfileStore(ProfileStore):
    """In-process store: live objects, no serialization (the default).

    >>> store = MemoryProfileStore()
    >>> store.update(["u1"], lambda ps: ps.update(u1=Profile("u1", 0)))
    >>> list(store.persons()), store.get("u1").person
    (['u1'], 'u1')
    >>> store.schedule({"u1": 10}); store.due(9), store.due(10)
    ([], ['u1'])
    """

    def __init__(self) -> None:
        self._profiles: dict[str, Profile] = {}
        self._aliases: dict[str, str] = {}
        self._heap: list[tuple[int, str]] = []  # (minute, person), lazily superseded
        self._pending: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._applied: OrderedDict[str, None] = OrderedDict()  # the latest 100k markers
        self._lock = threading.RLock()

    def update(self, persons: Iterable[str], fn: Callable[[Profiles], T]) -> T:
        """Run ``fn`` on the live profiles under the store's lock."""
        with self._lock:
            loaded: dict[str, Profile | None] = {p: self._profiles.get(p) for p in persons}
            result = fn(loaded)
            for person, profile in loaded.items():
                if profile is None:
                    self._profiles.pop(person, None)
                else:
                    self._profiles[person] = profile
            return result

    def apply_once(
        self, persons: Iterable[str], fn: Callable[[Profiles], W], markers: Sequence[str]
    ) -> W | None:
        """Under the lock: skip if a marker is known, else update and remember the markers."""
        with self._lock:
            if self.applied(markers):
                return None
            result = self.update(persons, fn)
            self.set_aliases(result.aliases)
            self.schedule(result.wakes)
            self.add_sizes(result.sizes)
            for marker in markers:
                self._applied[marker] = None
            while len(self._applied) > 100_000:
                self._applied.popitem(last=False)
            return result

    def applied(self, markers: Sequence[str]) -> set[str]:
        """Markers among the latest 100k applied."""
        with self._lock:
            return {m for m in markers if m in self._applied}

    def get(self, person: str) -> Profile | None:
        """The live profile (do not change it outside :meth:`update`)."""
        return self._profiles.get(person)

    def persons(self) -> Iterator[str]:
        """A snapshot of the person ids."""
        with self._lock:
            return iter(list(self._profiles))

    def aliases(self, anonymous_ids: Iterable[str]) -> dict[str, str]:
        """Merged anonymous ids among ``anonymous_ids``."""
        table = self._aliases
        return {a: table[a] for a in anonymous_ids if a in table}

    def set_aliases(self, mapping: Mapping[str, str]) -> None:
        """Record merges (first one wins)."""
        with self._lock:
            for anon, user in mapping.items():
                self._aliases.setdefault(anon, user)

    def schedule(self, wakes: Mapping[str, int]) -> None:
        """Keep each person's earliest pending minute (like ``ZADD LT``)."""
        pending, heap = self._pending, self._heap
        with self._lock:
            for person, minute in wakes.items():
                known = pending.get(person)
                if known is None or minute < known:
                    pending[person] = minute
                    heapq.heappush(heap, (minute, person))

    def due(self, minute: int) -> list[str]:
        """Pop everything up to ``minute`` (superseded heap entries are skipped)."""
        found: list[str] = []
        pending, heap = self._pending, self._heap
        with self._lock:
            while heap and heap[0][0] <= minute:
                at, person = heapq.heappop(heap)
                if pending.get(person) == at:
                    del pending[person]
                    found.append(person)
        return found

    def add_sizes(self, deltas: Mapping[str, int]) -> None:
        """Adjust sizes."""
        with self._lock:
            for key, delta in deltas.items():
                self._sizes[key] = self._sizes.get(key, 0) + delta

    def sizes(self) -> dict[str, int]:
        """A copy of the sizes."""
        with self._lock:
            return dict(self._sizes)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._profiles.clear()
            self._aliases.clear()
            self._heap.clear()
            self._pending.clear()
            self._sizes.clear()
            self._applied.clear()


class RedisProfileStore(ProfileStore):
    """Profiles shared through Redis; every key starts with ``prefix``.

    >>> store = RedisProfileStore.from_url("redis://127.0.0.1:6379/0", "doc-example:")
    >>> store.add_sizes({"vip": 3}); store.sizes()
    {'vip': 3}
    >>> store.clear(); store.sizes()
    {}

    The prefix should change when feature definitions change (the executor
    adds a fingerprint), since stored state is laid out per definition.
    """

    def __init__(self, client: Any, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix
        self.fallback = Fallback("profiles", client)
        self._alias_key = f"{prefix}alias"
        self._wheel_key = f"{prefix}wheel"
        self._sizes_key = f"{prefix}sizes"

    @classmethod
    def from_url(
        cls, url: str, prefix: str, options: RedisOptions | None = None
    ) -> RedisProfileStore:
        """Connect to ``redis://host:port/db`` (short timeouts: :func:`connect`)."""
        return cls(connect(url, options), prefix)

    def _key(self, person: str) -> str:
        return f"{self.prefix}p:{person}"

    def _marker(self, marker: str) -> str:
        return f"{self.prefix}applied:{marker}"

    def update(self, persons: Iterable[str], fn: Callable[[Profiles], T]) -> T:
        """Optimistic transaction: re-run ``fn`` on fresh data if another writer interfered."""
        import redis

        people = list(dict.fromkeys(persons))
        keys = [self._key(p) for p in people]
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    return self._attempt(pipe, people, keys, fn)
                except redis.WatchError:
                    continue

    def _attempt(
        self, pipe: Any, people: list[str], keys: list[str], fn: Callable[[Profiles], T]
    ) -> T:
        if keys:
            pipe.watch(*keys)
        result = self._run(pipe, people, keys, fn)
        pipe.execute()
        return result

    def _run(self, pipe: Any, people: list[str], keys: list[str], fn: Callable[[Profiles], T]) -> T:
        """Load (watched), run ``fn``, start the transaction and queue the profile writes."""
        raw = pipe.mget(keys) if keys else []
        loaded: dict[str, Profile | None] = {
            p: (Profile.from_bytes(b) if b is not None else None)
            for p, b in zip(people, raw, strict=True)
        }
        before = set(loaded)
        result = fn(loaded)
        pipe.multi()
        for person, profile in loaded.items():
            if profile is None:
                if person in before:
                    pipe.delete(self._key(person))
            else:
                pipe.set(self._key(person), profile.to_bytes())
        return result

    def apply_once(
        self, persons: Iterable[str], fn: Callable[[Profiles], W], markers: Sequence[str]
    ) -> W | None:
        """One ``MULTI``/``EXEC`` with everything, watched with the markers (``WATCH``).

        Another worker setting a marker (or changing a profile) meanwhile
        aborts the transaction; it is tried again and then finds the marker.
        """
        import redis

        people = list(dict.fromkeys(persons))
        keys = [self._key(p) for p in people]
        marker_keys = [self._marker(m) for m in markers]
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(*keys, *marker_keys)
                    if marker_keys and any(pipe.mget(marker_keys)):
                        pipe.unwatch()
                        return None
                    result = self._run(pipe, people, keys, fn)
                    self._queue_writes(pipe, result)
                    for key in marker_keys:
                        pipe.set(key, b"1", ex=APPLIED_TTL_SECONDS)
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue

    def _queue_writes(self, pipe: Any, writes: Writes) -> None:
        for anon, user in writes.aliases.items():
            pipe.hsetnx(self._alias_key, anon, user)
        if writes.wakes:
            pipe.zadd(self._wheel_key, dict(writes.wakes), lt=True)
        for key, delta in writes.sizes.items():
            if delta:
                pipe.hincrby(self._sizes_key, key, delta)

    def applied(self, markers: Sequence[str]) -> set[str]:
        """``MGET`` of the marker keys."""
        if not markers:
            return set()
        found = self.redis.mget([self._marker(m) for m in markers])
        return {m for m, v in zip(markers, found, strict=True) if v is not None}

    def get(self, person: str) -> Profile | None:
        """One profile (a fresh copy)."""
        raw = self.redis.get(self._key(person))
        return Profile.from_bytes(raw) if raw is not None else None

    def persons(self) -> Iterator[str]:
        """Scan the profile keys."""
        start = len(self._key(""))
        for key in self.redis.scan_iter(match=self._key("*"), count=1000):
            yield key.decode()[start:]

    def aliases(self, anonymous_ids: Iterable[str]) -> dict[str, str]:
        """``HMGET`` on the alias hash."""
        anons = list(dict.fromkeys(anonymous_ids))
        if not anons:
            return {}
        values = self.redis.hmget(self._alias_key, anons)
        return {a: v.decode() for a, v in zip(anons, values, strict=True) if v is not None}

    def set_aliases(self, mapping: Mapping[str, str]) -> None:
        """``HSETNX`` each merge (first one wins)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for anon, user in mapping.items():
                pipe.hsetnx(self._alias_key, anon, user)
            pipe.execute()

    def schedule(self, wakes: Mapping[str, int]) -> None:
        """``ZADD`` with the minute as score (an earlier pending check is kept)."""
        if wakes:
            self.redis.zadd(self._wheel_key, dict(wakes), lt=True)

    def due(self, minute: int) -> list[str]:
        """Members up to ``minute``; each is claimed by the replica whose ``ZREM`` removes it."""
        members = self.redis.zrangebyscore(self._wheel_key, "-inf", minute)
        if not members:
            return []
        with self.redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.zrem(self._wheel_key, member)
            removed = pipe.execute()
        return [m.decode() for m, gone in zip(members, removed, strict=True) if gone]

    def add_sizes(self, deltas: Mapping[str, int]) -> None:
        """``HINCRBY`` each size."""
        with self.redis.pipeline(transaction=False) as pipe:
            for key, delta in deltas.items():
                if delta:
                    pipe.hincrby(self._sizes_key, key, delta)
            pipe.execute()

    def sizes(self) -> dict[str, int]:
        """``HGETALL`` of the sizes."""
        raw = self.redis.hgetall(self._sizes_key)
        return {k.decode(): int(v) for k, v in raw.items()}

    def clear(self) -> None:
        """Delete every key under the prefix."""
        keys = list(self.redis.scan_iter(match=f"{self.prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            self.redis.delete(*keys[start : start + 500])
