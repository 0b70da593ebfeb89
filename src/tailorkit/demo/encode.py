"""Turn event codes into the events table: ids, JSON strings and timestamps.

Speed comes from never building a Python object per event: the JSON of
product, page and search events is precomputed per product/page/query and
picked with ``take``; per-session and per-order JSON is assembled column-wise
with Arrow's string kernels. All pasted strings come from controlled
vocabularies without quotes or backslashes, so no escaping is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailorkit.demo.catalog import CATEGORIES, CURRENCY, SHOP_URL, Catalog
from tailorkit.demo.model import (
    ADD_TO_CART,
    CHECKOUT,
    IDENTIFY,
    KINDS,
    PAGE_VIEW,
    PRODUCT_VIEW,
    PURCHASE,
    REMOVE_FROM_CART,
    SEARCH,
    Events,
    Funnel,
    Pages,
    Sessions,
)
from tailorkit.demo.personas import DEVICES, persona_code
from tailorkit.demo.population import People
from tailorkit.demo.strings import fixed_width, hex_chars, hex_strings, join, numbers, uuid4_strings
from tailorkit.demo.world import (
    CONSENT_JSON,
    COUNTRIES,
    SOURCE_REFERRERS,
    USER_AGENTS,
    UTM_JSON,
)

EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("type", pa.string()),
        ("user_id", pa.string()),
        ("anonymous_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("properties", pa.string()),
        ("context", pa.string()),
        ("consent", pa.string()),
    ]
)
_UA_GROUPS = (*DEVICES, "bot")
_UA_ALL = tuple(ua for group in _UA_GROUPS for ua in USER_AGENTS[group])
_UA_LEN = np.array([len(USER_AGENTS[g]) for g in _UA_GROUPS])
_UA_OFFSET = np.r_[0, np.cumsum(_UA_LEN)[:-1]]
ENCODE_CHUNK = 1 << 20  # rows per record batch


@dataclass(frozen=True)
class CatalogStrings:
    """Precomputed JSON for everything that depends only on the catalog."""

    product_props: pa.Array  # index product * 3 + quantity - 1
    page_urls: pa.Array
    page_props: pa.Array
    query_props: pa.Array
    referrers: pa.Array  # quoted page URLs, then SOURCE_REFERRERS


def _page_paths(catalog: Catalog) -> tuple[list[str], list[str]]:
    paths = ["/"] + [f"/c/{c.name}" for c in CATEGORIES]
    titles = ["Home"] + [c.title for c in CATEGORIES]
    paths += [f"/p/{p}" for p in catalog.product_id]
    titles += list(catalog.name)
    paths += ["/search?q=" + q.replace(" ", "+") for q in catalog.queries]
    titles += [f"Search: {q}" for q in catalog.queries]
    paths += ["/cart", "/checkout", "/checkout/complete", "/account/login"]
    titles += ["Cart", "Checkout", "Thank you", "Log in"]
    return paths, titles


@lru_cache(maxsize=4)
def catalog_strings(catalog: Catalog) -> CatalogStrings:
    """Build (once per catalog) the JSON fragments of :class:`CatalogStrings`."""
    names = [CATEGORIES[c].name for c in catalog.category]
    product_props = [
        f'{{"product_id":"{pid}","category":"{cat}","price":{price!r},"quantity":{q}}}'
        for pid, cat, price in zip(catalog.product_id, names, catalog.price.tolist(), strict=True)
        for q in (1, 2, 3)
    ]
    paths, titles = _page_paths(catalog)
    page_props = [f'{{"path":"{p}","title":"{t}"}}' for p, t in zip(paths, titles, strict=True)]
    for c, spec in enumerate(CATEGORIES):
        page_props[1 + c] = (
            f'{{"path":"{paths[1 + c]}","title":"{spec.title}","category":"{spec.name}"}}'
        )
    assert len(paths) == Pages(catalog.n_products, len(catalog.queries)).count
    urls = [SHOP_URL + p for p in paths]
    return CatalogStrings(
        product_props=pa.array(product_props, pa.string()),
        page_urls=pa.array(urls, pa.string()),
        page_props=pa.array(page_props, pa.string()),
        query_props=pa.array([f'{{"query":"{q}"}}' for q in catalog.queries], pa.string()),
        referrers=pa.array([f'"{u}"' for u in urls] + list(SOURCE_REFERRERS), pa.string()),
    )


@lru_cache(maxsize=1)
def _client_strings() -> pa.Array:
    """``"utm":...,"user_agent":"..."`` for every (source, device, country, user agent).

    A small vocabulary (a few thousand entries) that stays in cache, so picking
    one per event is much faster than copying long per-session strings around.
    """
    return pa.array(
        [
            f'"utm":{utm},"device":{{"type":"{device}"}},"locale":"{country.locale}",'
            f'"user_agent":"{ua}"'
            for utm in UTM_JSON
            for device in DEVICES
            for country in COUNTRIES
            for ua in _UA_ALL
        ],
        pa.string(),
    )


def _client_codes(sessions: Sessions, people: People) -> np.ndarray:
    """Per session, the index into :func:`_client_strings`."""
    person = sessions.person
    crawler = sessions.persona == persona_code("bot_crawler")
    group = np.where(crawler, len(DEVICES), sessions.device)  # crawlers use bot agents
    ua = _UA_OFFSET[group] + people.ua_pick[person] % _UA_LEN[group]
    code = sessions.source * len(DEVICES) + sessions.device
    return (code * len(COUNTRIES) + people.country[person]) * len(_UA_ALL) + ua


@dataclass(frozen=True)
class _Lookups:
    """Per-event indexes into small string vocabularies, computed once for all chunks."""

    person: np.ndarray
    properties: np.ndarray  # index into the properties pool
    referrer: np.ndarray  # index into CatalogStrings.referrers
    client: np.ndarray  # index into _client_strings()
    session_ids: np.ndarray  # (sessions, 16) hex characters


def _context(
    events: Events, rows: slice, look: _Lookups, people: People, strings: CatalogStrings
) -> pa.Array:
    """The context JSON of the events in ``rows``."""
    return join(
        '{"page":{"url":"', strings.page_urls.take(events.page[rows]),
        '","referrer":', strings.referrers.take(look.referrer[rows]),
        "},", _client_strings().take(look.client[rows]),
        ',"ip":"', people.ip.take(look.person[rows]),
        '","session_id":"', fixed_width(look.session_ids[events.session[rows]]), '"}',
    )  # fmt: skip


def _orders(
    rng: np.random.Generator, funnel: Funnel, catalog: Catalog
) -> tuple[pa.Array, pa.Array]:
    """Checkout JSON per checkout session and purchase JSON per purchase session."""
    c = np.flatnonzero(funnel.checkout)
    checkout = join(
        '{"value":', numbers(funnel.value[c]), f',"currency":"{CURRENCY}","items":',
        numbers(funnel.items[c]), "}",
    )  # fmt: skip
    p = np.flatnonzero(funnel.purchase)
    line = (funnel.add_qty > 0) & ~funnel.removed & funnel.purchase[funnel.view_session]
    per_order = np.bincount(funnel.view_session[line], minlength=funnel.purchase.size)[p]
    ids = pa.array(catalog.product_id).take(funnel.view_product[line])
    lists = pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(per_order)], pa.int32()), ids)
    purchase = join(
        '{"revenue":', numbers(funnel.value[p]), f',"currency":"{CURRENCY}","order_id":"o',
        hex_strings(rng, p.size, 6), '","items":', numbers(funnel.items[p]),
        ',"product_ids":["', pc.binary_join(lists, '","'), '"]}',
    )  # fmt: skip
    return checkout, purchase


def _property_pool(
    rng: np.random.Generator,
    funnel: Funnel,
    strings: CatalogStrings,
    people: People,
    catalog: Catalog,
) -> tuple[pa.Array, np.ndarray]:
    """All properties JSON fragments in one array, and where each kind's block starts."""
    checkout, purchase = _orders(rng, funnel, catalog)
    pool = [strings.product_props, strings.page_props, strings.query_props, people.traits]
    pool += [checkout, purchase]
    return pa.concat_arrays(pool), np.r_[0, np.cumsum([len(a) for a in pool])]


