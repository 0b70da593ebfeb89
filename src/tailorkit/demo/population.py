"""The visitors of the demo shop and when they come (sessions with seasonality)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailorkit.demo.catalog import N_CATEGORIES
from tailorkit.demo.model import (
    DAY_US,
    HOUR_US,
    MAX_SESSION_US,
    SESSION_GAP_US,
    Sessions,
    categorical,
)
from tailorkit.demo.personas import BOT_SHARE, HUMAN, persona_table
from tailorkit.demo.strings import join, numbers, uuid4_strings
from tailorkit.demo.world import (
    COUNTRIES,
    COUNTRY_WEIGHTS,
    FIRST_NAMES,
    LAST_NAMES,
    NO_ANALYTICS_SHARE,
    NO_PERSONALIZATION_SHARE,
    UTC_OFFSET_HOURS,
)

EXISTING_SHARE = 0.9  # visitors already customers before the window (returning users)
KNOWN_AT_START = 0.6  # share of existing visitors (who will identify) already logged in
ACTIVITY_SHAPE = 20.0  # visitor activity ~ Gamma(shape, 1/shape): mean 1, some heavier users


@dataclass
class People:
    """One row per visitor; strings are Arrow arrays so the encoder can ``take`` them."""

    persona: np.ndarray
    country: np.ndarray
    fav: np.ndarray  # (people, 2) favourite categories
    will_identify: np.ndarray
    consent: np.ndarray  # index into world.CONSENT_JSON
    ua_pick: np.ndarray  # which user agent of the device's list the visitor uses
    user_id: pa.Array
    anonymous_id: pa.Array
    ip: pa.Array
    traits: pa.Array  # properties JSON of the identify event

    @property
    def size(self) -> int:
        """Number of visitors."""
        return int(self.persona.size)


def draw_personas(rng: np.random.Generator, n: int) -> np.ndarray:
    """Persona codes: ``BOT_SHARE`` bots (split between bot kinds), the rest humans by weight."""
    table = persona_table()
    human = np.where(HUMAN, table.weight, 0.0)
    bots = np.where(HUMAN, 0.0, table.weight)
    weights = (1 - BOT_SHARE) * human / human.sum() + BOT_SHARE * bots / bots.sum()
    return categorical(rng, np.zeros(n, dtype=np.int64), weights[None, :])


def _favourites(rng: np.random.Generator, persona: np.ndarray) -> np.ndarray:
    """Two distinct favourite categories per visitor, drawn from the persona's taste."""
    categories = persona_table().categories
    first = categorical(rng, persona, categories)
    second = categorical(rng, persona, categories)
    clash = second == first
    second[clash] = (first[clash] + rng.integers(1, N_CATEGORIES, int(clash.sum()))) % N_CATEGORIES
    return np.stack([first, second], axis=1)


def _consent(rng: np.random.Generator, n: int) -> np.ndarray:
    u = rng.random(n)
    return np.where(u < NO_ANALYTICS_SHARE, 2, np.where(u < NO_PERSONALIZATION_SHARE, 1, 0))


def _ips(rng: np.random.Generator, country: np.ndarray) -> pa.Array:
    """Random IPv4 addresses whose first octet is plausible for the country."""
    sizes = np.array([len(c.first_octets) for c in COUNTRIES])
    leads = np.concatenate([c.first_octets for c in COUNTRIES])
    pick = rng.integers(0, 1 << 30, country.size) % sizes[country]
    lead = leads[np.r_[0, np.cumsum(sizes)[:-1]][country] + pick]
    middle = rng.integers(0, 256, (2, country.size))
    last = rng.integers(1, 255, country.size)
    return join(numbers(lead), ".", numbers(middle[0]), ".", numbers(middle[1]), ".", numbers(last))


def _traits(rng: np.random.Generator, number: np.ndarray, country: np.ndarray) -> pa.Array:
    """Identify traits (PII the collector pseudonymizes): email, name and phone."""
    first = rng.integers(0, len(FIRST_NAMES), number.size)
    last = rng.integers(0, len(LAST_NAMES), number.size)
    email_last = pa.array([n.lower().replace(" ", "") for n in LAST_NAMES]).take(last)
    email_first = pa.array([n.lower() for n in FIRST_NAMES]).take(first)
    phone = join(
        pa.array([c.phone_prefix for c in COUNTRIES]).take(country),
        " ",
        numbers(rng.integers(1_000_000, 10_000_000, number.size)),
    )
    return join(
        '{"email":"', email_first, ".", email_last, numbers(number), '@example.com","name":"',
        pa.array(FIRST_NAMES).take(first), " ", pa.array(LAST_NAMES).take(last),
        '","phone":"', phone, '"}',
    )  # fmt: skip


