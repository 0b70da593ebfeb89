"""The learners on real data: MovieLens-100k recommendations, CDNOW repeat purchases.

**MovieLens-100k** (:func:`movielens_report`): the common protocol — each
user's ratings are split at random, 75% train / 25% test (per user, so every
user is in both), every rating is an implicit interaction, items rated in
training are never recommended, K = 10. ALS settings and hybrid weights are
chosen on a second 75/25 split *inside* the training part; the test part is
used once. Content vectors are TF-IDF over title, genres and release decade.

**CDNOW** (:func:`cdnow_report`): the purchases are loaded as ``purchase``
events into an in-memory warehouse and go through the same code as the
shop's events. Calibration = weeks 1-39 (1997-01-01 to 1997-09-30),
holdout = weeks 40-78 (1997-10-01 to 1998-06-30). Features come from the
calibration weeks only; the label is "buys again in the holdout". Reported:
AUC of the profile RFM score (quintiles from :mod:`tailorkit.profile.batch`,
no training), and cross-validated AUC / PR-AUC of LightGBM and the logistic
baseline.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from sklearn.metrics import roc_auc_score

from tailorkit.learn.data import EventSource, fetch
from tailorkit.learn.datasets import cdnow, movielens_100k
from tailorkit.learn.propensity import TaskConfig, classification_metrics, cross_validate, design
from tailorkit.learn.propensity import snapshot as snapshot_expr
from tailorkit.learn.recommend import (
    Als,
    Content,
    Hybrid,
    Interactions,
    Model,
    Popularity,
    evaluate,
    item_texts,
)
from tailorkit.learn.runtime import single_pool
from tailorkit.profile.batch import profile_table
from tailorkit.profile.definitions import parse_features
from tailorkit.project.loader import QualitySettings
from tailorkit.store.warehouse import EVENT_ARROW_SCHEMA, Warehouse

CDNOW_START = datetime(1997, 1, 1, tzinfo=UTC)
CDNOW_CUTOFF = CDNOW_START + timedelta(weeks=39)  # 1997-10-01: first holdout day
CDNOW_END = CDNOW_START + timedelta(weeks=78)  # 1998-07-01: day after the last purchase


# -- MovieLens ---------------------------------------------------------------------------


def per_user_split(frame: pd.DataFrame, test_share: float, seed: int) -> tuple[pd.DataFrame, ...]:
    """Random split within each user: ``round(test_share · n)`` of each user's rows to test.

    >>> f = pd.DataFrame({"person_id": ["a"] * 4 + ["b"] * 8, "product_id": list("abcdefghijkl")})
    >>> train, test = per_user_split(f, 0.25, seed=0)
    >>> test.groupby("person_id").size().tolist()
    [1, 2]
    """
    rng = np.random.default_rng(seed)
    shuffled = frame.iloc[rng.permutation(len(frame))]
    rank = shuffled.groupby("person_id").cumcount()
    size = shuffled.groupby("person_id").person_id.transform("size")
    is_test = rank < np.round(size * test_share)
    return shuffled[~is_test].sort_index(), shuffled[is_test].sort_index()


def _relevant(data: Interactions, test: pd.DataFrame) -> tuple[np.ndarray, list[set[int]]]:
    users = pd.Index(data.users).get_indexer(pd.Index(test.person_id))
    items = pd.Index(data.items).get_indexer(pd.Index(test.product_id))
    groups: dict[int, set[int]] = {}
    for u, i in zip(users, items, strict=True):
        if u >= 0 and i >= 0:
            groups.setdefault(int(u), set()).add(int(i))
    rows = np.asarray(sorted(groups), dtype=np.int64)
    return rows, [groups[u] for u in rows]


def _tune_als(
    train: pd.DataFrame, items: list[str], texts: list[str], k: int, seed: int
) -> tuple[dict[str, Any], tuple[float, float, float], list[dict[str, Any]]]:
    """ALS settings, then hybrid weights, on a split inside the training part."""
    inner, valid = per_user_split(train, 0.25, seed + 1)
    data = Interactions.from_frame(inner, items, {"views": 1.0})
    users, relevant = _relevant(data, valid)
    trials = []
    for factors in (32, 64, 128):
        for regularization in (0.05, 0.5):
            for alpha in (1.0, 5.0):
                trial: dict[str, Any] = {
                    "factors": factors,
                    "regularization": regularization,
                    "alpha": alpha,
                    "iterations": 15,
                    "seed": seed,
                }
                score = evaluate({"als": Als(**trial).fit(data)}, users, relevant, data.matrix, k)
                trials.append({**trial, "ndcg": score[0]["ndcg"]})
    best = max(trials, key=lambda t: t["ndcg"])
    params: dict[str, Any] = {k_: v for k_, v in best.items() if k_ != "ndcg"}
    als = Als(**params).fit(data)
    pop = Popularity().fit(data)
    content = Content().fit(data, texts)
    blends = [(1.0, 0.0, 0.0), (1.0, 0.2, 0.0), (1.0, 0.2, 0.2), (1.0, 0.5, 0.3)]
    scored = []
    for blend in blends:
        hybrid = Hybrid(als, content, pop, *blend)
        scored.append(evaluate({"h": hybrid}, users, relevant, data.matrix, k)[0]["ndcg"])
    return params, blends[int(np.argmax(scored))], trials


@single_pool
def movielens_report(k: int = 10, seed: int = 0) -> dict[str, Any]:
    """P@K, R@K, NDCG@K, MAP@K and coverage of every model beside popularity."""
    started = time.perf_counter()
    ratings, movies = movielens_100k()
    frame = ratings.rename(columns={"user_id": "person_id", "item_id": "product_id"})
    frame["views"] = 1.0  # every rating is one implicit interaction
    movies = movies.rename(columns={"item_id": "product_id"}).sort_values("product_id")
    movies["decade"] = "decade_" + movies.year.str[:3].fillna("") + "0s"
    items = movies.product_id.tolist()
    texts = item_texts(movies, ["title", "genres", "decade"], None)
    train, test = per_user_split(frame, 0.25, seed)
    params, blend, trials = _tune_als(train, items, texts, k, seed)
    data = Interactions.from_frame(train, items, {"views": 1.0})
    pop = Popularity().fit(data)
    als = Als(**params).fit(data)
    content = Content().fit(data, texts)
    models: dict[str, Model] = {"popularity": pop, "als": als, "content": content,
              "hybrid": Hybrid(als, content, pop, *blend)}  # fmt: skip
    users, relevant = _relevant(data, test)
    table = evaluate(models, users, relevant, data.matrix, k)
    return {
        "dataset": "MovieLens-100k (recbole 1.2.1 wheel)",
        "protocol": "per-user random 75/25, implicit, train items excluded",
        "ratings": len(frame),
        "users": len(users),
        "items": len(items),
        "k": k,
        "table": table,
        "als": params,
        "blend": list(blend),
        "tuning_trials": len(trials),
        "seconds": round(time.perf_counter() - started, 2),
    }


# -- CDNOW ------------------------------------------------------------------------------


def cdnow_events(purchases: pd.DataFrame) -> pa.Table:
    """CDNOW rows as canonical ``purchase`` events (noon UTC of the purchase day)."""
    ts = purchases.date + pd.Timedelta(hours=12) + pd.to_timedelta(np.arange(len(purchases)), "us")
    props = [
        orjson.dumps({"revenue": a, "items": int(c), "currency": "USD"}).decode()
        for a, c in zip(purchases.amount, purchases.cds, strict=True)
    ]
    n = len(purchases)
    columns = {
        "event_id": [str(uuid.UUID(int=i)) for i in range(n)],
        "type": ["purchase"] * n,
        "user_id": ("c" + purchases.customer_id).tolist(),
        "anonymous_id": [None] * n,
        "timestamp": ts,
        "received_at": ts,
        "clock_skew_ms": [0] * n,
        "source": ["cdnow"] * n,
        "properties": props,
        "context": [None] * n,
        "personalization": [True] * n,
    }
    return pa.table(columns).cast(EVENT_ARROW_SCHEMA)


def cdnow_warehouse() -> Warehouse:
    """An in-memory warehouse holding the CDNOW purchases as events."""
    wh = Warehouse("duckdb://:memory:")
    wh.insert(cdnow_events(cdnow()))
    return wh


def rfm_scores(wh: Warehouse, at: datetime) -> pd.DataFrame:
    """``person_id, rfm_r, rfm_f, rfm_m, rfm_score`` from the profile batch compiler."""
    features = parse_features({"rfm": {"events": ["purchase"], "property": "revenue"}})
    events = wh.resolved_events()
    events = events.filter(events.timestamp < at)
    # profile_table counts events up to and including ``at``; the filter makes it strict
    return fetch(wh, profile_table(features, events, at))


@single_pool
def cdnow_report(folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """RFM and propensity on CDNOW: "buys again in weeks 40-78" from weeks 1-39."""
    started = time.perf_counter()
    wh = cdnow_warehouse()
    # a purchase log has no bots; rate-outlier rules are for web traffic
    source = EventSource(wh, QualitySettings(exclude_flagged_users=False))
    config = TaskConfig(task="propensity", horizon_days=(CDNOW_END - CDNOW_CUTOFF).days,
                        lookback_days=(CDNOW_CUTOFF - CDNOW_START).days,
                        windows=(30, 90), folds=folds, seed=seed)  # fmt: skip
    window = timedelta(days=config.lookback_days or 0)
    frame = fetch(wh, snapshot_expr(source, CDNOW_CUTOFF, config, window))
    frame = frame.sort_values("person_id").reset_index(drop=True)
    x, y = design(frame, window.days), frame.label.to_numpy()
    rfm = rfm_scores(wh, CDNOW_CUTOFF).set_index("person_id").reindex(frame.person_id)
    report: dict[str, Any] = {
        "dataset": "CDNOW master (Lifetimes 0.11.3 wheel)",
        "calibration": [
            CDNOW_START.date().isoformat(),
            (CDNOW_CUTOFF - timedelta(days=1)).date().isoformat(),
        ],
        "holdout": [
            CDNOW_CUTOFF.date().isoformat(),
            (CDNOW_END - timedelta(days=1)).date().isoformat(),
        ],
        "customers": len(frame),
        "buy_again_rate": round(float(y.mean()), 4),
        "rfm_score_auc": round(float(roc_auc_score(y, rfm.rfm_score.fillna(0))), 4),
        "frequency_auc": round(float(roc_auc_score(y, x.purchases)), 4),
        "cross_validation": cross_validate(x, y, folds, seed),
        "rfm_distribution": rfm.rfm_score.value_counts().sort_index().to_dict(),
    }
    cv = report["cross_validation"]
    report["summary"] = {
        name: {m: cv[name].get(m) for m in ("auc", "pr_auc", "brier")}
        for name in ("lightgbm", "logistic")
    }
    report["rfm_metrics"] = classification_metrics(y, rfm.rfm_score.fillna(0).to_numpy() / 15.0)
    report["seconds"] = round(time.perf_counter() - started, 2)
    wh.close()
    return report
