"""Regression adjustment in the analysis pipeline: DuckDB store → report, vs statsmodels on rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import yaml

from tailorkit.measure.analysis import parse_experiment
from tailorkit.measure.analysis.html import render_html
from tailorkit.measure.analysis.pipeline import analyze_experiment
from tailorkit.project import ConfigError, load_project
from tailorkit.project.init import write_project
from tailorkit.store.warehouse import Warehouse
from tests.measure.pipeline.conftest import store

KEY = "hero"
START = datetime(2026, 9, 1, tzinfo=UTC)
AT = datetime(2026, 9, 20, tzinfo=UTC)
DEVICES = ("desktop", "mobile", "tablet")
EXPERIMENT = {
    "adjust_for": ["device", "weekday"],
    "metrics": {
        "revenue": {"type": "mean", "event": "purchase", "value": "revenue"},
        "ctr": {"type": "ratio", "numerator": {"event": "click"},
                "denominator": {"event": "impression"}},
    },
}  # fmt: skip


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _events(users: int, seed: int) -> list[dict[str, Any]]:
    """Revenue driven mostly by the device (mobile buys more), +0.4 in the treatment.

    Some users come back later on another device (the first exposure's device
    counts) and some exposures carry no device (level ``(none)``).
    """
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    for i in range(users):
        uid, v = f"u{i}", int(rng.integers(0, 2))
        device = str(rng.choice(DEVICES, p=(0.5, 0.4, 0.1)))
        t = START + timedelta(seconds=int(rng.uniform(0, 14 * 86400)))
        context: dict[str, Any] = {} if rng.random() < 0.05 else {"device": {"type": device}}
        props = {"kind": "experiment", "key": KEY, "variation": v, "variation_key": f"v{v}"}
        out.append({"event_id": f"{uid}-e", "type": "exposure", "timestamp": _iso(t),
                    "properties": props, "context": context, "user_id": uid})  # fmt: skip
        if rng.random() < 0.2:
            later = {"device": {"type": str(rng.choice(DEVICES))}}
            out.append({"event_id": f"{uid}-e2", "type": "exposure",
                        "timestamp": _iso(t + timedelta(hours=5)), "properties": props,
                        "context": later, "user_id": uid})  # fmt: skip
        mean = 1.0 + 2.0 * (device == "mobile") + 0.4 * v + 0.3 * (t.weekday() >= 5)
        for j in range(int(rng.poisson(mean))):
            at = t + timedelta(seconds=int(rng.uniform(60, 3 * 86400)))
            revenue = round(float(rng.lognormal(0.0, 0.5)), 2)
            out.append({"event_id": f"{uid}-p{j}", "type": "purchase", "timestamp": _iso(at),
                        "properties": {"revenue": revenue}, "user_id": uid})  # fmt: skip
    return out


def _reference(wh: Warehouse) -> pd.DataFrame:
    """Per user from the stored rows (pandas): variation, device, weekday, revenue."""
    events = wh.resolved_events(["exposure", "purchase"]).to_pandas()
    events = events[events.timestamp <= AT]
    exp = events[events.type == "exposure"].sort_values("timestamp")
    first = exp.groupby("person_id").first()
    users = pd.DataFrame(
        {
            "variation": [json.loads(p)["variation"] for p in first.properties],
            "device": [
                (json.loads(c or "{}").get("device") or {}).get("type") or "(none)"
                for c in first.context
            ],
            "weekday": [str(t.weekday()) for t in first.timestamp],
            "first_ts": first.timestamp,
        },
        index=first.index,
    )
    buys = events[events.type == "purchase"].join(users.first_ts, on="person_id")
    buys = buys[buys.timestamp >= buys.first_ts]
    value = buys.properties.map(lambda p: json.loads(p)["revenue"])
    users["revenue"] = value.groupby(buys.person_id).sum().reindex(users.index).fillna(0.0)
    return users


def test_adjusted_effect_in_report_equals_statsmodels_on_stored_rows(tmp_path: Path) -> None:
    root = write_project(tmp_path / "shop")
    (root / "features.yaml").write_text(yaml.safe_dump({"experiments": {KEY: EXPERIMENT}}))
    project = load_project(root)  # the schema accepts adjust_for
    wh = Warehouse(project.settings.store_url)
    try:
        store(wh, project, _events(1500, seed=3))
        report = analyze_experiment(project, KEY, wh, at=AT)
        rows = _reference(wh)
    finally:
        wh.close()
    assert report["settings"]["adjust_for"] == ["device", "weekday"]
    revenue = next(m for m in report["metrics"] if m["key"] == "revenue")
    adjusted = revenue["regression_adjustment"]
    assert adjusted["method"] == "regression adjustment (OLS, HC1) for device, weekday"
    # ratio metrics are not adjusted
    assert "regression_adjustment" not in next(m for m in report["metrics"] if m["key"] == "ctr")
    assert revenue["control"]["users"] + revenue["variations"][0]["users"] == len(rows)
    design = pd.get_dummies(
        rows[["variation", "device", "weekday"]].astype(str), drop_first=True, dtype=float
    )
    fit = sm.OLS(rows.revenue.to_numpy(), sm.add_constant(design)).fit(cov_type="HC1")
    (v,) = adjusted["by_variation"]
    assert v["variation"] == "v1"
    assert v["absolute"] == pytest.approx(fit.params["variation_1"], abs=1e-8)
    assert v["se"] == pytest.approx(fit.bse["variation_1"], abs=1e-8)
    assert v["p_value"] == pytest.approx(fit.pvalues["variation_1"], abs=1e-8)
    assert v["absolute_ci"][0] == pytest.approx(fit.conf_int().loc["variation_1", 0], abs=1e-8)
    # the device explains most of the variance: a tighter interval than unadjusted
    raw = revenue["variations"][0]["absolute_ci"]
    assert v["absolute_ci"][1] - v["absolute_ci"][0] < 0.9 * (raw[1] - raw[0])
    assert v["absolute_ci"][0] < 0.4 < v["absolute_ci"][1]
    assert "regression adjustment (OLS, HC1) for device, weekday: v1" in render_html(report)


def test_unknown_covariate_is_a_clear_error() -> None:
    doc = {"experiments": {KEY: {**EXPERIMENT, "adjust_for": ["device", "browser"]}}}
    with pytest.raises(ConfigError, match=r"adjust_for\.1.*unknown covariate 'browser'"):
        parse_experiment(doc, KEY)


def test_postgres_gives_the_same_adjusted_effect(tmp_path: Path, pg_database: str) -> None:
    # with the ratio metric, which has no events here: PostgreSQL once summed numeric 1.0s
    experiment = EXPERIMENT
    root = write_project(tmp_path / "shop")
    (root / "features.yaml").write_text(yaml.safe_dump({"experiments": {KEY: experiment}}))
    project = load_project(root)
    events = _events(400, seed=5)
    results = []
    for url in (project.settings.store_url, pg_database):
        wh = Warehouse(url)
        try:
            store(wh, project, events)
            report = analyze_experiment(project, KEY, wh, at=AT)
        finally:
            if url == pg_database:
                for table in ("events", "identities", "ingest_stats"):
                    wh.con.drop_table(table, force=True)
            wh.close()
        revenue = next(m for m in report["metrics"] if m["key"] == "revenue")
        results.append(revenue["regression_adjustment"]["by_variation"][0])
    duck, pg = results
    assert duck["absolute"] == pytest.approx(pg["absolute"], rel=1e-9)
    assert duck["se"] == pytest.approx(pg["se"], rel=1e-9)
