"""The training data is the same on PostgreSQL as on DuckDB (one set of Ibis expressions)."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from tailorkit.learn.build import event_source
from tailorkit.learn.data import behaviour_features, fetch, interactions, session_steps
from tailorkit.learn.propensity import TaskConfig, snapshot
from tailorkit.learn.scores import score_rows, write_scores
from tailorkit.project.loader import QualitySettings
from tailorkit.store.warehouse import Warehouse
from tests.learn.shop import demo_shop


def tidy(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    frame = frame.sort_values(keys).reset_index(drop=True)
    for column in frame.columns:
        if str(frame[column].dtype).startswith("datetime"):
            frame[column] = frame[column].dt.tz_convert("UTC").astype("datetime64[us, UTC]")
    return frame


@pytest.mark.postgres
def test_training_data_on_postgres_equals_duckdb(pg_database: str) -> None:
    shop = demo_shop()
    pg = Warehouse(pg_database)
    try:
        pg.insert(
            shop.wh.con.to_pyarrow(shop.wh.events), shop.wh.con.to_pyarrow(shop.wh.identities)
        )
        source = event_source(pg, QualitySettings())
        end = shop.end
        cutoff = end - timedelta(days=7)
        config = TaskConfig(task="churn")
        for name, expr, duck_expr, keys in (
            ("features", behaviour_features(source.clean(), end),
             behaviour_features(shop.events, end), ["person_id"]),
            ("interactions", interactions(source.clean(), None, end),
             interactions(shop.events, None, end), ["person_id", "product_id"]),
            ("snapshot", snapshot(source, cutoff, config, timedelta(days=14)),
             snapshot(shop.source, cutoff, config, timedelta(days=14)), ["person_id"]),
        ):  # fmt: skip
            ours = tidy(fetch(pg, expr), keys)
            duck = tidy(fetch(shop.wh, duck_expr), keys)
            pd.testing.assert_frame_equal(ours, duck, check_dtype=False, obj=name)
        steps = fetch(pg, session_steps(source.clean(), detail="category"))
        duck_steps = fetch(shop.wh, session_steps(shop.events, detail="category"))

        def as_set(frame: pd.DataFrame) -> set[tuple[str, str, tuple[str, ...]]]:
            rows = zip(frame.person_id, frame.session, frame.steps, strict=True)
            return {(p, s, tuple(x)) for p, s, x in rows}

        assert as_set(steps) == as_set(duck_steps)
        write_scores(pg, "churn_risk", pd.Series({"u1": 0.5}), "churn@1")
        assert score_rows(pg) == {"u1": {"churn_risk": 0.5}}
    finally:
        for table in ("events", "identities", "ingest_stats", "profile_scores"):
            pg.con.drop_table(table, force=True)
        pg.close()
