"""The behavioural model: from sessions to ordered, timed events (codes, no strings yet).

Both the batch generator and live traffic go through the same three steps, so
live traffic behaves exactly like the history:

1. :func:`draw_funnel` — product views, cart adds and removals, checkout and
   purchase decisions per session;
2. identity — who is known before/within each session (the batch generator
   needs every session's checkouts first, live traffic only the user's state);
3. :func:`expand_events` — the ordered events of each session with timestamps,
   pages, referrers and which ids they carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tailorkit.demo.catalog import N_CATEGORIES, Catalog
from tailorkit.demo.personas import QUANTITY_PROBS, persona_table

SECOND_US = 1_000_000
MINUTE_US = 60 * SECOND_US
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
MAX_SESSION_US = 2 * HOUR_US
# A new session starts only this long after the previous one, so a 30-minute
# inactivity rule and the session_id in the context agree.
SESSION_GAP_US = MAX_SESSION_US + 30 * MINUTE_US
P_FAVOURITE = 0.7  # share of browsing within the visitor's two favourite categories
P_PLAN_IDENTIFY = 0.3  # chance per session that an anonymous visitor logs in without buying
P_LANDING_CATEGORY = 0.5  # share of sessions landing on a category page instead of home

KINDS = (
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
    "search",
    "identify",
)
PAGE_VIEW, PRODUCT_VIEW, ADD_TO_CART, REMOVE_FROM_CART, CHECKOUT, PURCHASE, SEARCH, IDENTIFY = (
    range(len(KINDS))
)
# Ordering inside a session: landing page, browsing, identify at checkout, checkout, purchase.
_LANDING, _BROWSE, _CHECKOUT_LOGIN, _CHECKOUT, _PURCHASE = range(5)


@dataclass(frozen=True)
class Pages:
    """Page codes: home, category pages, product pages, search pages, then fixed pages."""

    n_products: int
    n_queries: int

    @property
    def home(self) -> int:
        """Code of the home page."""
        return 0

    def category(self, code: np.ndarray) -> np.ndarray:
        """Page codes of category pages."""
        return 1 + code

    def product(self, code: np.ndarray) -> np.ndarray:
        """Page codes of product pages."""
        return 1 + N_CATEGORIES + code

    def search(self, code: np.ndarray) -> np.ndarray:
        """Page codes of search result pages."""
        return 1 + N_CATEGORIES + self.n_products + code

    def fixed(self, offset: int) -> int:
        """Page code of fixed page ``offset``: 0 cart, 1 checkout, 2 order complete, 3 login."""
        return 1 + N_CATEGORIES + self.n_products + self.n_queries + offset

    @property
    def count(self) -> int:
        """Number of page codes."""
        return self.fixed(4)


CART_PAGE, CHECKOUT_PAGE, COMPLETE_PAGE, LOGIN_PAGE = range(4)


@dataclass
class Sessions:
    """One row per session, sorted by person then start."""

    person: np.ndarray  # row in the people arrays
    persona: np.ndarray
    fav: np.ndarray  # (sessions, 2) favourite categories of the visitor
    start_us: np.ndarray
    device: np.ndarray
    source: np.ndarray
    bounce: np.ndarray  # the session ends on the landing page

    @property
    def size(self) -> int:
        """Number of sessions."""
        return int(self.person.size)


@dataclass
class Funnel:
    """Shopping decisions: one row per product view, plus per-session totals."""

    view_session: np.ndarray
    view_product: np.ndarray
    add_qty: np.ndarray  # items added to the cart from this view; 0 when not added
    removed: np.ndarray  # the added items were removed again
    value: np.ndarray  # per session: value of the cart at the end
    items: np.ndarray  # per session: items in the cart at the end
    checkout: np.ndarray
    purchase: np.ndarray


@dataclass
class Events:
    """Ordered events (by session, then time) as codes."""

    session: np.ndarray
    kind: np.ndarray
    product: np.ndarray  # -1 when not a product event
    qty: np.ndarray
    query: np.ndarray  # -1 when not a search
    page: np.ndarray
    referrer: np.ndarray  # page code, or -1 - source for the first event of a session
    ts_us: np.ndarray
    has_user: np.ndarray
    has_anon: np.ndarray

    def take(self, order: np.ndarray) -> Events:
        """Reorder (or subset) all columns."""
        return Events(**{k: v[order] for k, v in vars(self).items()})


def categorical(rng: np.random.Generator, groups: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Draw one category per row from ``probs[groups[row]]`` (rows of ``probs`` sum to 1)."""
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0
    u = rng.random(groups.size)
    out = np.empty(groups.size, dtype=np.int64)
    # A loop over the few groups keeps memory linear in the number of rows.
    for g in np.unique(groups):
        mask = groups == g
        out[mask] = np.searchsorted(cum[g], u[mask], side="right")
    return out


