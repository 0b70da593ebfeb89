"""Hidden behavioural personas of the demo shop's visitors.

Each persona is a set of habits (how often they come, how much they browse,
search and buy, what they pay, which device they use and when). The generator
never writes the persona into the events; it is ground truth in the users
table so that clustering can be checked against it.

At 30 days (per visitor, roughly): bargain hunters ~11 sessions, many views of
cheap and discounted items (avg ~20 EUR), mostly desktop, rare small orders;
loyal buyers ~10 longer sessions, frequent purchases of pricey items, highest
revenue, desktop/tablet; window shoppers ~14 sessions, many views of pricey
items, mobile/tablet, almost never buy; mobile impulse buyers ~20 short mobile
sessions, cheap items, many cart adds and orders; researchers ~3 long desktop
sessions with many searches and expensive items (electronics). The parameters
are tuned so that k-means on standardized per-visitor counts, average price,
mobile share and search share finds them again (adjusted Rand index ~0.85).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

DEVICES = ("mobile", "desktop", "tablet")
SOURCES = ("google", "newsletter", "facebook", "direct")
QUANTITY_PROBS = (0.82, 0.13, 0.05)  # items per add_to_cart: 1, 2 or 3
BOT_SHARE = 0.005

# Relative activity per local hour (0-23); each profile is scaled to a maximum of 1.
_HOURS = {
    "evening": (2, 1, 1, 1, 1, 1, 2, 4, 6, 7, 8, 8, 9, 8, 8, 8, 9, 10, 12, 14, 15, 13, 9, 5),
    "office": (1, 1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 14, 12, 13, 14, 13, 11, 8, 6, 5, 4, 3, 2, 1),
    "late": (6, 4, 2, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 7, 6, 6, 7, 8, 10, 13, 15, 16, 14, 10),
    "flat": (1,) * 24,
}
HOUR_PROFILES = tuple(_HOURS)


@dataclass(frozen=True)
class Persona:
    """Habits of one kind of visitor; rates are per session unless noted."""

    name: str
    weight: float  # share among human visitors
    sessions_per_day: float
    page_views: float  # extra page views (Poisson mean) besides the landing page
    product_views: float  # Poisson mean
    searches: float  # Poisson mean
    p_cart: float  # chance that a product view is added to the cart
    p_remove: float  # chance that an added item is removed again
    p_checkout: float  # chance that a non-empty cart goes to checkout
    p_purchase: float  # chance that a checkout completes
    price_center: float  # preferred price in EUR
    price_width: float  # tolerance around price_center, in log units
    sale_affinity: float  # weight multiplier for discounted products
    bargain_queries: float  # share of searches with "cheap"/"sale"
    categories: tuple[float, ...]  # shoes, apparel, electronics, home, beauty, sports, books, toys
    devices: tuple[float, float, float]  # mobile, desktop, tablet
    sources: tuple[float, float, float, float]  # google, newsletter, facebook, direct
    dwell_seconds: float  # mean time between two events
    hours: str  # key of the hour-of-day profile
    weekend: float  # weekend activity relative to weekdays
    p_identify: float  # chance that the visitor ever signs up or logs in
    bounce_rate: float  # share of sessions that end on the landing page
    is_bot: bool = False


PERSONAS: tuple[Persona, ...] = (
    Persona(
        name="bargain_hunter",
        weight=0.25,
        sessions_per_day=0.38,
        page_views=0.6,
        product_views=4.0,
        searches=0.5,
        p_cart=0.04,
        p_remove=0.3,
        p_checkout=0.3,
        p_purchase=0.7,
        price_center=12.0,
        price_width=0.5,
        sale_affinity=5.0,
        bargain_queries=0.6,
        categories=(0.12, 0.25, 0.04, 0.12, 0.18, 0.08, 0.08, 0.13),
        devices=(0.1, 0.85, 0.05),
        sources=(0.35, 0.3, 0.2, 0.15),
        dwell_seconds=40.0,
        hours="evening",
        weekend=1.2,
        p_identify=0.85,
        bounce_rate=0.35,
    ),
    Persona(
        name="loyal_buyer",
        weight=0.13,
        sessions_per_day=0.32,
        page_views=0.4,
        product_views=3.0,
        searches=0.2,
        p_cart=0.35,
        p_remove=0.1,
        p_checkout=0.6,
        p_purchase=0.9,
        price_center=130.0,
        price_width=0.6,
        sale_affinity=1.0,
        bargain_queries=0.05,
        categories=(0.15, 0.2, 0.1, 0.2, 0.15, 0.1, 0.05, 0.05),
        devices=(0.15, 0.5, 0.35),
        sources=(0.15, 0.35, 0.1, 0.4),
        dwell_seconds=45.0,
        hours="evening",
        weekend=1.0,
        p_identify=0.97,
        bounce_rate=0.2,
    ),
    Persona(
        name="window_shopper",
        weight=0.28,
        sessions_per_day=0.46,
        page_views=0.6,
        product_views=3.0,
        searches=0.4,
        p_cart=0.01,
        p_remove=0.3,
        p_checkout=0.1,
        p_purchase=0.5,
        price_center=90.0,
        price_width=0.6,
        sale_affinity=1.0,
        bargain_queries=0.05,
        categories=(0.2, 0.3, 0.1, 0.2, 0.1, 0.05, 0.02, 0.03),
        devices=(0.75, 0.05, 0.2),
        sources=(0.3, 0.1, 0.35, 0.25),
        dwell_seconds=50.0,
        hours="late",
        weekend=1.4,
        p_identify=0.6,
        bounce_rate=0.35,
    ),
    Persona(
        name="mobile_impulse",
        weight=0.17,
        sessions_per_day=0.7,
        page_views=0.2,
        product_views=1.5,
        searches=0.1,
        p_cart=0.4,
        p_remove=0.05,
        p_checkout=0.45,
        p_purchase=0.85,
        price_center=20.0,
        price_width=0.5,
        sale_affinity=1.2,
        bargain_queries=0.05,
        categories=(0.15, 0.25, 0.1, 0.05, 0.2, 0.1, 0.05, 0.1),
        devices=(0.97, 0.01, 0.02),
        sources=(0.2, 0.1, 0.5, 0.2),
        dwell_seconds=20.0,
        hours="late",
        weekend=1.3,
        p_identify=0.8,
        bounce_rate=0.35,
    ),
    Persona(
        name="researcher",
        weight=0.17,
        sessions_per_day=0.11,
        page_views=0.5,
        product_views=5.0,
        searches=3.5,
        p_cart=0.03,
        p_remove=0.15,
        p_checkout=0.3,
        p_purchase=0.75,
        price_center=160.0,
        price_width=0.5,
        sale_affinity=1.0,
        bargain_queries=0.05,
        categories=(0.1, 0.02, 0.5, 0.1, 0.02, 0.1, 0.14, 0.02),
        devices=(0.03, 0.95, 0.02),
        sources=(0.6, 0.05, 0.05, 0.3),
        dwell_seconds=70.0,
        hours="office",
        weekend=0.7,
        p_identify=0.85,
        bounce_rate=0.35,
    ),
    # Bots: crawlers announce themselves in the user agent, scrapers only by their rate.
    Persona(
        name="bot_crawler",
        weight=0.5,
        sessions_per_day=3.0,
        page_views=10.0,
        product_views=40.0,
        searches=0.0,
        p_cart=0.0,
        p_remove=0.0,
        p_checkout=0.0,
        p_purchase=0.0,
        price_center=50.0,
        price_width=100.0,
        sale_affinity=1.0,
        bargain_queries=0.0,
        categories=(1.0,) * 8,
        devices=(0.0, 1.0, 0.0),
        sources=(0.0, 0.0, 0.0, 1.0),
        dwell_seconds=2.0,
        hours="flat",
        weekend=1.0,
        p_identify=0.0,
        bounce_rate=0.0,
        is_bot=True,
    ),
    Persona(
        name="bot_scraper",
        weight=0.5,
        sessions_per_day=5.0,
        page_views=2.0,
        product_views=60.0,
        searches=2.0,
        p_cart=0.0,
        p_remove=0.0,
        p_checkout=0.0,
        p_purchase=0.0,
        price_center=50.0,
        price_width=100.0,
        sale_affinity=1.0,
        bargain_queries=0.0,
        categories=(1.0,) * 8,
        devices=(0.0, 1.0, 0.0),
        sources=(0.0, 0.0, 0.0, 1.0),
        dwell_seconds=1.0,
        hours="flat",
        weekend=1.0,
        p_identify=0.0,
        bounce_rate=0.0,
        is_bot=True,
    ),
)
PERSONA_NAMES = tuple(p.name for p in PERSONAS)
HUMAN = np.array([not p.is_bot for p in PERSONAS])


@dataclass(frozen=True)
class PersonaTable:
    """Persona parameters as arrays indexed by persona code, for vectorized sampling."""

    weight: np.ndarray
    sessions_per_day: np.ndarray
    page_views: np.ndarray
    product_views: np.ndarray
    searches: np.ndarray
    p_cart: np.ndarray
    p_remove: np.ndarray
    p_checkout: np.ndarray
    p_purchase: np.ndarray
    price_center: np.ndarray
    price_width: np.ndarray
    sale_affinity: np.ndarray
    bargain_queries: np.ndarray
    categories: np.ndarray  # (personas, categories), rows sum to 1
    devices: np.ndarray  # (personas, 3)
    sources: np.ndarray  # (personas, 4)
    dwell_seconds: np.ndarray
    hours: np.ndarray  # (personas, 24), scaled to a maximum of 1
    weekend: np.ndarray
    p_identify: np.ndarray
    bounce_rate: np.ndarray
    is_bot: np.ndarray


def _normalized(rows: list[tuple[float, ...]]) -> np.ndarray:
    matrix = np.array(rows, dtype=np.float64)
    return matrix / matrix.sum(axis=1, keepdims=True)


@lru_cache(maxsize=1)
def persona_table() -> PersonaTable:
    """Stack :data:`PERSONAS` into arrays.

    >>> table = persona_table()
    >>> table.devices.shape, bool(table.is_bot[-1])
    ((7, 3), True)
    """
    columns: dict[str, np.ndarray] = {}
    for f in fields(Persona):
        values = [getattr(p, f.name) for p in PERSONAS]
        if f.name in ("categories", "devices", "sources"):
            columns[f.name] = _normalized(values)
        elif f.name == "hours":
            hours = np.array([_HOURS[v] for v in values], dtype=np.float64)
            columns[f.name] = hours / hours.max(axis=1, keepdims=True)
        elif f.name != "name":
            columns[f.name] = np.array(values)
    return PersonaTable(**columns)


def persona_code(name: str) -> int:
    """Code of the persona called ``name``.

    >>> persona_code("researcher")
    4
    """
    return PERSONA_NAMES.index(name)
