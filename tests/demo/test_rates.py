"""Shop behaviour looks like a shop: funnel rates, seasonality, returning visitors."""

from __future__ import annotations

from itertools import pairwise

import pandas as pd

from tailorkit.demo import DemoShop


def test_cart_abandonment_and_conversion_are_realistic(sessions: pd.DataFrame) -> None:
    abandonment = 1 - sessions.purchase[sessions.cart].mean()
    conversion = sessions.purchase.mean()
    assert 0.50 <= abandonment <= 0.85
    assert 0.01 <= conversion <= 0.10


def test_funnel_narrows(frame: pd.DataFrame) -> None:
    counts = frame.type.value_counts()
    steps = ["product_view", "add_to_cart", "checkout", "purchase"]
    assert all(counts[a] > counts[b] for a, b in pairwise(steps))
    assert counts["remove_from_cart"] < counts["add_to_cart"]


def test_time_of_day_and_weekday_seasonality(frame: pd.DataFrame) -> None:
    starts = frame.groupby("session").timestamp.min()
    hours = starts.dt.hour.value_counts()
    assert hours[range(18, 22)].sum() > 3 * hours[range(2, 6)].sum()  # evenings beat nights
    weekdays = starts.dt.day_of_week.value_counts(normalize=True)
    assert weekdays.max() / weekdays.min() > 1.05


def test_returning_visitors_and_devices(shop: DemoShop, frame: pd.DataFrame) -> None:
    per_person = frame.groupby("person").session.nunique()
    assert (per_person > 1).mean() > 0.7
    assert (per_person == 1).any()
    devices = frame.groupby("session").device.first().value_counts(normalize=True)
    assert set(devices.index) == {"mobile", "desktop", "tablet"}
    assert devices["tablet"] < devices["mobile"]
    users = shop.users.to_pandas()
    assert (users.first_seen < pd.Timestamp(shop.start)).mean() > 0.5
