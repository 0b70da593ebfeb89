"""Training data from the warehouse: Ibis aggregates in SQL, pandas receives small frames.

Every learner starts from an :class:`EventSource` — the cleaned, resolved
events (:func:`tailorkit.collect.quality.clean_events`: bots and rate
outliers removed, anonymous history merged into the known user) restricted
to behaviour (no identify/alias, exposures or tailorkit's own segment
events) — with the JSON fields the learners read parsed into columns
(:func:`parsed`). Cleaning can be done *as of* an instant (:class:`AsOf`),
so that not even the bot/outlier flags of a training snapshot depend on
later events. The heavy lifting (per-person aggregates, interactions,
session step lists) runs in the warehouse; only one row per person, per
(person, product) or per session comes back.

Time windows are half-open, ``start <= timestamp < end``: features computed
"as of a cutoff" never see an event at or after it.

>>> import ibis
>>> from datetime import datetime, UTC
>>> events = ibis.table({"person_id": "string", "type": "string", "event_id": "string",
...     "timestamp": "timestamp('UTC')", "properties": "string", "context": "string",
...     "personalization": "boolean"}, name="events")
>>> table = behaviour_features(parsed(events), end=datetime(2024, 6, 1, tzinfo=UTC))
>>> "product_views" in table.columns and "days_since_last" in table.columns
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from tailorkit.collect.quality import SYSTEM_EVENT_TYPES, clean_events
from tailorkit.project.loader import QualitySettings
from tailorkit.store.warehouse import Warehouse

#: Event types that are not behaviour: identity plumbing and tailorkit's own writes.
NOT_BEHAVIOUR = tuple(
    dict.fromkeys(("identify", "alias", "group", "exposure", *SYSTEM_EVENT_TYPES))
)
#: Counted per person, by event type (feature name -> event type).
TYPE_COUNTS = {
    "page_views": "page_view",
    "product_views": "product_view",
    "cart_adds": "add_to_cart",
    "cart_removes": "remove_from_cart",
    "checkouts": "checkout",
    "purchases": "purchase",
    "searches": "search",
}
#: Counts also computed over the last N days before ``end`` (``<name>_<N>d``).
WINDOWED = ("events", "sessions", "product_views", "cart_adds", "checkouts", "purchases")
DAY_SECONDS = 86_400.0
#: Events about one product (``product_id``, ``category`` and ``price`` in properties).
PRODUCT_EVENTS = ("product_view", "add_to_cart", "remove_from_cart")


class AsOf(Warehouse):
    """A view of a warehouse before ``until``: its resolved events stop there.

    :func:`tailorkit.collect.quality.clean_events` derives bot and outlier
    flags from ``resolved_events()``, so through this view the flags — and
    with them who is in a training population — cannot depend on anything at
    or after ``until``. ``resolved`` may be a materialized copy of the
    warehouse's resolved events (faster when many views are taken).
    """

    def __init__(
        self, wh: Warehouse, until: datetime | None, resolved: ir.Table | None = None
    ) -> None:
        # a view shares the connection and its lock; it creates and owns nothing
        self.url, self.con, self.backend, self.lock = wh.url, wh.con, wh.backend, wh.lock
        self.until = until
        self._resolved = resolved

    #: resolved events stop at ``until``: the stored flags (of every event) do not apply
    complete = False

    def resolved_events(
        self,
        types: Sequence[str] | None = None,
        without: Sequence[str] | None = None,
        persons: ir.Table | None = None,
    ) -> ir.Table:
        """Resolved events with ``timestamp < until`` (optionally only ``types``, ``persons``)."""
        if self._resolved is not None:
            events = self._resolved
            if types is not None:
                events = events.filter(events.type.isin(list(types)))
            if without is not None:
                events = events.filter(events.type.notin(list(without)))
            if persons is not None:
                events = events.filter(events.person_id.isin(persons.person_id))
        else:
            events = super().resolved_events(types, without, persons)
        if self.until is None:
            return events
        return events.filter(events.timestamp < ibis.literal(self.until))

    def close(self) -> None:
        """Nothing to release: the underlying warehouse owns the connection."""


@dataclass
class EventSource:
    """Where learners get events: cleaned as of an instant (features), or unfiltered (labels).

    ``clean(until)`` — behavioural events before ``until``, without the
    persons flagged by the quality rules *as of* ``until``; ``raw(until)`` —
    the same events without the quality filter (a label must see what a
    person did even if they are flagged later). Both keep only events sent
    with personalization consent unless ``personalization_only`` is off: a
    person who refused it is neither scored nor recommended to, and their
    behaviour does not train models.
    """

    wh: Warehouse
    quality: QualitySettings
    personalization_only: bool = True
    resolved: ir.Table | None = None  # e.g. a temporary copy of wh.resolved_events()
    _cache: dict[tuple[datetime | None, bool], ir.Table] = field(default_factory=dict, repr=False)

    def clean(self, until: datetime | None = None) -> ir.Table:
        """Cleaned, parsed behavioural events before ``until`` (all when None)."""
        return self._events(until, True)

    def raw(self, until: datetime | None = None) -> ir.Table:
        """Parsed behavioural events before ``until``, quality flags not applied."""
        return self._events(until, False)

    def _events(self, until: datetime | None, clean: bool) -> ir.Table:
        key = (until, clean)
        if key not in self._cache:
            view = AsOf(self.wh, until, self.resolved)
            quality = self.quality if clean else QualitySettings(exclude_flagged_users=False)
            events = clean_events(view, quality)
            events = events.filter(events.type.notin(NOT_BEHAVIOUR))
            if self.personalization_only:
                events = events.filter(events.personalization)
            self._cache[key] = parsed(events)
        return self._cache[key]

    def remember(self, until: datetime | None, table: ir.Table) -> None:
        """Use ``table`` (e.g. materialized) for ``clean(until)`` from now on."""
        self._cache[(until, True)] = table


def activity_events(
    wh: Warehouse,
    quality: QualitySettings,
    personalization_only: bool = True,
    until: datetime | None = None,
) -> ir.Table:
    """Cleaned, resolved, parsed behavioural events (see :meth:`EventSource.clean`)."""
    return EventSource(wh, quality, personalization_only).clean(until)


def parsed(events: ir.Table) -> ir.Table:
    """``person_id, event_id, type, timestamp`` plus the JSON fields learners use.

    ``session`` is ``context.session_id``; events without one count one
    session per person and calendar day (purchase logs such as CDNOW have no
    sessions). ``revenue`` is the purchase amount, ``price`` the product
    price of views and cart events.
    """
    ctx = events.context.cast("json")
    props = events.properties.cast("json")
    day_key = events.person_id.concat(":", events.timestamp.date().cast("string"))
    return events.select(
        "person_id",
        "event_id",
        "type",
        "timestamp",
        session=ibis.coalesce(ctx["session_id"].str, day_key),
        device=ctx["device"]["type"].str,
        product_id=props["product_id"].str,
        category=props["category"].str,
        price=props["price"].float,
        revenue=props["revenue"].float,
        properties=events.properties,
    )


def between(events: ir.Table, start: datetime | None, end: datetime | None) -> ir.Table:
    """Events with ``start <= timestamp < end`` (either bound optional)."""
    if start is not None:
        events = events.filter(events.timestamp >= ibis.literal(start))
    if end is not None:
        events = events.filter(events.timestamp < ibis.literal(end))
    return events


def _seconds_before(end: datetime, ts: ir.TimestampValue) -> ir.FloatingValue:
    # microseconds: whole-second deltas truncate differently on DuckDB and PostgreSQL
    micros = ibis.literal(end).delta(ts, unit="microsecond").cast("float64")
    return micros / 1e6


def _counts(t: ir.Table, suffix: str = "", since: datetime | None = None) -> dict[str, ir.Value]:
    """Per-type counts (optionally only since ``since``), named ``<name><suffix>``."""
    recent = t.timestamp >= ibis.literal(since) if since is not None else ibis.literal(True)
    out: dict[str, ir.Value] = {
        f"events{suffix}": t.count(where=recent),
        f"sessions{suffix}": t.session.nunique(where=recent),
    }
    for name, kind in TYPE_COUNTS.items():
        if suffix and name not in WINDOWED:
            continue
        out[f"{name}{suffix}"] = t.count(where=recent & (t.type == kind))
    return out


def behaviour_features(
    events: ir.Table,
    end: datetime,
    start: datetime | None = None,
    windows: Sequence[int] = (7,),
) -> ir.Table:
    """One row per person active in ``[start, end)``: counts, money, habits, recency.

    ``events`` comes from :func:`parsed`. Columns: total and per-type counts,
    ``sessions``, ``active_days``, ``revenue``, ``avg_view_price``,
    ``categories_viewed``, ``products_viewed``, ``mobile_share`` (of events),
    ``search_share``, ``weekend_share``, per-session rates, ``days_since_last``,
    ``days_since_first``, ``days_since_purchase`` (null: never bought in the
    window) and windowed counts ``<name>_<N>d`` for each of ``windows``.
    """
    t = between(events, start, end)
    is_view = t.type == "product_view"
    aggregates: dict[str, ir.Value] = _counts(t)
    for days in windows:
        aggregates.update(_counts(t, f"_{days}d", end - timedelta(days=days)))
    aggregates.update(
        active_days=t.timestamp.date().nunique(),
        revenue=t.revenue.sum(where=t.type == "purchase"),
        avg_view_price=t.price.mean(where=is_view),
        categories_viewed=t.category.nunique(where=is_view),
        products_viewed=t.product_id.nunique(where=is_view),
        mobile_events=t.count(where=t.device == "mobile"),
        weekend_events=t.count(where=t.timestamp.day_of_week.index() >= 5),
        first_ts=t.timestamp.min(),
        last_ts=t.timestamp.max(),
        last_purchase_ts=t.timestamp.max(where=t.type == "purchase"),
    )
    g = t.group_by("person_id").aggregate(**aggregates)
    per_session = g.sessions.cast("float64")
    return g.mutate(
        revenue=g.revenue.fill_null(0.0),
        mobile_share=g.mobile_events.cast("float64") / g.events,
        search_share=g.searches.cast("float64") / g.events,
        weekend_share=g.weekend_events.cast("float64") / g.events,
        events_per_session=g.events / per_session,
        views_per_session=g.product_views / per_session,
        cart_adds_per_session=g.cart_adds / per_session,
        purchases_per_session=g.purchases / per_session,
        searches_per_session=g.searches / per_session,
        days_since_last=_seconds_before(end, g.last_ts) / DAY_SECONDS,
        days_since_first=_seconds_before(end, g.first_ts) / DAY_SECONDS,
        days_since_purchase=_seconds_before(end, g.last_purchase_ts) / DAY_SECONDS,
    ).drop("mobile_events", "weekend_events", "first_ts", "last_ts", "last_purchase_ts")


def interactions(events: ir.Table, start: datetime | None, end: datetime | None) -> ir.Table:
    """``person_id, product_id, views, cart_adds, purchases, first_ts, last_ts`` in a window.

    Purchases name their products in ``product_ids`` (one row per product);
    views and cart adds in ``product_id``.
    """
    t = between(events, start, end)
    browse = t.filter(t.type.isin(["product_view", "add_to_cart"]), t.product_id.notnull())
    browse = browse.select("person_id", "product_id", "type", "timestamp")
    bought = t.filter(t.type == "purchase")
    items = bought.select(
        "person_id", "timestamp", pid=bought.properties.cast("json")["product_ids"].array
    )
    items = items.mutate(pid=items.pid.unnest())
    bought_rows = items.select(
        "person_id", product_id=items.pid.str, type=ibis.literal("purchase"), timestamp="timestamp"
    )
    rows = browse.union(bought_rows.filter(bought_rows.product_id.notnull()))
    return rows.group_by(["person_id", "product_id"]).aggregate(
        views=rows.count(where=rows.type == "product_view"),
        cart_adds=rows.count(where=rows.type == "add_to_cart"),
        purchases=rows.count(where=rows.type == "purchase"),
        first_ts=rows.timestamp.min(),
        last_ts=rows.timestamp.max(),
    )


def session_steps(
    events: ir.Table,
    start: datetime | None = None,
    end: datetime | None = None,
    detail: str | None = None,
) -> ir.Table:
    """One row per session: ``person_id, session, start, steps`` (ordered list of strings).

    A step is the event type; with ``detail="category"`` product events
    (views, cart adds and removals) carry their category (``product_view:shoes``).
    """
    t = between(events, start, end)
    step: ir.StringValue = t.type
    if detail == "category":
        product_event = t.type.isin(list(PRODUCT_EVENTS)) & t.category.notnull()
        step = ibis.cases((product_event, t.type.concat(":", t.category)), else_=t.type)
    elif detail is not None:
        raise ValueError(f"detail must be None or 'category', not {detail!r}")
    t = t.mutate(_step=step)
    return t.group_by(["person_id", "session"]).aggregate(
        start=t.timestamp.min(),
        steps=t._step.collect(order_by=[t.timestamp, t.event_id]),
    )


def products_frame(wh: Warehouse) -> pd.DataFrame:
    """The ``products`` table (catalog), or an empty frame when the project has none."""
    with wh.lock:
        if "products" not in wh.con.list_tables():
            return pd.DataFrame(columns=["product_id"])
        return fetch(wh, wh.con.table("products"))


def fetch(wh: Warehouse, expr: ir.Table) -> pd.DataFrame:
    """Run ``expr`` on the warehouse (under its lock) into pandas."""
    with wh.lock:
        return wh.con.to_pyarrow(expr).to_pandas()


def data_range(wh: Warehouse, events: ir.Table) -> tuple[datetime, datetime] | None:
    """First and last event timestamps of ``events``, or None when there are none."""
    frame = fetch(wh, events.aggregate(first=events.timestamp.min(), last=events.timestamp.max()))
    row: dict[Any, Any] = frame.iloc[0].to_dict()
    if pd.isna(row["first"]):
        return None
    return pd.Timestamp(row["first"]).to_pydatetime(), pd.Timestamp(row["last"]).to_pydatetime()
