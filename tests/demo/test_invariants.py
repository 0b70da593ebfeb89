"""Schema and invariants of the generated events, users and products."""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa

from tailorkit.demo import DemoShop

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
EVENT_COLUMNS = [
    ("event_id", pa.string()),
    ("type", pa.string()),
    ("user_id", pa.string()),
    ("anonymous_id", pa.string()),
    ("timestamp", pa.timestamp("us", tz="UTC")),
    ("properties", pa.string()),
    ("context", pa.string()),
    ("consent", pa.string()),
]
TYPES = {
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
    "search",
    "identify",
}


def test_events_have_exactly_the_documented_columns(shop: DemoShop) -> None:
    assert [(f.name, f.type) for f in shop.events.schema] == EVENT_COLUMNS
    assert set(shop.events.column("type").unique().to_pylist()) == TYPES


def test_every_event_has_an_id_and_a_unique_uuid4(frame: pd.DataFrame) -> None:
    assert (frame.user_id.notna() | frame.anonymous_id.notna()).all()
    assert frame.event_id.is_unique
    assert frame.event_id.str.fullmatch(UUID4).all()
    assert frame.anonymous_id.dropna().str.fullmatch(UUID4).all()


def test_timestamps_are_sorted_and_inside_the_window(shop: DemoShop, frame: pd.DataFrame) -> None:
    ts = frame.timestamp
    assert ts.is_monotonic_increasing
    assert ts.min() >= pd.Timestamp(shop.start)
    assert ts.max() < pd.Timestamp(shop.end)


def test_json_columns_have_the_documented_shape(frame: pd.DataFrame) -> None:
    for ctx in frame.ctx.sample(2_000, random_state=0):
        assert set(ctx) >= {"page", "utm", "device", "locale", "user_agent", "ip"}
        assert set(ctx["page"]) == {"url", "referrer"}
        assert set(ctx["utm"]) == {"source", "medium", "campaign"}
        assert ctx["device"]["type"] in {"mobile", "desktop", "tablet"}
    assert set(frame.source) == {"google", "newsletter", "facebook", "direct"}
    product = frame.props[frame.type == "add_to_cart"].iloc[0]
    assert set(product) == {"product_id", "category", "price", "quantity"}
    purchase = frame.props[frame.type == "purchase"].iloc[0]
    assert {"revenue", "currency", "order_id", "items"} <= set(purchase)
    assert purchase["currency"] == "EUR" and purchase["revenue"] > 0
    assert all("query" in p for p in frame.props[frame.type == "search"])
    consents = set(frame.consent)
    assert '{"analytics":true,"personalization":true}' in consents
    assert '{"analytics":true,"personalization":false}' in consents


def test_purchases_follow_a_checkout_in_the_same_session(frame: pd.DataFrame) -> None:
    first_checkout = frame[frame.type == "checkout"].groupby("session").timestamp.min()
    purchases = frame[frame.type == "purchase"]
    assert len(purchases) > 0
    checkout_at = purchases.session.map(first_checkout)
    assert checkout_at.notna().all()
    assert (purchases.timestamp > checkout_at).all()
    # Each session belongs to one visitor.
    assert (frame.groupby("session").person.nunique() == 1).all()


def test_sessions_are_separated_by_at_least_thirty_minutes(frame: pd.DataFrame) -> None:
    # So a 30-minute inactivity rule finds the same sessions as context.session_id.
    ordered = frame.sort_values(["person", "timestamp"])
    gap = ordered.timestamp.diff()
    new_session = ordered.session != ordered.session.shift()
    same_person = ordered.person == ordered.person.shift()
    assert (gap[new_session & same_person] >= pd.Timedelta(minutes=30)).all()
    assert (gap[~new_session] < pd.Timedelta(minutes=30)).all()


def test_anonymous_then_identified_visitors(frame: pd.DataFrame) -> None:
    identify = frame[frame.type == "identify"]
    assert identify.user_id.notna().all() and identify.anonymous_id.notna().all()
    assert all(set(p) == {"email", "name", "phone"} for p in identify.props)
    first_identify = identify.groupby("person").timestamp.min()
    by_person = frame[frame.person.isin(first_identify.index)]
    at = by_person.person.map(first_identify)
    before, after = by_person[by_person.timestamp < at], by_person[by_person.timestamp > at]
    assert len(before) > 0 and before.user_id.isna().all()
    assert after.user_id.notna().all()
    # Server-side purchases of known users carry the user_id alone.
    assert (after[after.type == "purchase"].anonymous_id.isna()).all()


def test_users_table_labels_personas_bots_and_identity(shop: DemoShop, frame: pd.DataFrame) -> None:
    users = shop.users.to_pandas()
    assert users.anonymous_id.is_unique
    assert set(users.persona) >= {
        "bargain_hunter",
        "loyal_buyer",
        "window_shopper",
        "mobile_impulse",
        "researcher",
    }
    assert 0.002 <= users.is_bot.mean() <= 0.012
    never = users[users.user_id.isna() & ~users.is_bot]
    assert len(never) > 0  # some humans never identify
    assert frame[frame.person.isin(never.anonymous_id)].user_id.isna().all()
    assert (users.signup_at.dropna() >= users.first_seen[users.signup_at.notna()]).all()
    assert 0.02 <= (~users.consent_personalization).mean() <= 0.08
    assert 0.002 <= (~users.consent_analytics).mean() <= 0.03


def test_bots_use_bot_agents_or_extreme_rates(shop: DemoShop, frame: pd.DataFrame) -> None:
    users = shop.users.to_pandas().set_index("anonymous_id")
    per_person = frame.groupby("person").size()
    bots = users.index[users.is_bot]
    crawlers = users.index[users.persona == "bot_crawler"]
    agents = frame[frame.person.isin(crawlers)].user_agent
    assert agents.str.contains("bot", case=False).all()
    humans = frame[~frame.person.isin(bots)]
    assert not humans.user_agent.str.contains("bot", case=False).any()
    human_counts = per_person.drop(bots, errors="ignore")
    assert per_person[bots].median() > 4 * human_counts.median()


def test_products_table(shop: DemoShop) -> None:
    products = shop.products.to_pandas()
    assert products.product_id.is_unique
    assert {"name", "category", "price", "in_stock", "description"} <= set(products.columns)
    assert products.category.nunique() == 8
    assert (products.price > 0).all() and 0.85 < products.in_stock.mean() < 1.0
