"""Shared fixtures: one mid-sized shop, parsed once with pandas."""

from __future__ import annotations

import orjson
import pandas as pd
import pytest

from tailorkit.demo import DemoShop, generate_shop

N_USERS = 3_000


@pytest.fixture(scope="session")
def shop() -> DemoShop:
    return generate_shop(n_users=N_USERS, days=30, seed=11)


@pytest.fixture(scope="session")
def frame(shop: DemoShop) -> pd.DataFrame:
    """One row per event with the JSON columns unpacked and the visitor resolved.

    ``person`` is the visitor's anonymous_id; server-side purchases carry only
    the user_id, which the users table maps back.
    """
    events = shop.events.to_pandas()
    users = shop.users.to_pandas()
    known = users.dropna(subset=["user_id"])
    to_anon = dict(zip(known.user_id, known.anonymous_id, strict=True))
    events["person"] = events.anonymous_id.fillna(events.user_id.map(to_anon))
    context = [orjson.loads(c) for c in events.context]
    props = [orjson.loads(p) for p in events.properties]
    events["session"] = [c["session_id"] for c in context]
    events["device"] = [c["device"]["type"] for c in context]
    events["user_agent"] = [c["user_agent"] for c in context]
    events["source"] = [c["utm"]["source"] for c in context]
    events["price"] = [p.get("price") for p in props]
    events["revenue"] = [p.get("revenue", 0.0) for p in props]
    events["props"] = props
    events["ctx"] = context
    return events


@pytest.fixture(scope="session")
def sessions(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per session: whether it had a cart add, a checkout and a purchase."""
    kinds = pd.crosstab(frame.session, frame.type)
    return pd.DataFrame(
        {
            "cart": kinds["add_to_cart"] > 0,
            "checkout": kinds["checkout"] > 0,
            "purchase": kinds["purchase"] > 0,
        }
    )