@lru_cache(maxsize=4)
def _product_cdf(catalog: Catalog) -> np.ndarray:
    """Per persona, cumulative product weights where category ``c`` spans ``(c, c+1]``."""
    table = persona_table()
    log_price = np.log(catalog.price)
    distance = (log_price[None, :] - np.log(table.price_center)[:, None]) / table.price_width[
        :, None
    ]
    weight = catalog.popularity[None, :] * np.exp(-0.5 * distance**2)
    weight = weight * np.where(catalog.on_sale[None, :], table.sale_affinity[:, None], 1.0)
    cdf = np.empty_like(weight)
    for c in range(N_CATEGORIES):
        lo, hi = catalog.cat_start[c], catalog.cat_start[c + 1]
        block = np.cumsum(weight[:, lo:hi], axis=1)
        cdf[:, lo:hi] = c + block / block[:, -1:]
        cdf[:, hi - 1] = c + 1.0  # exact block end despite rounding
    return cdf


def pick_categories(rng: np.random.Generator, persona: np.ndarray, fav: np.ndarray) -> np.ndarray:
    """A category per row: mostly one of the visitor's favourites, else the persona's taste."""
    favourite = fav[np.arange(persona.size), rng.integers(0, 2, persona.size)]
    other = categorical(rng, persona, persona_table().categories)
    return np.where(rng.random(persona.size) < P_FAVOURITE, favourite, other)


def pick_products(
    rng: np.random.Generator, persona: np.ndarray, fav: np.ndarray, catalog: Catalog
) -> np.ndarray:
    """Products viewed: category by taste, then product by popularity, price fit and sales."""
    target = pick_categories(rng, persona, fav) + rng.random(persona.size)
    cdf = _product_cdf(catalog)
    out = np.empty(persona.size, dtype=np.int64)
    for p in np.unique(persona):
        mask = persona == p
        out[mask] = np.searchsorted(cdf[p], target[mask], side="right")
    return np.minimum(out, catalog.n_products - 1)


def draw_funnel(rng: np.random.Generator, sessions: Sessions, catalog: Catalog) -> Funnel:
    """Draw product views, cart adds/removals, checkouts and purchases for every session."""
    table = persona_table()
    n_views = rng.poisson(table.product_views[sessions.persona]) * ~sessions.bounce
    view_session = np.repeat(np.arange(sessions.size), n_views)
    persona = sessions.persona[view_session]
    product = pick_products(rng, persona, sessions.fav[view_session], catalog)
    added = (rng.random(product.size) < table.p_cart[persona]) & catalog.in_stock[product]
    qty = rng.choice(np.arange(1, 4), size=product.size, p=QUANTITY_PROBS) * added
    removed = added & (rng.random(product.size) < table.p_remove[persona])
    kept = np.where(removed, 0, qty)
    items = np.bincount(view_session, weights=kept, minlength=sessions.size).astype(np.int64)
    value = np.bincount(
        view_session, weights=kept * catalog.price[product], minlength=sessions.size
    )
    checkout = (items > 0) & (rng.random(sessions.size) < table.p_checkout[sessions.persona])
    purchase = checkout & (rng.random(sessions.size) < table.p_purchase[sessions.persona])
    return Funnel(
        view_session, product, qty, removed, np.round(value, 2), items, checkout, purchase
    )


