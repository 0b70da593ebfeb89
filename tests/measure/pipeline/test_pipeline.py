"""The analysis pipeline on simulated experiments with known effects (DuckDB)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from tailorkit.collect.quality import flagged_users
from tailorkit.measure.analysis import analyze_experiment, load_spec, parse_experiment
from tailorkit.measure.analysis.groups import Groups
from tailorkit.measure.analysis.html import render_html
from tailorkit.measure.analysis.query import sufficient_stats
from tailorkit.project import ConfigError
from tailorkit.store.warehouse import Warehouse
from tests.measure.pipeline import reference
from tests.measure.pipeline.conftest import FEATURES_YAML, Stored
from tests.measure.pipeline.simulate import AT

Report = dict[str, Any]


@pytest.fixture(scope="package")
def reports(stored: Stored) -> dict[str, Report]:
    """Every experiment's report, analysed once."""
    return {
        key: analyze_experiment(stored.project, key, at=AT)
        for key in ("signup_flow", "aa", "srm", "hetero")
    }


def metric(report: Report, key: str) -> Report:
    return next(m for m in report["metrics"] if m["key"] == key)


@pytest.mark.parametrize("key", ["signup_flow", "hetero"])
def test_sufficient_statistics_equal_a_row_by_row_reference(stored: Stored, key: str) -> None:
    spec = load_spec(stored.project, key)
    quality = stored.project.settings.quality
    wh = Warehouse(stored.project.settings.store_url)
    try:
        table = sufficient_stats(wh, spec, quality, AT)
        flagged = set(flagged_users(wh, quality).to_pyarrow().column("person_id").to_pylist())
    finally:
        wh.close()
    rows = reference.people(stored.events, spec, AT, flagged)
    caps = reference.caps(rows, spec)
    g = Groups.from_arrow(table, 2)
    for i, cap in caps.items():
        assert g.columns[f"cap{i}"].max() == pytest.approx(cap, rel=1e-12)
    for segment in (None, *spec.segments):
        bit = None if segment is None else spec.segments.index(segment)
        expected = reference.sums(rows, spec, 2, segment, caps)
        for column, values in expected.items():
            np.testing.assert_allclose(g.pooled(column, bit), values, rtol=1e-10, err_msg=column)
    assert g.n_multi > 0 and g.n_flagged > 0  # both kinds of exclusion were exercised


def test_finds_the_known_effect_and_recommends_shipping(reports: dict[str, Report]) -> None:
    r = reports["signup_flow"]
    assert [v["name"] for v in r["variations"]] == ["Control", "New flow"]  # feature rule meta
    signup = metric(r, "signup")["variations"][0]
    assert signup["significant"] and signup["better"]
    lo, hi = signup["relative_ci"]
    assert lo < 0.4 < hi  # true relative lift: 0.14 / 0.10 − 1
    revenue = metric(r, "revenue")["variations"][0]
    assert revenue["significant"] and revenue["relative"] > 0
    assert r["recommendation"]["action"] == "ship"
    assert r["recommendation"]["variation"] == "New flow"
    assert "signup" in r["recommendation"]["reason"]
    guard = [h for h in r["health"] if h["check"] == "guardrail:ctr"]
    assert guard and all(h["ok"] for h in guard)


def test_a_a_experiment_raises_no_false_alarm(reports: dict[str, Report]) -> None:
    r = reports["aa"]
    assert not any(v["significant"] for m in r["metrics"] for v in m["variations"])
    assert not any(row["significant"] for row in r["segments"]["rows"])
    assert r["recommendation"]["action"] in ("inconclusive", "keep_running")
    assert r["srm"]["flagged"] is False


def test_sample_ratio_mismatch_is_flagged_and_blocks_a_decision(reports: dict[str, Report]) -> None:
    r = reports["srm"]
    assert r["srm"]["flagged"] and r["srm"]["p_value"] < 1e-3
    assert r["recommendation"]["action"] == "inconclusive"
    assert "Sample ratio mismatch" in r["recommendation"]["reason"]
    assert not next(h for h in r["health"] if h["check"] == "sample_ratio_mismatch")["ok"]