def _property_index(
    events: Events, person: np.ndarray, funnel: Funnel, offset: np.ndarray
) -> np.ndarray:
    """Each event's row in the properties pool."""
    kind = events.kind
    index = np.zeros(kind.size, dtype=np.int64)
    is_product = np.isin(kind, (PRODUCT_VIEW, ADD_TO_CART, REMOVE_FROM_CART))
    index[is_product] = events.product[is_product] * 3 + events.qty[is_product] - 1
    for code, k, values in (
        (PAGE_VIEW, 1, events.page),
        (SEARCH, 2, events.query),
        (IDENTIFY, 3, person),
        (CHECKOUT, 4, np.cumsum(funnel.checkout) - 1),
        (PURCHASE, 5, np.cumsum(funnel.purchase) - 1),
    ):
        mask = kind == code
        per_session = code in (CHECKOUT, PURCHASE)
        index[mask] = offset[k] + (values[events.session[mask]] if per_session else values[mask])
    return index


def _lookups(
    rng: np.random.Generator,
    events: Events,
    sessions: Sessions,
    funnel: Funnel,
    people: People,
    offset: np.ndarray,
    strings: CatalogStrings,
) -> _Lookups:
    person = sessions.person[events.session]
    # Negative referrer codes are traffic sources, listed after the pages.
    n_pages = len(strings.page_urls)
    referrer = np.where(events.referrer >= 0, events.referrer, n_pages - 1 - events.referrer)
    raw_ids = np.frombuffer(rng.bytes(sessions.size * 8), np.uint8).reshape(-1, 8)
    return _Lookups(
        person=person,
        properties=_property_index(events, person, funnel, offset),
        referrer=referrer,
        client=_client_codes(sessions, people)[events.session],
        session_ids=hex_chars(raw_ids),
    )