def _part(
    session: np.ndarray,
    phase: int,
    pos: np.ndarray,
    kind: int,
    page: np.ndarray | int,
    product: np.ndarray | int = -1,
    qty: np.ndarray | int = 0,
    query: np.ndarray | int = -1,
) -> dict[str, np.ndarray]:
    n = session.size
    return {
        "session": session,
        "phase": np.full(n, phase, dtype=np.int8),
        "pos": pos,
        "kind": np.full(n, kind, dtype=np.int8),
        "page": np.broadcast_to(page, n),
        "product": np.broadcast_to(product, n),
        "qty": np.broadcast_to(qty, n),
        "query": np.broadcast_to(query, n),
    }


def _page_parts(
    rng: np.random.Generator, sessions: Sessions, pages: Pages
) -> list[dict[str, np.ndarray]]:
    """Landing page of every session plus extra home/category page views."""
    n = sessions.size
    all_sessions = np.arange(n)
    landing_cat = pages.category(pick_categories(rng, sessions.persona, sessions.fav))
    landing = np.where(rng.random(n) < P_LANDING_CATEGORY, landing_cat, pages.home)
    n_extra = rng.poisson(persona_table().page_views[sessions.persona]) * ~sessions.bounce
    extra = np.repeat(all_sessions, n_extra)
    extra_cat = pages.category(pick_categories(rng, sessions.persona[extra], sessions.fav[extra]))
    extra_page = np.where(rng.random(extra.size) < 0.3, pages.home, extra_cat)
    return [
        _part(all_sessions, _LANDING, np.zeros(n), PAGE_VIEW, landing),
        _part(extra, _BROWSE, rng.random(extra.size), PAGE_VIEW, extra_page),
    ]


def _search_part(
    rng: np.random.Generator, sessions: Sessions, catalog: Catalog, pages: Pages
) -> dict[str, np.ndarray]:
    """Searches: a query about a favourite category, bargain wording by persona."""
    table = persona_table()
    n_searches = rng.poisson(table.searches[sessions.persona]) * ~sessions.bounce
    session = np.repeat(np.arange(sessions.size), n_searches)
    persona = sessions.persona[session]
    category = pick_categories(rng, persona, sessions.fav[session])
    per_category = catalog.queries_per_category
    n_base = int((~catalog.query_is_bargain[:per_category]).sum())
    bargain = rng.random(session.size) < table.bargain_queries[persona]
    u = rng.random(session.size)
    offset = np.where(bargain, n_base + u * (per_category - n_base), u * n_base).astype(np.int64)
    query = category * per_category + offset
    pos = rng.random(session.size)
    return _part(session, _BROWSE, pos, SEARCH, pages.search(query), query=query)


def _cart_parts(
    rng: np.random.Generator, funnel: Funnel, pages: Pages
) -> list[dict[str, np.ndarray]]:
    """Product views, the adds right after their view, and removals later in the session."""
    view_pos = rng.random(funnel.view_session.size)
    views = _part(
        funnel.view_session, _BROWSE, view_pos, PRODUCT_VIEW,
        pages.product(funnel.view_product), funnel.view_product, 1,
    )  # fmt: skip
    a = np.flatnonzero(funnel.add_qty > 0)
    add_pos = view_pos[a] + 1e-9
    adds = _part(
        funnel.view_session[a], _BROWSE, add_pos, ADD_TO_CART,
        pages.product(funnel.view_product[a]), funnel.view_product[a], funnel.add_qty[a],
    )  # fmt: skip
    r = np.flatnonzero(funnel.removed)
    remove_pos = view_pos[r] + 2e-9 + (1 - view_pos[r]) * rng.random(r.size)
    removes = _part(
        funnel.view_session[r], _BROWSE, remove_pos, REMOVE_FROM_CART,
        pages.fixed(CART_PAGE), funnel.view_product[r], funnel.add_qty[r],
    )  # fmt: skip
    return [views, adds, removes]


