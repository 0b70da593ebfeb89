"""What the decision path remembers per user: shown variants (dwell), showings
(frequency caps), logged exposures (deduplication) and consent opt-outs.

All of it is in process and bounded: the least recently seen users are
dropped past ``max_users``. Losing a user's entry only means a dwell or a
cap restarts, never a wrong or failed decision, so this needs no store.
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

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["ConsentRegistry", "Shown", "UserMemory"]


@dataclass(slots=True)
class Shown:
    """The variant a user was last shown in a placement, and since when."""

    variant: str
    source: str
    rule: str | None
    since: float


@dataclass(slots=True)
class _User:
    shown: dict[str, Shown] = field(default_factory=dict)
    showings: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    logged: dict[tuple[str, str], float] = field(default_factory=dict)


class UserMemory:
    """Per-user decision memory, least recently used first out (thread-safe)."""

    def __init__(self, max_users: int = 100_000) -> None:
        self.max_users = max_users
        self._users: OrderedDict[str, _User] = OrderedDict()
        self._lock = threading.Lock()

    def _user(self, person: str) -> _User:
        user = self._users.get(person)
        if user is None:
            user = self._users[person] = _User()
            if len(self._users) > self.max_users:
                self._users.popitem(last=False)
        else:
            self._users.move_to_end(person)
        return user

    def held(self, person: str, placement: str, dwell: float, now: float) -> Shown | None:
        """The variant still within its minimum dwell, if any."""
        with self._lock:
            user = self._users.get(person)
            shown = None if user is None else user.shown.get(placement)
        if shown is None or now - shown.since >= dwell:
            return None
        return shown

    def remember(
        self, person: str, placement: str, variant: str, source: str, rule: str | None, now: float
    ) -> None:
        """Record a showing; a change of variant restarts the dwell clock."""
        with self._lock:
            user = self._user(person)
            shown = user.shown.get(placement)
            if shown is None or shown.variant != variant:
                user.shown[placement] = Shown(variant, source, rule, now)
            times = user.showings.setdefault((placement, variant), [])
            times.append(now)
            if len(times) > 64:  # caps above 64 per window are not worth the memory
                del times[:-64]

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
            times = None if user is None else user.showings.get((placement, variant))
            if not times:
                return False
            return sum(1 for t in times if now - t < window) >= limit

    def first_log(
        self, person: str, placement: str, variant: str, period: float, now: float
    ) -> bool:
        """True (and noted) when this decision was not logged within ``period`` seconds."""
        with self._lock:
            user = self._user(person)
            last = user.logged.get((placement, variant))
            if last is not None and now - last < period:
                return False
            user.logged[(placement, variant)] = now
            return True

    def forget(self, persons: Iterable[str]) -> int:
        """Drop everything remembered about ``persons``; returns how many were known."""
        with self._lock:
            return sum(self._users.pop(p, None) is not None for p in persons)

    def __len__(self) -> int:
        return len(self._users)


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

    def __len__(self) -> int:
        return len(self._out)