def user_ids(number: np.ndarray) -> pa.Array:
    """User ids ``u0000042`` from visitor numbers."""
    return join("u", pc.utf8_lpad(numbers(number), 7, "0"))


def make_people(rng: np.random.Generator, n: int, first_number: int = 0) -> People:
    """Draw ``n`` visitors: persona, country, taste, consent, ids and identify traits."""
    persona = draw_personas(rng, n)
    country = categorical(rng, np.zeros(n, dtype=np.int64), COUNTRY_WEIGHTS[None, :])
    number = np.arange(first_number, first_number + n)
    return People(
        persona=persona,
        country=country,
        fav=_favourites(rng, persona),
        will_identify=rng.random(n) < persona_table().p_identify[persona],
        consent=_consent(rng, n),
        ua_pick=rng.integers(0, 1 << 16, n),
        user_id=user_ids(number),
        anonymous_id=uuid4_strings(rng, n),
        ip=_ips(rng, country),
        traits=_traits(rng, number, country),
    )


def seasonal_times(
    rng: np.random.Generator,
    lo: np.ndarray,
    hi: np.ndarray,
    persona: np.ndarray,
    country: np.ndarray,
) -> np.ndarray:
    """Times in ``[lo, hi)`` following the persona's local hour-of-day and weekend habits.

    Rejection sampling: propose uniformly, keep with probability proportional to
    the activity at that local hour and weekday.
    """
    table = persona_table()
    out = np.empty(lo.size, dtype=np.int64)
    todo = np.arange(lo.size)
    peak = np.maximum(1.0, table.weekend)
    while todo.size:
        t = lo[todo] + (rng.random(todo.size) * (hi[todo] - lo[todo])).astype(np.int64)
        local = t + UTC_OFFSET_HOURS[country[todo]] * HOUR_US
        hour = (local // HOUR_US) % 24
        weekday = (local // DAY_US + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        p = persona[todo]
        activity = table.hours[p, hour] * np.where(weekday >= 5, table.weekend[p], 1.0)
        keep = rng.random(todo.size) * peak[p] < activity
        out[todo[keep]] = t[keep]
        todo = todo[~keep]
    return out


def _active_ranges(
    rng: np.random.Generator, people: People, start_us: int, end_us: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per visitor: first possible session start, last possible one, and whether existing."""
    n = people.size
    last = end_us - MAX_SESSION_US
    existing = (rng.random(n) < EXISTING_SHARE) & HUMAN[people.persona]
    lo0 = np.full(n, start_us, dtype=np.int64)
    arrival = seasonal_times(rng, lo0, np.full(n, last), people.persona, people.country)
    lo = np.where(existing, start_us, arrival)
    # Bots show up for one to three days only.
    bot_span = (rng.uniform(1, 3, n) * DAY_US).astype(np.int64)
    hi = np.where(HUMAN[people.persona], last, np.minimum(last, lo + bot_span))
    return lo, np.maximum(hi, lo + 1), existing


def schedule_sessions(
    rng: np.random.Generator, people: People, start_us: int, end_us: int
) -> tuple[Sessions, np.ndarray]:
    """Session starts of every visitor within the window (and which visitors are existing).

    New visitors' first session is their arrival; more sessions follow at the
    persona's rate (with a per-visitor activity level), at seasonal times.
    Sessions closer than SESSION_GAP_US to the previous one are dropped.
    """
    table = persona_table()
    lo, hi, existing = _active_ranges(rng, people, start_us, end_us)
    activity = rng.gamma(ACTIVITY_SHAPE, 1 / ACTIVITY_SHAPE, people.size)
    expected = table.sessions_per_day[people.persona] * activity * (hi - lo) / DAY_US
    person = np.repeat(np.arange(people.size), 1 + rng.poisson(expected))
    persona, country = people.persona[person], people.country[person]
    start = seasonal_times(rng, lo[person], hi[person], persona, country)
    first = np.r_[True, person[1:] != person[:-1]]
    start = np.where(first & ~existing[person], lo[person], start)
    order = np.lexsort((start, person))
    person, start = person[order], start[order]
    first = np.r_[True, person[1:] != person[:-1]]
    keep = first | (np.diff(start, prepend=start[0]) >= SESSION_GAP_US)
    person, start = person[keep], start[keep]
    return session_frame(rng, people, person, start), existing


def session_frame(
    rng: np.random.Generator, people: People, person: np.ndarray, start: np.ndarray
) -> Sessions:
    """Sessions of ``person`` at ``start`` with device and traffic source by persona."""
    table = persona_table()
    persona = people.persona[person]
    return Sessions(
        person=person,
        persona=persona,
        fav=people.fav[person],
        start_us=start,
        device=categorical(rng, persona, table.devices),
        source=categorical(rng, persona, table.sources),
        bounce=rng.random(person.size) < table.bounce_rate[persona],
    )
