"""Propensity and churn: no leakage across the cutoff, honest metrics, exact explanations."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tailorkit.learn.build import event_source
from tailorkit.learn.data import fetch
from tailorkit.learn.propensity import (
    ScoreModel,
    TaskConfig,
    TaskResult,
    features_at,
    snapshot,
    train_task,
)
from tailorkit.project.loader import QualitySettings
from tailorkit.store.warehouse import Warehouse
from tests.learn.shop import demo_shop

WINDOW = timedelta(days=14)


def copy_warehouse(source: Warehouse) -> Warehouse:
    """A private in-memory copy (events, identities, products) that a test may alter."""
    wh = Warehouse("duckdb://:memory:")
    wh.insert(source.con.to_pyarrow(source.events), source.con.to_pyarrow(source.identities))
    return wh


def rewrite_future(wh: Warehouse, cutoff: pd.Timestamp) -> None:
    """Delete every event at or after ``cutoff``; put back altered ones: all purchases of
    a different product, new ids, half of them dropped."""
    events = wh.con.to_pyarrow(wh.events)
    future = events.filter(
        pc.greater_equal(events["timestamp"], pa.scalar(cutoff, events["timestamp"].type))
    )
    wh.con.raw_sql(f"DELETE FROM events WHERE timestamp >= TIMESTAMPTZ '{cutoff.isoformat()}'")
    keep = future.take(np.arange(0, future.num_rows, 2))
    props = orjson.dumps({"revenue": 999.0, "product_ids": ["p0001"]}).decode()
    n = keep.num_rows
    altered = (
        keep.set_column(keep.schema.get_field_index("event_id"), "event_id",
                        pa.array([str(uuid.uuid4()) for _ in range(n)]))
        .set_column(keep.schema.get_field_index("type"), "type", pa.array(["purchase"] * n))
        .set_column(keep.schema.get_field_index("properties"), "properties", pa.array([props] * n))
    )  # fmt: skip
    wh.insert(altered)


def test_features_ignore_everything_at_or_after_the_cutoff() -> None:
    shop = demo_shop()
    cutoff = shop.end - timedelta(days=7)
    config = TaskConfig(task="propensity", horizon_days=7)
    before = fetch(shop.wh, snapshot(shop.source, cutoff, config, WINDOW))
    altered = copy_warehouse(shop.wh)
    rewrite_future(altered, pd.Timestamp(cutoff))
    after = fetch(
        altered, snapshot(event_source(altered, QualitySettings()), cutoff, config, WINDOW)
    )
    features = [c for c in before.columns if c != "label"]

    def tidy(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values("person_id").reset_index(drop=True)

    pd.testing.assert_frame_equal(tidy(before)[features], tidy(after)[features])
    # ... while the labels did see the rewritten future
    assert tidy(after).label.sum() > tidy(before).label.sum()
    # and the features at the cutoff equal those computed with no future at all
    altered.con.raw_sql(f"DELETE FROM events WHERE timestamp >= TIMESTAMPTZ '{cutoff.isoformat()}'")
    alone = fetch(
        altered, features_at(event_source(altered, QualitySettings()).clean(), cutoff, WINDOW)
    )
    pd.testing.assert_frame_equal(tidy(alone)[features], tidy(before)[features])


@pytest.fixture(scope="module")
def propensity() -> TaskResult:
    shop = demo_shop()
    return train_task(shop.source, shop.end, TaskConfig(task="propensity", folds=3))


def test_propensity_is_evaluated_honestly(propensity: TaskResult) -> None:
    report = propensity.report
    cv, oot = report["cross_validation"], report["out_of_time"]
    print({k: (cv[k]["auc"], oot[k]["auc"]) for k in ("lightgbm", "logistic")})
    assert cv["lightgbm"]["auc"] > 0.75 and oot["lightgbm"]["auc"] > 0.75
    assert cv["logistic"]["auc"] > 0.7  # the baseline is reported beside it
    for name in ("lightgbm", "logistic"):
        assert 0 < cv[name]["pr_auc"] <= 1 and cv[name]["brier"] < cv[name]["base_rate"]
        curve = cv[name]["calibration"]
        assert len(curve) >= 5
        assert curve[-1]["observed"] > curve[0]["observed"]
    assert report["cutoff"] == (demo_shop().end - timedelta(days=7)).isoformat()
    assert report["lookback_days"] == pytest.approx(30 - 2 * 7, abs=0.2)
    assert {"cart_adds", "cart_adds_per_session"} & set(list(report["importance"])[:5])


def test_scores_cover_active_persons_and_explanations_are_exact(propensity: TaskResult) -> None:
    shop = demo_shop()
    scores = propensity.scores
    assert scores.between(0, 1).all() and scores.index.is_unique
    model = propensity.model
    current = fetch(shop.wh, features_at(shop.events, shop.end, timedelta(days=model.window_days)))
    sample = current.head(50)
    contrib = model.contributions(sample)
    logit = np.log(model.predict(sample) / (1 - model.predict(sample)))
    np.testing.assert_allclose(contrib.sum(axis=1), logit, atol=1e-6)  # SHAP sums to the score
    examples = propensity.report["examples"]
    assert len(examples) == 5 and examples[0]["score"] >= examples[-1]["score"]
    assert len(examples[0]["reasons"]) == 3
    reasons = model.explain(sample, top=3)
    assert len(reasons) == 50 and all(len(r) == 3 for r in reasons)
    first = reasons[0]
    assert abs(first[0]["contribution"]) >= abs(first[-1]["contribution"])


def test_model_round_trips(propensity: TaskResult, tmp_path: Path) -> None:
    shop = demo_shop()
    propensity.model.save(tmp_path)
    loaded = ScoreModel.load(tmp_path)
    current = fetch(shop.wh, features_at(shop.events, shop.end, timedelta(days=loaded.window_days)))
    np.testing.assert_allclose(loaded.predict(current), propensity.model.predict(current))


def test_churn_model() -> None:
    shop = demo_shop()
    result = train_task(shop.source, shop.end, TaskConfig(task="churn", folds=3))
    cv = result.report["cross_validation"]
    print("churn", cv["lightgbm"]["auc"], cv["logistic"]["auc"])
    assert cv["lightgbm"]["auc"] > 0.65 and "auc" in cv["logistic"]
    assert result.model.name == "churn_risk"
    assert "days_since_last" in list(result.report["importance"])[:5]


def test_too_little_data_is_refused() -> None:
    shop = demo_shop()
    with pytest.raises(ValueError, match="too short"):
        train_task(shop.source, shop.end, TaskConfig(horizon_days=20))
