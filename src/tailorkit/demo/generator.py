"""Seeded demo shop: visitors, products and their events, reproducible byte for byte.

The pipeline (each step vectorized over all sessions):

    make_people -> schedule_sessions -> draw_funnel -> identity -> expand_events
    -> sort by time -> encode_events

:func:`simulate_session` runs the same model for one visitor and one session,
for live traffic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tailorkit.demo.catalog import CATEGORIES, build_catalog
from tailorkit.demo.encode import encode_events
from tailorkit.demo.model import (
    DAY_US,
    IDENTIFY,
    MAX_SESSION_US,
    P_PLAN_IDENTIFY,
    SESSION_GAP_US,
    Events,
    Funnel,
    Sessions,
    draw_funnel,
    expand_events,
)
from tailorkit.demo.ndjson import iter_event_dicts
from tailorkit.demo.personas import DEVICES, HUMAN, PERSONA_NAMES, persona_code
from tailorkit.demo.population import (
    KNOWN_AT_START,
    People,
    make_people,
    schedule_sessions,
    session_frame,
)
from tailorkit.demo.world import COUNTRIES

# Live traffic should start a visitor's next session no sooner than this after the start
# of their previous one (the batch keeps the same spacing).
SESSION_GAP = timedelta(microseconds=SESSION_GAP_US)
# Fixed so that the default output is the same on every machine and every day;
# pass ``end=datetime.now(UTC)`` for data that ends now.
DEFAULT_END = datetime(2024, 6, 1, tzinfo=UTC)
EVENTS_PER_USER = 46.0  # a little under the measured ~47.5 at 30 days; sizes generate_events_table
_NEVER = 1 << 40


@dataclass(frozen=True)
class DemoShop:
    """A generated shop: ``events`` sorted by timestamp, ground-truth ``users``, ``products``.

    ``people`` keeps the generator's per-visitor state so that live traffic can
    continue the same visitors (see :func:`demo_users`).
    """

    events: pa.Table
    users: pa.Table
    products: pa.Table
    start: datetime
    end: datetime
    seed: int
    people: People = field(repr=False, compare=False)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # naive datetimes are taken as UTC
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _session_index(person: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each session's number within its visitor, and the first row of every visitor."""
    starts = np.flatnonzero(np.r_[True, person[1:] != person[:-1]])
    counts = np.diff(np.r_[starts, person.size])
    return np.arange(person.size) - np.repeat(starts, counts), starts