def test_cuped_reduces_the_variance(reports: dict[str, Report]) -> None:
    r = reports["signup_flow"]
    cuped, raw = metric(r, "revenue"), metric(r, "revenue_raw")
    reduction = cuped["cuped"]["by_variation"][0]["variance_reduction"]
    assert reduction > 0.15
    width = lambda m: np.subtract(*m["variations"][0]["absolute_ci"][::-1])  # noqa: E731
    assert width(cuped) < width(raw) * np.sqrt(1 - reduction) * 1.05
    assert cuped["control"]["mean"] == raw["control"]["mean"]  # same metric, adjusted differently


def test_per_segment_lifts_find_opposite_effects(reports: dict[str, Report]) -> None:
    r = reports["hetero"]
    rows = {(s["segment"], s["metric"]): s for s in r["segments"]["rows"]}
    mobile, desktop = rows["mobile", "signup"], rows["desktop", "signup"]
    assert mobile["significant"] and mobile["better"] and mobile["relative"] > 0.5
    assert desktop["significant"] and not desktop["better"] and desktop["relative"] < -0.3
    het = next(h for h in r["segments"]["heterogeneity"] if h["metric"] == "signup")
    assert het["sign_disagreement"] and het["q_p_value"] < 1e-6
    assert "Segments disagree on signup" in r["recommendation"]["reason"]
    assert "across variations × metrics × segments" in r["segments"]["correction_description"]


def test_segments_are_taken_at_exposure_time(reports: dict[str, Report]) -> None:
    users = reports["signup_flow"]["segments"]["users"]
    # "vip" is only ever entered after the exposure: nobody was vip when exposed
    assert users["vip"] == [0, 0]
    assert sum(users["mobile"]) > 1000 and sum(users["desktop"]) > 1000


def test_cumulative_results_end_at_the_overall_result(reports: dict[str, Report]) -> None:
    r = reports["signup_flow"]
    cum = r["cumulative"]
    assert cum["days"] == sorted(cum["days"]) and len(cum["days"]) == 14
    assert [u[-1] for u in cum["users"].values()] == [v["users"] for v in r["variations"]]
    series = cum["metrics"]["signup"]["New flow"]
    overall = metric(r, "signup")["variations"][0]
    assert series["relative"][-1] == pytest.approx(overall["relative"], rel=1e-12)
    assert series["relative_lower"][-1] == pytest.approx(overall["relative_ci"][0], rel=1e-12)


def test_exclusions_are_counted(reports: dict[str, Report]) -> None:
    users = reports["signup_flow"]["users"]
    assert 10 <= users["multiple_exposures"] <= 120  # ~1% of 5,000
    assert 5 <= users["excluded_flagged"] <= 60  # ~0.5% crawlers
    assert users["analysed"] == sum(v["users"] for v in reports["signup_flow"]["variations"])
    messages = " ".join(h["message"] for h in reports["signup_flow"]["health"])
    assert "flagged as bots" in messages and "several variations" in messages


def test_html_report_is_self_contained_and_escaped(reports: dict[str, Report]) -> None:
    r = copy.deepcopy(reports["hetero"])
    r["name"] = "<script>alert(1)</script>"
    page = render_html(r)
    assert "<svg" in page and "<polyline" in page and "<circle" in page
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    assert "Segments disagree" in page and "Health checks" in page


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"guardrails": ["nope"]},
         "features.yaml: experiments.aa.guardrails.0: unknown metric 'nope'"),
        ({"segments": ["nope"]},
         "features.yaml: experiments.aa.segments.0: unknown segment 'nope'"),
        ({"primary_metric": "ctr", "guardrails": ["ctr"]},
         "features.yaml: experiments.aa.guardrails.0: the primary metric is no guardrail"),
        ({"weights": [1, 1, 1], "variations": ["a", "b"]},
         "features.yaml: experiments.aa.weights: one weight per variation is needed"),
    ],
)  # fmt: skip
def test_definition_errors_name_file_key_and_reason(change: dict[str, Any], message: str) -> None:
    doc = copy.deepcopy(FEATURES_YAML)
    doc["experiments"]["aa"].update(change)
    with pytest.raises(ConfigError) as err:
        parse_experiment(doc, "aa", {"mobile", "desktop", "vip"})
    assert str(err.value) == message
