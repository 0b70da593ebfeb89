"""The report layer, health checks and properties of the engine."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from tailorkit.measure.stats import (
    Estimate,
    PairedStats,
    SampleStats,
    adjust_p_values,
    analyze_metric,
    apply_correction,
    beta_binomial,
    expected_duration,
    factorial_effects,
    guardrail_check,
    lift,
    minimum_data_checks,
    multiple_exposure_check,
    percentile_cap,
    recommend,
    sample_size_binomial,
    segment_lifts,
    sequential_lift,
    srm_check,
    winsorize,
)
from tailorkit.measure.stats import sequential as seq

conv = SampleStats.from_proportion


def test_analyze_binomial_abn_reports_lift_ci_p_and_bayes() -> None:
    a = analyze_metric(
        [conv(5000, 500), conv(5000, 560), conv(5000, 470)],
        "binomial",
        names=["ctl", "b", "c"],
        metric="buy",
    )
    assert a.control == "ctl" and [v.name for v in a.variations] == ["b", "c"]
    assert a.correction == "holm" and "Holm" in a.correction_description
    b = a.variations[0]
    assert b.lift.absolute == pytest.approx(0.012)
    assert b.lift.relative == pytest.approx(0.12)
    raw = [float(v.lift.p_value) for v in a.variations]
    assert [v.adjusted_p_value for v in a.variations] == pytest.approx(
        list(adjust_p_values(raw, "holm"))
    )
    ref = beta_binomial(conv(5000, 560), conv(5000, 500))
    assert b.bayes.chance_to_win == pytest.approx(ref.chance_to_win)
    assert 0 < b.bayes.risk < b.bayes.risk_control


def test_analyze_mean_uses_welch() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.gamma(2, 5, 800), rng.gamma(2, 5.5, 700)
    a = analyze_metric([SampleStats.from_values(x), SampleStats.from_values(y)], "mean")
    ref = sps.ttest_ind(y, x, equal_var=False)
    assert a.variations[0].lift.p_value == pytest.approx(ref.pvalue, abs=1e-9)
    assert math.isfinite(a.variations[0].lift.df)


def test_analyze_ratio_metric_uses_delta_method() -> None:
    rng = np.random.default_rng(2)
    stats = []
    for scale in (1.0, 1.1):
        sessions = rng.poisson(3, 3000) + 1.0
        stats.append(PairedStats.from_values(sessions * rng.gamma(2, scale, 3000), sessions))
    a = analyze_metric(stats, "ratio", metric="revenue per session")
    v = a.variations[0]
    assert v.mean == pytest.approx(stats[1].sum_x / stats[1].sum_y)
    assert v.lift.relative_ci.lower < 0.1 < v.lift.relative_ci.upper


def test_analyze_cuped_matches_ols_and_shrinks_interval() -> None:
    rng = np.random.default_rng(3)
    pre = rng.normal(10, 3, 4000)
    arm = np.repeat([0, 1], 2000)
    post = pre + 0.3 * arm + rng.normal(0, 1.5, 4000)
    stats = [PairedStats.from_values(post[arm == k], pre[arm == k]) for k in (0, 1)]
    with_cuped = analyze_metric(stats, "mean", cuped=True).variations[0].lift
    plain = analyze_metric(stats, "mean").variations[0].lift
    X = sm.add_constant(np.column_stack([arm, pre]))
    ols = sm.OLS(post, X).fit()
    assert with_cuped.absolute == pytest.approx(ols.params[1], abs=1e-9)
    assert with_cuped.absolute_se < 0.5 * plain.absolute_se
    with pytest.raises(ValueError, match="CUPED needs PairedStats"):
        analyze_metric([conv(10, 2), conv(10, 3)], "binomial", cuped=True)


def test_sequential_intervals_are_wider_than_fixed_horizon() -> None:
    a = [conv(4000, 400), conv(4000, 470)]
    fixed = analyze_metric(a, "binomial").variations[0].lift
    always = analyze_metric(a, "binomial", sequential=True).variations[0].lift
    assert always.absolute_ci.lower < fixed.absolute_ci.lower
    assert always.absolute_ci.upper > fixed.absolute_ci.upper
    assert always.p_value > fixed.p_value


def test_sequential_p_value_is_where_the_sequence_touches_zero() -> None:
    t, c = Estimate(10.2, 0.004, 3000), Estimate(10.0, 0.004, 3000)
    r = sequential_lift(t, c)
    ci = seq.interval(r.absolute, r.absolute_se, 6000, alpha=float(r.p_value))
    assert ci.lower == pytest.approx(0.0, abs=1e-9)
    one = sequential_lift(t, c, alternative="greater")
    assert one.p_value == pytest.approx(r.p_value / 2)
    assert one.absolute_ci.upper == math.inf
    assert sequential_lift(t, c, alternative="less").p_value == 1.0


def test_sequential_width_is_tightest_near_the_tuning_parameter() -> None:
    n = np.array([500.0, 2000.0, 5000.0, 20000.0, 80000.0])
    # Same per-user variance at every n: width / fixed-horizon width.
    ratio = np.asarray(seq.halfwidth(1.0 / np.sqrt(n), n, 0.05, 5000.0)) / (1.96 / np.sqrt(n))
    assert int(np.argmin(ratio)) == 2
    assert np.all(ratio > 1.0)


def test_lower_is_better_metric_flips_winner() -> None:
    a = analyze_metric([conv(5000, 600), conv(5000, 500)], "binomial", higher_is_better=False)
    v = a.variations[0]
    assert v.better and v.significant
    assert v.bayes.chance_to_win > 0.99
    assert recommend(a).action == "ship"


def test_recommend_ship_stop_keep_running_inconclusive() -> None:
    win = analyze_metric([conv(5000, 500), conv(5000, 580)], "binomial", metric="buy")
    harm = analyze_metric([conv(5000, 500), conv(5000, 420)], "binomial", metric="buy")
    flat = analyze_metric([conv(5000, 500), conv(5000, 505)], "binomial", metric="buy")
    assert recommend(win).action == "ship"
    assert "buy +16.0%" in recommend(win).reason
    assert recommend(harm).action == "stop_for_harm"
    assert recommend(flat, planned_per_variation=10_000).action == "keep_running"
    r = recommend(flat, planned_per_variation=5000)
    assert r.action == "inconclusive" and "plausible" in r.reason
    assert recommend(flat, health=minimum_data_checks([5000, 50])).action == "keep_running"
    srm = srm_check([5000, 5400], [0.5, 0.5])
    assert recommend(win, srm=srm).action == "inconclusive"
    seq_flat = analyze_metric([conv(5000, 500), conv(5000, 505)], "binomial", sequential=True)
    assert recommend(seq_flat).action == "keep_running"


def test_guardrail_harm_blocks_shipping() -> None:
    win = analyze_metric([conv(5000, 500), conv(5000, 580)], "binomial", metric="buy")
    load = analyze_metric(
        [
            SampleStats(5000, 5000 * 1.0, 5000 * (1.0 + 0.04)),
            SampleStats(5000, 5000 * 1.1, 5000 * (1.21 + 0.04)),
        ],
        "mean",
        metric="load seconds",
        higher_is_better=False,
    )
    r = recommend(win, guardrails=[load])
    assert r.action == "stop_for_harm" and "load seconds" in r.reason


def test_guardrail_check_statuses() -> None:
    worse = lift(Estimate(0.98, 1e-4, 5000), Estimate(1.0, 1e-4, 5000))
    assert guardrail_check(worse).status == "warning"
    assert guardrail_check(worse, margin=0.05).status == "ok"
    assert guardrail_check(worse, margin=0.05).non_inferior
    much_worse = lift(Estimate(0.9, 1e-4, 5000), Estimate(1.0, 1e-4, 5000))
    assert guardrail_check(much_worse).status == "harm"
    assert guardrail_check(much_worse, higher_is_better=False).status == "ok"


def test_apply_correction_across_metrics_and_segments() -> None:
    a = analyze_metric([conv(5000, 500), conv(5000, 560)], "binomial", metric="m1")
    b = analyze_metric([conv(5000, 300), conv(5000, 330)], "binomial", metric="m2")
    out = apply_correction([a, b], "bh")
    raw = [float(a.variations[0].lift.p_value), float(b.variations[0].lift.p_value)]
    assert [o.variations[0].adjusted_p_value for o in out] == pytest.approx(
        list(adjust_p_values(raw, "bh"))
    )
    assert all(o.correction == "bh" for o in out)


def test_segments_same_sign_is_not_disagreement() -> None:
    seg = {
        "new": (conv(3000, 380), conv(3000, 300)),
        "returning": (conv(3000, 420), conv(3000, 340)),
        "vip": (conv(500, 60), conv(500, 58)),
    }
    r = segment_lifts(seg, "binomial")
    assert not r.sign_disagreement
    assert [s.segment for s in r.segments if s.significant] == ["new", "returning"]
    assert r.q_p_value > 0.05


def test_health_helpers() -> None:
    assert multiple_exposure_check(10, 10_000).ok
    assert not multiple_exposure_check(500, 10_000).ok
    assert minimum_data_checks([1000, 1000], [50, 60]) == []
    assert srm_check([3300, 3350, 3350], [1, 1, 1]).as_check().ok
    with pytest.raises(ValueError):
        srm_check([1, 2], [1.0])


def test_winsorize_and_pooled_cap() -> None:
    values = np.concatenate([np.ones(99), [1000.0]])
    cap = percentile_cap(values, 99)
    capped = np.asarray(winsorize(values, cap))
    assert capped.max() == cap < 1000
    assert SampleStats.from_values(capped).variance < SampleStats.from_values(values).variance


def test_planning_helpers() -> None:
    assert sample_size_binomial(0.2, 0.05, n_variations=3).per_variation > 1091
    assert sample_size_binomial(0.2, 0.05, sides="one-sided").per_variation < 1091
    assert sample_size_binomial(0.2, -0.05).per_variation < 1091  # 20% → 15% has less variance
    d = expected_duration(1091, 3, daily_users=1000, traffic_share=0.5)
    assert (d.days, d.recommended_days, d.total_users) == (7, 7, 3273)
    with pytest.raises(ValueError):
        sample_size_binomial(0.2, 0.9)


def test_factorial_needs_full_grid() -> None:
    with pytest.raises(ValueError, match="full grid"):
        factorial_effects({(0, 0): conv(10, 1), (1, 1): conv(10, 2)}, metric_type="binomial")


def test_regression_adjustment_handles_categoricals() -> None:
    from tailorkit.measure.stats import regression_adjustment

    rng = np.random.default_rng(4)
    df = pd.DataFrame({"arm": rng.choice(["a", "b"], 1000), "device": rng.choice(["m", "d"], 1000)})
    df["y"] = (df.arm == "b") * 1.0 + (df.device == "m") * 3.0 + rng.normal(0, 1, 1000)
    (r,) = regression_adjustment(df, "y", "arm", ["device"], control="a")
    assert r.ci.lower < 1.0 < r.ci.upper and r.cov_type == "HC1"


# --- properties ------------------------------------------------------------------------

means = st.floats(0.5, 100.0)
variances = st.floats(1e-4, 10.0)
sizes = st.integers(5, 100_000)


@given(means, variances, sizes, means, variances, sizes)
@settings(max_examples=60, deadline=None)
def test_swapping_arms_negates_the_lift(
    m1: float, v1: float, n1: int, m2: float, v2: float, n2: int
) -> None:
    a, b = Estimate(m1, v1, n1), Estimate(m2, v2, n2)
    ab, ba = lift(a, b, use_t=True), lift(b, a, use_t=True)
    assert ab.absolute == pytest.approx(-ba.absolute)
    assert ab.p_value == pytest.approx(ba.p_value)
    assert ab.absolute_ci.lower == pytest.approx(-ba.absolute_ci.upper)
    assert 0.0 <= ab.p_value <= 1.0
    assert ab.absolute_ci.contains(ab.absolute)


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30))
@settings(max_examples=100, deadline=None)
def test_adjusted_p_values_are_ordered_and_bounded(p: list[float]) -> None:
    raw = np.array(p)
    bonf, holm, bh = (adjust_p_values(raw, m) for m in ("bonferroni", "holm", "bh"))
    assert np.all(raw <= bh + 1e-15) and np.all(bh <= holm + 1e-15) and np.all(holm <= bonf + 1e-15)
    assert np.all(bonf <= 1.0)
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(holm[order]) >= -1e-15) and np.all(np.diff(bh[order]) >= -1e-15)


@given(st.integers(1, 400), st.integers(0, 400), st.integers(1, 400), st.integers(0, 400))
@settings(max_examples=25, deadline=None)
def test_beta_chance_to_win_is_complementary(nt: int, xt: int, nc: int, xc: int) -> None:
    t, c = conv(nt + xt, xt), conv(nc + xc, xc)
    assert beta_binomial(t, c).chance_to_win + beta_binomial(c, t).chance_to_win == pytest.approx(
        1.0, abs=1e-8
    )


def test_configured_priors_reach_the_bayesian_summaries() -> None:
    import copy

    from tailorkit.measure.analysis.examples import AS_OF, FEATURES, example_spec, example_table
    from tailorkit.measure.analysis.groups import Groups
    from tailorkit.measure.analysis.pipeline import build_report
    from tailorkit.measure.analysis.spec import parse_experiment
    from tailorkit.measure.stats import BetaPrior
    from tailorkit.project.loader import QualitySettings

    doc = copy.deepcopy(FEATURES)
    metrics = doc["experiments"]["checkout"]["metrics"]
    metrics["purchase"]["prior"] = {"alpha": 30, "beta": 70}
    metrics["revenue"]["prior"] = {"sd": 0.001}  # lifts beyond ±0.3% are implausible
    spec = parse_experiment(doc, "checkout", {"mobile"})
    table = example_table()
    r = build_report(spec, table, AS_OF, QualitySettings())
    default = build_report(example_spec(), table, AS_OF, QualitySettings())
    purchase, revenue = r["metrics"]
    assert purchase["prior"] == {"distribution": "beta", "alpha": 30.0, "beta": 70.0}
    assert default["metrics"][0]["prior"] == {"distribution": "beta", "alpha": 1.0, "beta": 1.0}
    g = Groups.from_arrow(table, 2)
    n, x = g.pooled("n").astype(int), g.pooled("x0").astype(int)
    ref = beta_binomial(conv(n[1], x[1]), conv(n[0], x[0]), BetaPrior(30.0, 70.0))
    got = purchase["variations"][0]["chance_to_win"]
    assert got == pytest.approx(float(ref.chance_to_win), rel=1e-9)
    assert got != default["metrics"][0]["variations"][0]["chance_to_win"]
    # the tight prior pulls the revenue lift's chance to win towards a coin flip
    shrunk = revenue["variations"][0]["chance_to_win"]
    flat = default["metrics"][1]["variations"][0]["chance_to_win"]
    assert revenue["prior"]["sd"] == pytest.approx(0.001)
    assert abs(shrunk - 0.5) < abs(flat - 0.5)
