"""The hidden personas are recoverable by clustering features computed from the events."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from tailorkit.demo import DemoShop

COUNTS = ["sessions", "views", "cart_adds", "purchases", "revenue"]


def user_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-visitor features straight from the events (no generator internals)."""
    kind = frame.type
    by = frame.person
    features = pd.DataFrame(
        {
            "sessions": frame.groupby(by).session.nunique(),
            "views": (kind == "product_view").groupby(by).sum(),
            "cart_adds": (kind == "add_to_cart").groupby(by).sum(),
            "purchases": (kind == "purchase").groupby(by).sum(),
            "revenue": frame.revenue.groupby(by).sum(),
            "avg_price": frame.price.where(kind == "product_view").groupby(by).mean(),
            "mobile_share": (frame.device == "mobile").groupby(by).mean(),
            "search_share": (kind == "search").groupby(by).mean(),
        }
    )
    # Visitors who never viewed a product get the typical price, not an outlier of 0.
    features["avg_price"] = features.avg_price.fillna(features.avg_price.median())
    return features


def test_kmeans_recovers_the_personas(shop: DemoShop, frame: pd.DataFrame) -> None:
    users = shop.users.to_pandas().set_index("anonymous_id")
    humans = users.index[~users.is_bot]
    features = user_features(frame).loc[lambda f: f.index.isin(humans)]
    transformed = features.copy()
    # Counts and money are heavy-tailed; logs make them comparable before scaling.
    for column in [*COUNTS, "avg_price"]:
        transformed[column] = np.log1p(transformed[column])
    scaled = StandardScaler().fit_transform(transformed)
    labels = KMeans(n_clusters=5, n_init=10, random_state=0).fit_predict(scaled)
    ari = adjusted_rand_score(users.loc[features.index, "persona"], labels)
    assert ari >= 0.6, f"adjusted Rand index {ari:.3f}"


def test_personas_have_their_advertised_habits(shop: DemoShop, frame: pd.DataFrame) -> None:
    users = shop.users.to_pandas().set_index("anonymous_id")
    features = user_features(frame).join(users.persona)
    means = features.groupby("persona").mean()
    assert means.avg_price.idxmin() == "bargain_hunter"
    assert means.revenue.idxmax() == "loyal_buyer"
    assert means.mobile_share.idxmax() == "mobile_impulse"
    assert means.search_share.idxmax() == "researcher"
    humans = means.drop(["bot_crawler", "bot_scraper"], errors="ignore")
    assert humans.purchases.idxmin() == "window_shopper"
    assert humans.views.loc["window_shopper"] > humans.views.loc["mobile_impulse"]
