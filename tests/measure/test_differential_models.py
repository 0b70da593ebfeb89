"""Differential tests: planning, corrections, CUPED/OLS, delta method, factorial,
heterogeneity and Bayesian summaries vs statsmodels / scipy / closed forms."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import special
from scipy import stats as sps
from statsmodels.stats._delta_method import NonlinearDeltaCov
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower, TTestIndPower
from statsmodels.stats.proportion import proportion_effectsize

from tailorkit.measure.stats import (
    Estimate,
    GaussianPrior,
    PairedStats,
    SampleStats,
    adjust_p_values,
    beta_binomial,
    correct,
    cuped_adjust,
    factorial_effects,
    gaussian_model,
    lift,
    mde_binomial,
    mde_mean,
    power_binomial,
    power_mean,
    ratio_estimate,
    regression_adjustment,
    relative_lift,
    sample_size_binomial,
    sample_size_mean,
    segment_lifts,
)
from tailorkit.measure.stats.segments import cochran_q

TOL = 1e-6

# --- planning ---------------------------------------------------------------


def _binomial_effect_size(p1: float, p2: float) -> float:
    """Effect size that makes NormalIndPower use the unpooled binomial variance."""
    return (p2 - p1) / math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2)


def test_150_users_rule_of_thumb_is_wrong_about_1100_needed() -> None:
    plan = sample_size_binomial(0.20, 0.05, alpha=0.05, power=0.80)
    assert 1050 <= plan.per_variation <= 1150
    assert plan.per_variation == 1091
    # The closed form (z_{α/2} + z_β)² (p₁q₁ + p₂q₂) / δ² (our convention).
    z = sps.norm.isf(0.025) + sps.norm.ppf(0.8)
    assert math.ceil(z**2 * (0.2 * 0.8 + 0.25 * 0.75) / 0.05**2) == 1091
    # Cohen's arcsine effect size (another common convention) gives 1,092.
    h = proportion_effectsize(0.25, 0.20)
    assert math.ceil(NormalIndPower().solve_power(h, alpha=0.05, power=0.8)) == 1092
    # 150 users per variation only give ~18% power.
    assert power_binomial(0.20, 0.05, 150) == pytest.approx(0.18, abs=0.01)


@pytest.mark.parametrize(("p1", "mde"), [(0.2, 0.05), (0.05, 0.01), (0.5, -0.03), (0.01, 0.002)])
@pytest.mark.parametrize("power", [0.8, 0.9])
def test_binomial_sample_size_matches_normal_ind_power(p1: float, mde: float, power: float) -> None:
    plan = sample_size_binomial(p1, mde, power=power)
    ref = NormalIndPower().solve_power(_binomial_effect_size(p1, p1 + mde), alpha=0.05, power=power)
    assert plan.exact == pytest.approx(ref, rel=TOL)
    assert power_binomial(p1, mde, plan.exact) == pytest.approx(power, abs=TOL)


@pytest.mark.parametrize("n", [100, 1091, 5000])
@pytest.mark.parametrize("sides", ["two-sided", "one-sided"])
def test_binomial_power_matches_normal_ind_power(n: int, sides: str) -> None:
    alt = "two-sided" if sides == "two-sided" else "larger"
    ref = NormalIndPower().power(_binomial_effect_size(0.2, 0.25), n, alpha=0.05, alternative=alt)
    assert power_binomial(0.2, 0.05, n, sides=sides) == pytest.approx(ref, abs=TOL)  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [2, 3, 5])
def test_mean_sample_size_with_bonferroni_arms(k: int) -> None:
    plan = sample_size_mean(50.0, 20.0, 0.05, relative=True, n_variations=k)
    ref = NormalIndPower().solve_power(2.5 / 20.0, alpha=0.05 / (k - 1), power=0.8)
    assert plan.exact == pytest.approx(ref, rel=TOL)
    assert plan.alpha_per_comparison == pytest.approx(0.05 / (k - 1))
    assert plan.total == plan.per_variation * k
    # The t-test version differs by about one user (the normal approximation).
    t_ref = TTestIndPower().solve_power(2.5 / 20.0, alpha=0.05 / (k - 1), power=0.8)
    assert abs(plan.exact - t_ref) < 2.5


def test_mean_power_and_mde_match_normal_ind_power() -> None:
    ref_power = NormalIndPower().power(0.1, 800, alpha=0.05)
    assert power_mean(10.0, 5.0, 0.5, 800) == pytest.approx(ref_power, abs=TOL)
    mde = mde_mean(10.0, 5.0, 800).absolute
    # statsmodels' own root finder stops at ~1e-5; its power function is exact.
    assert NormalIndPower().power(mde / 5.0, 800, alpha=0.05) == pytest.approx(0.8, abs=1e-9)
    ref_es = NormalIndPower().solve_power(None, nobs1=800, alpha=0.05, power=0.8)
    assert mde == pytest.approx(ref_es * 5.0, rel=1e-4)


def test_binomial_mde_inverts_sample_size() -> None:
    mde = mde_binomial(0.2, 1090.9916107996685)
    assert mde.absolute == pytest.approx(0.05, rel=1e-6)
    assert mde.relative == pytest.approx(0.25, rel=1e-6)


# --- multiple comparisons ---------------------------------------------------

METHODS = [("bonferroni", "bonferroni"), ("holm", "holm"), ("bh", "fdr_bh")]


@pytest.mark.parametrize(("ours", "theirs"), METHODS)
@pytest.mark.parametrize("seed", range(5))
def test_corrections_match_multipletests(ours: str, theirs: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 0.01, 4), rng.uniform(0, 1, 12), [0.02, 0.02, 0.5]])
    rng.shuffle(p)
    reject, adjusted, _, _ = multipletests(p, alpha=0.05, method=theirs)
    ours_result = correct(p, ours, 0.05)  # type: ignore[arg-type]
    np.testing.assert_allclose(ours_result.adjusted, adjusted, atol=1e-12)
    np.testing.assert_array_equal(ours_result.rejected, reject)


@pytest.mark.parametrize(("ours", "theirs"), METHODS)
def test_corrections_vectorized_over_families(ours: str, theirs: str) -> None:
    p = np.random.default_rng(9).uniform(0, 0.2, (6, 8))
    adj = adjust_p_values(p, ours)  # type: ignore[arg-type]
    for row, got in zip(p, adj, strict=True):
        np.testing.assert_allclose(got, multipletests(row, method=theirs)[1], atol=1e-12)


# --- CUPED and regression adjustment ----------------------------------------


def _cuped_rows(seed: int, n: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    arm = rng.integers(0, 2, n)
    pre = rng.gamma(2.0, 5.0, n)
    post = 3.0 + 0.8 * pre + 1.5 * arm + rng.normal(0, 4 + 2 * arm, n)
    return pd.DataFrame({"post": post, "pre": pre, "arm": np.where(arm == 1, "t", "c")})


def _paired(df: pd.DataFrame, arm: str) -> PairedStats:
    part = df[df.arm == arm]
    return PairedStats.from_values(part.post, part.pre)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cuped_effect_equals_ols_on_raw_rows(seed: int) -> None:
    df = _cuped_rows(seed)
    (et, ec), theta = cuped_adjust([_paired(df, "t"), _paired(df, "c")])
    X = sm.add_constant(pd.DataFrame({"t": (df.arm == "t").astype(float), "pre": df.pre}))
    fit = sm.OLS(df.post, X).fit(cov_type="HC2")
    assert et.mean - ec.mean == pytest.approx(fit.params["t"], abs=1e-9)
    assert theta == pytest.approx(fit.params["pre"], abs=1e-9)
    # Our standard error treats θ as known: it equals the HC2 standard error of
    # a regression on the adjusted outcome, and the full OLS one to ~0.1%.
    adj = df.post - theta * (df.pre - df.pre.mean())
    fit_adj = sm.OLS(adj, X[["const", "t"]]).fit(cov_type="HC2")
    se = math.sqrt(et.variance + ec.variance)
    assert se == pytest.approx(fit_adj.bse["t"], rel=1e-9)
    assert se == pytest.approx(fit.bse["t"], rel=5e-3)


def test_regression_adjustment_without_covariates_is_welch() -> None:
    df = _cuped_rows(4)
    (eff,) = regression_adjustment(df, "post", "arm", [], control="c", cov_type="HC2")
    t, c = df.post[df.arm == "t"].to_numpy(), df.post[df.arm == "c"].to_numpy()
    welch_se = math.sqrt(t.var(ddof=1) / t.size + c.var(ddof=1) / c.size)
    assert eff.effect == pytest.approx(t.mean() - c.mean(), abs=1e-9)
    assert eff.se == pytest.approx(welch_se, rel=1e-9)


def test_regression_adjustment_matches_formula_api_with_categoricals() -> None:
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(5)
    n = 2000
    df = pd.DataFrame(
        {
            "arm": rng.choice(["control", "b", "c"], n),
            "device": rng.choice(["mobile", "desktop", "tablet"], n),
            "weekday": rng.choice(["mon", "tue", "wed", "sat"], n),
            "visits": rng.poisson(3, n).astype(float),
        }
    )
    df["y"] = 2 * (df.arm == "b") + (df.device == "mobile") + 0.5 * df.visits + rng.normal(0, 2, n)
    ours = regression_adjustment(df, "y", "arm", ["device", "weekday", "visits"], control="control")
    fit = smf.ols("y ~ C(arm, Treatment('control')) + C(device) + C(weekday) + visits", df).fit(
        cov_type="HC1"
    )
    for eff in ours:
        key = f"C(arm, Treatment('control'))[T.{eff.variation}]"
        assert eff.effect == pytest.approx(fit.params[key], abs=1e-9)
        assert eff.se == pytest.approx(fit.bse[key], rel=1e-9)
        assert eff.p_value == pytest.approx(fit.pvalues[key], abs=1e-9)


# --- delta method -------------------------------------------------------------


def test_ratio_metric_delta_method_matches_statsmodels() -> None:
    rng = np.random.default_rng(3)
    sessions = rng.poisson(4, 500) + 1.0
    revenue = sessions * rng.gamma(2, 3, 500)
    e = ratio_estimate(PairedStats.from_values(revenue, sessions))
    means = np.array([revenue.mean(), sessions.mean()])
    cov = np.cov(np.vstack([revenue, sessions]), ddof=1) / revenue.size
    ref = NonlinearDeltaCov(lambda p: np.array([p[0] / p[1]]), means, cov)
    assert e.mean == pytest.approx(revenue.sum() / sessions.sum(), rel=1e-12)
    assert e.variance == pytest.approx(ref.cov()[0, 0], rel=1e-6)


def test_relative_lift_delta_method_matches_statsmodels() -> None:
    t, c = Estimate(10.4, 0.09, 900), Estimate(10.0, 0.07, 900)
    rel, se = relative_lift(t, c)
    ref = NonlinearDeltaCov(
        lambda p: np.array([p[0] / p[1] - 1]), np.array([10.4, 10.0]), np.diag([0.09, 0.07])
    )
    assert rel == pytest.approx(0.04)
    assert se == pytest.approx(ref.se_vectorized()[0], rel=1e-6)


# --- factorial -----------------------------------------------------------------


@pytest.mark.parametrize("levels", [(2, 2), (3, 2), (2, 2, 2)])
def test_factorial_effects_match_saturated_ols_with_hc2(levels: tuple[int, ...]) -> None:
    rng = np.random.default_rng(len(levels) * 10 + levels[0])
    rows = []
    for cell in np.ndindex(*levels):
        n = int(rng.integers(150, 400))
        mu = 5 + 0.7 * cell[0] + 0.4 * cell[1] + 0.3 * (cell[0] > 0) * (cell[1] > 0)
        y = rng.normal(mu, 1 + 0.3 * sum(cell), n)
        rows.append(pd.DataFrame({"y": y, **{f"f{j}": cell[j] for j in range(len(levels))}}))
    df = pd.concat(rows, ignore_index=True)
    cells: dict[tuple[int, ...], SampleStats] = {
        tuple(int(v) for v in c): SampleStats.from_values(g.y)  # type: ignore[call-overload]
        for c, g in df.groupby([f"f{j}" for j in range(len(levels))])
    }
    effects = {e.name: e for e in factorial_effects(cells, [f"f{j}" for j in range(len(levels))])}
    # Reference: OLS on one dummy per cell (cell-means model), HC2 covariance.
    keys = sorted(cells)
    X = np.column_stack(
        [np.all(df[[f"f{j}" for j in range(len(levels))]].to_numpy() == k, axis=1) for k in keys]
    )
    fit = sm.OLS(df.y.to_numpy(), X.astype(float)).fit(cov_type="HC2")
    main = "f0" if levels[0] == 2 else "f0[1]"
    inter = f"{main}×f1"
    for name in (main, inter):
        w = _contrast(keys, name, levels)
        tt = fit.t_test(w)
        assert effects[name].estimate == pytest.approx(float(tt.effect[0]), abs=1e-9)
        assert effects[name].se == pytest.approx(float(tt.sd[0, 0]), rel=1e-9)


def _contrast(keys: list[tuple[int, ...]], name: str, levels: tuple[int, ...]) -> np.ndarray:
    """Independent construction of the equal-weight contrast for f0 (level 1) and f0×f1."""
    other = math.prod(levels[1:]) if "×" not in name else math.prod(levels[2:])
    w = []
    for k in keys:
        a = (k[0] == 1) - (k[0] == 0)
        w.append(a / other if "×" not in name else a * ((k[1] == 1) - (k[1] == 0)) / other)
    return np.array(w, float)


def test_two_by_two_interaction_is_difference_in_differences() -> None:
    means = {(0, 0): 1.0, (1, 0): 2.0, (0, 1): 3.0, (1, 1): 7.0}
    cells: dict[tuple[int, ...], Estimate] = {k: Estimate(v, 0.01, 100) for k, v in means.items()}
    eff = {e.name: e for e in factorial_effects(cells, ["A", "B"])}
    assert eff["A×B"].estimate == pytest.approx(7 - 3 - 2 + 1)
    assert eff["A"].estimate == pytest.approx(((2 - 1) + (7 - 3)) / 2)
    assert eff["A×B"].se == pytest.approx(math.sqrt(4 * 0.01))


# --- heterogeneity ---------------------------------------------------------------


def test_cochran_q_matches_statsmodels_combine_effects() -> None:
    eff, var = np.array([0.1, 0.3, -0.05, 0.2]), np.array([0.01, 0.02, 0.015, 0.01])
    q, df, p = cochran_q(eff, np.sqrt(var))
    ref = combine_effects(eff, var)
    assert q == pytest.approx(ref.q, rel=1e-9)
    assert df == ref.df_resid
    assert p == pytest.approx(ref.test_homogeneity().pvalue, abs=1e-9)


def test_segment_lifts_use_the_named_correction() -> None:
    seg = {
        name: (SampleStats.from_proportion(4000, t), SampleStats.from_proportion(4000, c))
        for name, t, c in [("a", 460, 400), ("b", 430, 400), ("c", 400, 400)]
    }
    r = segment_lifts(seg, "binomial", correction="bh")
    raw = [s.lift.p_value for s in r.segments]
    np.testing.assert_allclose(
        [s.adjusted_p_value for s in r.segments], multipletests(raw, method="fdr_bh")[1]
    )
    assert r.correction == "bh" and "Benjamini" in r.correction_description


# --- Bayesian ----------------------------------------------------------------------


def _evan_miller(at: int, bt: int, ac: int, bc: int) -> float:
    """Closed form P(p_t > p_c) for integer Beta parameters (Evan Miller)."""
    i = np.arange(at)
    terms = (
        special.betaln(ac + i, bc + bt)
        - np.log(bt + i)
        - special.betaln(1 + i, bt)
        - special.betaln(ac, bc)
    )
    return float(np.exp(terms).sum())


@pytest.mark.parametrize(
    ("nt", "xt", "nc", "xc"), [(1000, 250, 1000, 200), (40, 5, 35, 7), (300, 30, 5000, 480)]
)
def test_beta_chance_to_win_matches_closed_form(nt: int, xt: int, nc: int, xc: int) -> None:
    r = beta_binomial(SampleStats.from_proportion(nt, xt), SampleStats.from_proportion(nc, xc))
    assert r.chance_to_win == pytest.approx(
        _evan_miller(1 + xt, 1 + nt - xt, 1 + xc, 1 + nc - xc), abs=1e-8
    )


def test_beta_risk_and_intervals_match_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    r = beta_binomial(SampleStats.from_proportion(400, 60), SampleStats.from_proportion(420, 55))
    t, c = rng.beta(61, 341, 4_000_000), rng.beta(56, 366, 4_000_000)
    assert r.risk == pytest.approx(np.maximum(c - t, 0).mean(), rel=5e-3)
    assert r.risk_control == pytest.approx(np.maximum(t - c, 0).mean(), rel=5e-3)
    assert r.relative_risk == pytest.approx(np.maximum(1 - t / c, 0).mean(), rel=5e-3)
    lo, hi = np.quantile(t - c, [0.025, 0.975])
    assert (r.credible_interval.lower, r.credible_interval.upper) == pytest.approx(
        (lo, hi), abs=3e-4
    )
    rlo, rhi = np.quantile(t / c - 1, [0.025, 0.975])
    assert (
        r.relative_credible_interval.lower,
        r.relative_credible_interval.upper,
    ) == pytest.approx((rlo, rhi), abs=3e-3)
    assert r.relative_mean == pytest.approx((t / c - 1).mean(), abs=2e-3)


def test_gaussian_flat_prior_reproduces_z_interval() -> None:
    t, c = Estimate(10.4, 0.04, 2000), Estimate(10.0, 0.05, 2000)
    b, f = gaussian_model(t, c), lift(t, c)
    assert (b.credible_interval.lower, b.credible_interval.upper) == pytest.approx(
        (f.absolute_ci.lower, f.absolute_ci.upper), abs=1e-12
    )
    assert b.chance_to_win == pytest.approx(1 - f.p_value / 2, abs=1e-12)


def test_gaussian_prior_shrinks_and_risk_matches_monte_carlo() -> None:
    t, c = Estimate(10.4, 0.04, 2000), Estimate(10.0, 0.05, 2000)
    prior = GaussianPrior(0.0, 0.02**2, scale="relative")
    b = gaussian_model(t, c, prior)
    flat = gaussian_model(t, c)
    assert 0 < b.relative_mean < flat.relative_mean
    # Conjugate normal posterior of the absolute effect (prior scaled by the control mean).
    prior_var, like_var = (0.02 * 10.0) ** 2, 0.09
    post_var = 1 / (1 / prior_var + 1 / like_var)
    assert b.lift_mean == pytest.approx(post_var * 0.4 / like_var, rel=1e-12)
    draws = np.random.default_rng(1).normal(b.lift_mean, math.sqrt(post_var), 4_000_000)
    assert b.risk == pytest.approx(np.maximum(-draws, 0).mean(), rel=2e-2)
    assert b.chance_to_win == pytest.approx((draws > 0).mean(), abs=1e-3)