def _batch_identity(
    rng: np.random.Generator,
    people: People,
    sessions: Sessions,
    funnel: Funnel,
    existing: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Who is known before each session, who identifies in it, who was known at the start.

    A visitor who will identify does so at a random session (geometric) or at
    the first checkout, whichever comes first — shops ask for an account or an
    email at checkout. Some existing customers are logged in from the start.
    """
    index, starts = _session_index(sessions.person)
    known_at_start = people.will_identify & existing & (rng.random(people.size) < KNOWN_AT_START)
    plan = rng.geometric(P_PLAN_IDENTIFY, people.size) - 1
    first_checkout = np.minimum.reduceat(np.where(funnel.checkout, index, _NEVER), starts)
    identify_at = np.where(
        people.will_identify & ~known_at_start, np.minimum(plan, first_checkout), _NEVER
    )
    person = sessions.person
    known = known_at_start[person] | (index > identify_at[person])
    return known, index == identify_at[person], known_at_start


def _signup_us(
    rng: np.random.Generator,
    events: Events,
    sessions: Sessions,
    first_seen: np.ndarray,
    known_at_start: np.ndarray,
    start_us: int,
) -> np.ndarray:
    """When each visitor signed up: their identify event, or before the window; -1 if never."""
    signup = np.full(first_seen.size, -1, dtype=np.int64)
    is_identify = events.kind == IDENTIFY
    signup[sessions.person[events.session[is_identify]]] = events.ts_us[is_identify]
    before = first_seen + (rng.random(first_seen.size) * (start_us - first_seen)).astype(np.int64)
    return np.where(known_at_start, before, signup)


def _first_seen(
    rng: np.random.Generator, sessions: Sessions, existing: np.ndarray, start_us: int
) -> np.ndarray:
    """First visit: up to a year before the window for existing visitors, else the first session."""
    _, starts = _session_index(sessions.person)
    first_session = sessions.start_us[starts]
    days_before = rng.uniform(1, 365, existing.size)
    return np.where(existing, start_us - (days_before * DAY_US).astype(np.int64), first_session)


def _users_table(
    people: People,
    sessions: Sessions,
    first_seen: np.ndarray,
    signup: np.ndarray,
) -> pa.Table:
    devices = np.bincount(
        sessions.person * len(DEVICES) + sessions.device, minlength=people.size * len(DEVICES)
    ).reshape(people.size, len(DEVICES))
    timestamp = pa.timestamp("us", tz="UTC")
    consent = np.asarray(people.consent)
    return pa.table(
        {
            "user_id": pc.if_else(signup >= 0, people.user_id, pa.scalar(None, pa.string())),
            "anonymous_id": people.anonymous_id,
            "persona": pa.array(PERSONA_NAMES).take(people.persona),
            "is_bot": pa.array(~HUMAN[people.persona]),
            "device": pa.array(DEVICES).take(devices.argmax(axis=1)),
            "country": pa.array([c.code for c in COUNTRIES]).take(people.country),
            "locale": pa.array([c.locale for c in COUNTRIES]).take(people.country),
            "first_seen": pa.array(first_seen, timestamp),
            "signup_at": pa.array(signup, timestamp, mask=signup < 0),
            "consent_analytics": pa.array(consent < 2),
            "consent_personalization": pa.array(consent == 0),
        }
    )


def generate_shop(
    n_users: int = 20_000, days: int = 30, seed: int = 0, end: datetime | None = None
) -> DemoShop:
    """Generate a demo shop with ``n_users`` visitors over the ``days`` before ``end``.

    Same arguments give byte-identical tables. ``end`` defaults to
    :data:`DEFAULT_END` (fixed, for reproducibility).

    >>> shop = generate_shop(n_users=200, days=7, seed=1)
    >>> shop.events.column_names[:4]
    ['event_id', 'type', 'user_id', 'anonymous_id']
    >>> shop.users.num_rows, shop.products.num_rows
    (200, 400)
    """
    if days * DAY_US <= 2 * MAX_SESSION_US:
        raise ValueError("days must leave room for at least two sessions")
    end = end or DEFAULT_END
    end_us = _to_us(end)
    start_us = end_us - days * DAY_US
    rng = np.random.default_rng(seed)
    catalog = build_catalog()
    people = make_people(rng, n_users)
    sessions, existing = schedule_sessions(rng, people, start_us, end_us)
    funnel = draw_funnel(rng, sessions, catalog)
    known, identify, known_at_start = _batch_identity(rng, people, sessions, funnel, existing)
    events = expand_events(rng, sessions, funnel, known, identify, catalog)
    events = events.take(np.argsort(events.ts_us, kind="stable"))
    table = encode_events(rng, events, sessions, funnel, people, catalog)
    first_seen = _first_seen(rng, sessions, existing, start_us)
    signup = _signup_us(rng, events, sessions, first_seen, known_at_start, start_us)
    return DemoShop(
        events=table,
        users=_users_table(people, sessions, first_seen, signup),
        products=catalog.table(),
        start=_EPOCH + timedelta(microseconds=start_us),
        end=_EPOCH + timedelta(microseconds=end_us),
        seed=seed,
        people=people,
    )


def generate_events_table(n_events: int, seed: int = 0) -> pa.Table:
    """Exactly ``n_events`` events (the earliest ones of a large enough 30-day shop).

    >>> generate_events_table(1_000, seed=3).num_rows
    1000
    """
    n_users = max(10, math.ceil(n_events / EVENTS_PER_USER * 1.05))
    while True:
        events = generate_shop(n_users=n_users, days=30, seed=seed).events
        if events.num_rows >= n_events:
            return events.slice(0, n_events)
        n_users = math.ceil(n_users * 1.25)  # deterministic retry with more visitors


@dataclass
class DemoUser:
    """One visitor as live traffic sees it; ``identified`` changes when they log in."""

    user_id: str
    anonymous_id: str
    persona: str
    country: str
    favourite_categories: tuple[str, str]
    ip: str
    traits: dict[str, str]  # email, name, phone: sent with the identify event
    will_identify: bool
    consent_analytics: bool = True
    consent_personalization: bool = True
    identified: bool = False
    ua_pick: int = 0

    @property
    def is_bot(self) -> bool:
        """Whether the visitor is a bot (crawler or scraper)."""
        return not HUMAN[persona_code(self.persona)]


def _demo_user(people: People, i: int, identified: bool) -> DemoUser:
    consent = int(people.consent[i])
    first, second = (CATEGORIES[int(c)].name for c in people.fav[i])
    return DemoUser(
        user_id=people.user_id[i].as_py(),
        anonymous_id=people.anonymous_id[i].as_py(),
        persona=PERSONA_NAMES[int(people.persona[i])],
        country=COUNTRIES[int(people.country[i])].code,
        favourite_categories=(first, second),
        ip=people.ip[i].as_py(),
        traits=orjson.loads(people.traits[i].as_py()),
        will_identify=bool(people.will_identify[i]),
        consent_analytics=consent < 2,
        consent_personalization=consent == 0,
        identified=identified,
        ua_pick=int(people.ua_pick[i]),
    )


def demo_users(shop: DemoShop) -> list[DemoUser]:
    """The shop's visitors as :class:`DemoUser`, in their state at the end of the window.

    >>> users = demo_users(generate_shop(n_users=20, days=3, seed=1))
    >>> len(users), users[0].anonymous_id == str(users[0].anonymous_id)
    (20, True)
    """
    identified = shop.users.column("user_id").is_valid().to_numpy(zero_copy_only=False)
    return [_demo_user(shop.people, i, bool(identified[i])) for i in range(shop.people.size)]


def new_user(rng: np.random.Generator, number: int) -> DemoUser:
    """A new visitor (persona drawn as in the batch) with user id ``u{number:07d}``.

    >>> new_user(np.random.default_rng(0), 123456).user_id
    'u0123456'
    """
    return _demo_user(make_people(rng, 1, first_number=number), 0, identified=False)


def _people_of(user: DemoUser) -> People:
    """A one-row :class:`People` for the vectorized model."""
    category_names = [c.name for c in CATEGORIES]
    consent = 0 if user.consent_personalization else (1 if user.consent_analytics else 2)
    traits = orjson.dumps(user.traits).decode()
    return People(
        persona=np.array([persona_code(user.persona)]),
        country=np.array([[c.code for c in COUNTRIES].index(user.country)]),
        fav=np.array([[category_names.index(c) for c in user.favourite_categories]]),
        will_identify=np.array([user.will_identify]),
        consent=np.array([consent]),
        ua_pick=np.array([user.ua_pick]),
        user_id=pa.array([user.user_id]),
        anonymous_id=pa.array([user.anonymous_id]),
        ip=pa.array([user.ip]),
        traits=pa.array([traits]),
    )


def simulate_session(
    rng: np.random.Generator, user: DemoUser, start: datetime
) -> list[dict[str, Any]]:
    """One session of ``user`` starting at ``start``, as canonical event dicts.

    Uses the same model as :func:`generate_shop`. If the visitor logs in during
    the session, the session contains an ``identify`` event and
    ``user.identified`` becomes True, so their next sessions carry the user id.

    >>> rng = np.random.default_rng(7)
    >>> user = new_user(rng, 1)
    >>> events = simulate_session(rng, user, datetime(2024, 6, 1, 20, tzinfo=UTC))
    >>> events[0]["type"], events[0]["anonymous_id"] == user.anonymous_id
    ('page_view', True)
    """
    catalog = build_catalog()
    people = _people_of(user)
    sessions = session_frame(rng, people, np.zeros(1, dtype=np.int64), np.array([_to_us(start)]))
    funnel = draw_funnel(rng, sessions, catalog)
    known = np.array([user.identified])
    planned = rng.random(1) < P_PLAN_IDENTIFY
    identify = ~known & user.will_identify & (funnel.checkout | planned)
    events = expand_events(rng, sessions, funnel, known, identify, catalog)
    table = encode_events(rng, events, sessions, funnel, people, catalog)
    user.identified = user.identified or bool(identify[0])
    return list(iter_event_dicts(table))


__all__ = [
    "DEFAULT_END",
    "SESSION_GAP",
    "DemoShop",
    "DemoUser",
    "demo_users",
    "generate_events_table",
    "generate_shop",
    "new_user",
    "simulate_session",
]
