"""Differential tests: frequentist tests and intervals vs scipy / statsmodels.

Where the method is the same, results must agree to 1e-6 (most agree to 1e-12).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats import proportion as smp
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from tailorkit.measure.stats import (
    Estimate,
    SampleStats,
    binomial_estimate,
    chi_square_test,
    confidence_interval,
    goodness_of_fit,
    lift,
    mean_estimate,
    srm_check,
    welch_t_test,
    z_test_proportions,
)

TOL = 1e-6
ALTERNATIVES = [("two-sided", "two-sided"), ("greater", "larger"), ("less", "smaller")]
PROPORTION_CASES = [
    (120, 1000, 100, 1000),
    (5, 40, 11, 37),
    (4810, 50000, 5000, 50100),
    (0, 30, 3, 30),
]


@pytest.mark.parametrize(("ours", "theirs"), ALTERNATIVES)
@pytest.mark.parametrize(("xt", "nt", "xc", "nc"), PROPORTION_CASES)
def test_pooled_z_matches_proportions_ztest(
    xt: int, nt: int, xc: int, nc: int, ours: str, theirs: str
) -> None:
    r = z_test_proportions(xt, nt, xc, nc, ours, pooled=True)  # type: ignore[arg-type]
    stat, p = smp.proportions_ztest([xt, xc], [nt, nc], alternative=theirs)
    assert r.statistic == pytest.approx(stat, abs=TOL)
    assert r.p_value == pytest.approx(p, abs=TOL)


@pytest.mark.parametrize(("ours", "theirs"), ALTERNATIVES)
@pytest.mark.parametrize(("xt", "nt", "xc", "nc"), PROPORTION_CASES[:3])
def test_unpooled_z_and_ci_match_statsmodels_wald(
    xt: int, nt: int, xc: int, nc: int, ours: str, theirs: str
) -> None:
    r = z_test_proportions(xt, nt, xc, nc, ours, pooled=False)  # type: ignore[arg-type]
    ref = smp.test_proportions_2indep(
        xt, nt, xc, nc, method="wald", compare="diff", alternative=theirs
    )
    assert r.statistic == pytest.approx(ref.statistic, abs=TOL)
    assert r.p_value == pytest.approx(ref.pvalue, abs=TOL)
    # The lift's z test and interval are the unpooled Wald ones.
    lr = lift(
        binomial_estimate(SampleStats.from_proportion(nt, xt)),
        binomial_estimate(SampleStats.from_proportion(nc, xc)),
        alpha=0.1,
    )
    lo, hi = smp.confint_proportions_2indep(
        xt, nt, xc, nc, method="wald", compare="diff", alpha=0.1
    )
    assert (lr.absolute_ci.lower, lr.absolute_ci.upper) == pytest.approx((lo, hi), abs=TOL)
    two_sided = smp.test_proportions_2indep(xt, nt, xc, nc, method="wald", compare="diff")
    assert lr.p_value == pytest.approx(two_sided.pvalue, abs=TOL)


def _raw(seed: int, n1: int, n2: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.lognormal(1.0, 1.0, n1) + 0.3, rng.lognormal(1.0, 1.3, n2)


@pytest.mark.parametrize(
    ("ours", "theirs"), [("two-sided", "two-sided"), ("greater", "greater"), ("less", "less")]
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_welch_matches_ttest_ind_from_stats(seed: int, ours: str, theirs: str) -> None:
    a, b = _raw(seed, 300, 250)
    sa, sb = SampleStats.from_values(a), SampleStats.from_values(b)
    r = welch_t_test(mean_estimate(sa), mean_estimate(sb), ours)  # type: ignore[arg-type]
    ref = sps.ttest_ind_from_stats(
        a.mean(),
        a.std(ddof=1),
        a.size,
        b.mean(),
        b.std(ddof=1),
        b.size,
        equal_var=False,
        alternative=theirs,
    )
    assert r.statistic == pytest.approx(ref.statistic, abs=TOL)
    assert r.p_value == pytest.approx(ref.pvalue, abs=TOL)
    raw = sps.ttest_ind(a, b, equal_var=False, alternative=theirs)
    assert r.df == pytest.approx(raw.df, rel=1e-9)


def test_welch_vectorized_matches_scipy_elementwise() -> None:
    rng = np.random.default_rng(7)
    m1, m2 = rng.normal(10, 1, 50), rng.normal(10, 1, 50)
    s1, s2 = rng.uniform(1, 5, 50), rng.uniform(1, 5, 50)
    n1, n2 = rng.integers(20, 2000, 50).astype(float), rng.integers(20, 2000, 50).astype(float)
    r = welch_t_test(Estimate(m1, s1**2 / n1, n1), Estimate(m2, s2**2 / n2, n2))
    ref = sps.ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False)
    np.testing.assert_allclose(r.statistic, ref.statistic, atol=TOL)
    np.testing.assert_allclose(r.p_value, ref.pvalue, atol=TOL)


@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_welch_interval_matches_statsmodels_compare_means(alpha: float) -> None:
    a, b = _raw(11, 400, 380)
    r = lift(
        mean_estimate(SampleStats.from_values(a)),
        mean_estimate(SampleStats.from_values(b)),
        alpha,
        use_t=True,
    )
    cm = CompareMeans(DescrStatsW(a), DescrStatsW(b))
    lo, hi = cm.tconfint_diff(alpha=alpha, usevar="unequal")
    assert (r.absolute_ci.lower, r.absolute_ci.upper) == pytest.approx((lo, hi), abs=TOL)
    zlo, zhi = cm.zconfint_diff(alpha=alpha, usevar="unequal")
    z = lift(
        mean_estimate(SampleStats.from_values(a)), mean_estimate(SampleStats.from_values(b)), alpha
    )
    assert (z.absolute_ci.lower, z.absolute_ci.upper) == pytest.approx((zlo, zhi), abs=TOL)


@pytest.mark.parametrize(("ours", "theirs"), [("greater", "larger"), ("less", "smaller")])
def test_one_sided_intervals_match_statsmodels(ours: str, theirs: str) -> None:
    a, b = _raw(12, 200, 220)
    r = lift(mean_estimate(SampleStats.from_values(a)), mean_estimate(SampleStats.from_values(b)),
             0.05, ours, use_t=True)  # type: ignore[arg-type]  # fmt: skip
    lo, hi = CompareMeans(DescrStatsW(a), DescrStatsW(b)).tconfint_diff(
        alpha=0.05, usevar="unequal", alternative=theirs
    )
    assert (r.absolute_ci.lower, r.absolute_ci.upper) == pytest.approx((lo, hi), abs=TOL)


def test_confidence_interval_matches_scipy_norm_interval() -> None:
    ci = confidence_interval(1.3, 0.4, alpha=0.1)
    assert (ci.lower, ci.upper) == pytest.approx(
        sps.norm.interval(0.9, loc=1.3, scale=0.4), abs=1e-12
    )
    tci = confidence_interval(1.3, 0.4, alpha=0.1, df=17)
    assert (tci.lower, tci.upper) == pytest.approx(
        sps.t.interval(0.9, 17, loc=1.3, scale=0.4), abs=1e-12
    )


@pytest.mark.parametrize(
    ("conv", "tot"),
    [
        ([100, 120, 130], [1000, 1000, 1000]),
        ([5, 9], [50, 61]),
        ([40, 52, 61, 39], [900, 1000, 950, 880]),
    ],
)
def test_chi_square_matches_chi2_contingency(conv: list[int], tot: list[int]) -> None:
    r = chi_square_test(conv, tot)
    table = np.array([conv, np.subtract(tot, conv)]).T
    ref = sps.chi2_contingency(table, correction=False)
    assert r.statistic == pytest.approx(ref.statistic, abs=TOL)
    assert r.p_value == pytest.approx(ref.pvalue, abs=TOL)
    assert r.df == ref.dof


def test_chi_square_vectorized_rows() -> None:
    conv = np.array([[100, 120, 130], [10, 12, 9]])
    r = chi_square_test(conv, np.full((2, 3), 1000))
    for i in range(2):
        ref = sps.chi2_contingency(np.array([conv[i], 1000 - conv[i]]).T, correction=False)
        assert r.statistic[i] == pytest.approx(ref.statistic, abs=TOL)  # type: ignore[index]


def test_two_by_two_chi_square_equals_pooled_z_squared() -> None:
    z = z_test_proportions(120, 1000, 100, 1000)
    chi = chi_square_test([120, 100], [1000, 1000])
    assert chi.statistic == pytest.approx(z.statistic**2, abs=1e-9)
    assert chi.p_value == pytest.approx(z.p_value, abs=1e-9)


@pytest.mark.parametrize(
    ("obs", "weights"),
    [([5000, 5100], [0.5, 0.5]), ([3300, 3350, 3500], [1, 1, 1]), ([900, 2100], [0.3, 0.7])],
)
def test_goodness_of_fit_and_srm_match_scipy_chisquare(
    obs: list[int], weights: list[float]
) -> None:
    w = np.asarray(weights, float)
    ref = sps.chisquare(obs, f_exp=np.sum(obs) * w / w.sum())
    r = goodness_of_fit(obs, weights)
    assert r.statistic == pytest.approx(ref.statistic, abs=TOL)
    assert r.p_value == pytest.approx(ref.pvalue, abs=TOL)
    srm = srm_check(obs, weights)
    assert srm.p_value == pytest.approx(ref.pvalue, abs=TOL)
    assert srm.flagged == (ref.pvalue < 0.001)