def _order_parts(
    rng: np.random.Generator, funnel: Funnel, identify: np.ndarray, pages: Pages
) -> list[dict[str, np.ndarray]]:
    """Identify (at checkout when there is one, else any time), checkout and purchase."""
    who = np.flatnonzero(identify)
    at_checkout = funnel.checkout[who]
    phase = np.where(at_checkout, _CHECKOUT_LOGIN, _BROWSE)
    page = np.where(at_checkout, pages.fixed(CHECKOUT_PAGE), pages.fixed(LOGIN_PAGE))
    ident = _part(who, _BROWSE, rng.random(who.size), IDENTIFY, page)
    ident["phase"] = phase.astype(np.int8)
    checkout = np.flatnonzero(funnel.checkout)
    purchase = np.flatnonzero(funnel.purchase)
    return [
        ident,
        _part(checkout, _CHECKOUT, np.zeros(checkout.size), CHECKOUT, pages.fixed(CHECKOUT_PAGE)),
        _part(purchase, _PURCHASE, np.zeros(purchase.size), PURCHASE, pages.fixed(COMPLETE_PAGE)),
    ]


def _timestamps(rng: np.random.Generator, session: np.ndarray, sessions: Sessions) -> np.ndarray:
    """Session start plus exponential dwell times, squeezed into MAX_SESSION_US."""
    first = np.r_[True, session[1:] != session[:-1]]
    mean = persona_table().dwell_seconds[sessions.persona[session]]
    gap = np.where(first, 0.0, rng.exponential(mean) + 1.0)
    total = np.bincount(session, weights=gap, minlength=sessions.size)
    limit = (MAX_SESSION_US - MINUTE_US) / SECOND_US
    gap *= np.minimum(1.0, limit / np.maximum(total, 1.0))[session]
    # At least 1 ms between events keeps the order within a session strict.
    gap_us = np.where(first, 0, np.maximum(1000, (gap * SECOND_US).astype(np.int64)))
    elapsed = np.cumsum(gap_us)
    starts = np.flatnonzero(first)
    elapsed -= np.repeat(elapsed[starts], np.diff(np.r_[starts, session.size]))
    return sessions.start_us[session] + elapsed


def _identities(
    kind: np.ndarray, session: np.ndarray, known: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Which ids each event carries.

    Before identify only ``anonymous_id``; identify and later events carry both,
    except purchases of known users, which the shop's backend reports with the
    ``user_id`` alone (as Segment recommends for server-side order events).
    """
    index = np.arange(kind.size)
    identify_at = np.full(known.size, kind.size)
    is_identify = kind == IDENTIFY
    identify_at[session[is_identify]] = index[is_identify]
    known_now = known[session] | (index > identify_at[session])
    has_user = known_now | is_identify
    has_anon = ~(known_now & (kind == PURCHASE))
    return has_user, has_anon


def _referrers(page: np.ndarray, session: np.ndarray, sessions: Sessions) -> np.ndarray:
    """Previous page of the session; the first page's referrer comes from the traffic source."""
    referrer = np.r_[-1, page[:-1]]
    first = np.r_[True, session[1:] != session[:-1]]
    return np.where(first, -1 - sessions.source[session], referrer)


def expand_events(
    rng: np.random.Generator,
    sessions: Sessions,
    funnel: Funnel,
    known: np.ndarray,
    identify: np.ndarray,
    catalog: Catalog,
) -> Events:
    """Lay out every session's events in order, with timestamps and identities.

    ``known[s]``: the visitor was identified before session ``s``; ``identify[s]``:
    the visitor identifies during session ``s``.
    """
    pages = Pages(catalog.n_products, len(catalog.queries))
    parts = _page_parts(rng, sessions, pages)
    parts.append(_search_part(rng, sessions, catalog, pages))
    parts += _cart_parts(rng, funnel, pages)
    parts += _order_parts(rng, funnel, identify, pages)
    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    # One integer key for (session, phase) makes the sort a two-key lexsort.
    order = np.lexsort((cols["pos"], cols["session"].astype(np.int64) * 8 + cols["phase"]))
    cols = {k: v[order] for k, v in cols.items()}
    session, kind = cols["session"].astype(np.int64), cols["kind"]
    has_user, has_anon = _identities(kind, session, known)
    return Events(
        session=session,
        kind=kind,
        product=cols["product"].astype(np.int64),
        qty=cols["qty"].astype(np.int64),
        query=cols["query"].astype(np.int64),
        page=cols["page"].astype(np.int64),
        referrer=_referrers(cols["page"].astype(np.int64), session, sessions),
        ts_us=_timestamps(rng, session, sessions),
        has_user=has_user,
        has_anon=has_anon,
    )