def _batch(
    rng: np.random.Generator,
    events: Events,
    rows: slice,
    look: _Lookups,
    pool: pa.Array,
    people: People,
    strings: CatalogStrings,
) -> pa.RecordBatch:
    no_id = pa.scalar(None, pa.string())
    person = look.person[rows]
    columns = [
        uuid4_strings(rng, len(person)),
        pa.array(KINDS).take(events.kind[rows]),
        pc.if_else(events.has_user[rows], people.user_id.take(person), no_id),
        pc.if_else(events.has_anon[rows], people.anonymous_id.take(person), no_id),
        pa.array(events.ts_us[rows], pa.timestamp("us", tz="UTC")),
        pool.take(look.properties[rows]),
        _context(events, rows, look, people, strings),
        pa.array(CONSENT_JSON).take(people.consent[person]),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=EVENT_SCHEMA)


def encode_events(
    rng: np.random.Generator,
    events: Events,
    sessions: Sessions,
    funnel: Funnel,
    people: People,
    catalog: Catalog,
) -> pa.Table:
    """Build the events table (rows in the order of ``events``).

    Works in record batches of ENCODE_CHUNK rows: the long context strings of
    one batch fit in memory that is reused, instead of gigabyte-sized temporaries.
    """
    strings = catalog_strings(catalog)
    pool, offset = _property_pool(rng, funnel, strings, people, catalog)
    look = _lookups(rng, events, sessions, funnel, people, offset, strings)
    batches = [
        _batch(rng, events, slice(lo, lo + ENCODE_CHUNK), look, pool, people, strings)
        for lo in range(0, events.kind.size, ENCODE_CHUNK)
    ]
    return pa.Table.from_batches(batches, schema=EVENT_SCHEMA)
