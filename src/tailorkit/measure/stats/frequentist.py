"""Frequentist tests and intervals: z for proportions, Welch t, chi-square, lift.

Conventions (see ``docs/statistics.md``):

* comparisons are always *treatment minus control*; ``alternative="greater"``
  means H1: the treatment is higher;
* the p-value belongs to the absolute difference; the relative lift's interval
  comes from the delta method on ``mean_t / mean_c − 1``;
* one-sided intervals are half-open (``±inf`` on the other side).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from tailorkit.measure.stats._types import Alternative, Real, as_array, check_alpha, unwrap
from tailorkit.measure.stats.metrics import Estimate


@dataclass(frozen=True)
class Interval:
    """A confidence (or credible) interval ``[lower, upper]``.

    >>> Interval(-1.0, 2.0).contains(0.0)
    True
    """

    lower: Real
    upper: Real

    def contains(self, value: npt.ArrayLike) -> bool | npt.NDArray[np.bool_]:
        """Whether ``value`` lies inside (elementwise for arrays)."""
        v = as_array(value)
        inside = (as_array(self.lower) <= v) & (v <= as_array(self.upper))
        return bool(inside) if inside.ndim == 0 else inside


@dataclass(frozen=True)
class TestResult:
    """A test statistic, its p-value and degrees of freedom (``inf`` for z tests).

    >>> TestResult(statistic=1.96, p_value=0.05, df=float("inf")).df
    inf
    """

    __test__ = False  # not a pytest test class despite the name

    statistic: Real
    p_value: Real
    df: Real


def _dist(df: npt.ArrayLike | None) -> sps.rv_continuous | sps.rv_frozen:
    """Standard normal for z statistics, Student t when degrees of freedom are given."""
    return sps.norm if df is None else sps.t(df)


def p_value(
    statistic: npt.ArrayLike,
    alternative: Alternative = "two-sided",
    df: npt.ArrayLike | None = None,
) -> Real:
    """Tail probability of a z (``df=None``) or t statistic.

    >>> round(p_value(1.959963984540054), 6)
    0.05
    """
    stat, dist = as_array(statistic), _dist(df)
    if alternative == "two-sided":
        return unwrap(2.0 * dist.sf(np.abs(stat)))
    if alternative == "greater":
        return unwrap(dist.sf(stat))
    if alternative == "less":
        return unwrap(dist.cdf(stat))
    raise ValueError(f"unknown alternative {alternative!r}")


def confidence_interval(
    estimate: npt.ArrayLike,
    se: npt.ArrayLike,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    df: npt.ArrayLike | None = None,
) -> Interval:
    """Wald interval ``estimate ± q·se``; one-sided intervals are half-open.

    >>> ci = confidence_interval(1.0, 0.5)
    >>> round(ci.lower, 4), round(ci.upper, 4)
    (0.02, 1.98)
    """
    check_alpha(alpha)
    est, s, dist = as_array(estimate), as_array(se), _dist(df)
    if alternative == "two-sided":
        q = dist.ppf(1.0 - alpha / 2.0)
        return Interval(unwrap(est - q * s), unwrap(est + q * s))
    q = dist.ppf(1.0 - alpha)
    inf = np.full(np.broadcast(est, s).shape, np.inf)
    if alternative == "greater":
        return Interval(unwrap(est - q * s), unwrap(inf))
    if alternative == "less":
        return Interval(unwrap(-inf), unwrap(est + q * s))
    raise ValueError(f"unknown alternative {alternative!r}")


def z_test_proportions(
    conversions_t: npt.ArrayLike,
    n_t: npt.ArrayLike,
    conversions_c: npt.ArrayLike,
    n_c: npt.ArrayLike,
    alternative: Alternative = "two-sided",
    pooled: bool = True,
) -> TestResult:
    """Two-sample z test for proportions (treatment vs control).

    ``pooled=True`` uses the pooled proportion under H0 (as statsmodels'
    ``proportions_ztest``); ``pooled=False`` the unpooled Wald variance that
    matches the reported confidence interval.

    >>> r = z_test_proportions(120, 1000, 100, 1000)
    >>> round(r.statistic, 4), round(r.p_value, 4)
    (1.4293, 0.1529)
    """
    xt, nt, xc, nc = (as_array(v) for v in (conversions_t, n_t, conversions_c, n_c))
    pt, pc = xt / nt, xc / nc
    if pooled:
        pp = (xt + xc) / (nt + nc)
        var = pp * (1.0 - pp) * (1.0 / nt + 1.0 / nc)
    else:
        var = pt * (1.0 - pt) / nt + pc * (1.0 - pc) / nc
    stat = (pt - pc) / np.sqrt(var)
    return TestResult(unwrap(stat), p_value(stat, alternative), float("inf"))


def welch_df(treatment: Estimate, control: Estimate) -> Real:
    """Welch–Satterthwaite degrees of freedom from the variances of two means.

    >>> round(welch_df(Estimate(0.0, 0.01, 100), Estimate(0.0, 0.01, 100)), 6)
    198.0
    """
    vt, vc = as_array(treatment.variance), as_array(control.variance)
    nt, nc = as_array(treatment.n), as_array(control.n)
    return unwrap((vt + vc) ** 2 / (vt * vt / (nt - 1.0) + vc * vc / (nc - 1.0)))


def welch_t_test(
    treatment: Estimate, control: Estimate, alternative: Alternative = "two-sided"
) -> TestResult:
    """Welch's unequal-variance t test on two means.

    >>> r = welch_t_test(Estimate(10.5, 0.04, 500), Estimate(10.0, 0.05, 400))
    >>> round(r.statistic, 4), round(r.p_value, 4)
    (1.6667, 0.0959)
    """
    diff = as_array(treatment.mean) - as_array(control.mean)
    se = np.sqrt(as_array(treatment.variance) + as_array(control.variance))
    df = welch_df(treatment, control)
    stat = diff / se
    return TestResult(unwrap(stat), p_value(stat, alternative, df), df)


def chi_square_test(conversions: npt.ArrayLike, totals: npt.ArrayLike) -> TestResult:
    """Pearson chi-square test that all k conversion rates are equal (A/B/n).

    Works on the last axis, so ``conversions`` may be ``(sims, k)``. No
    continuity correction (as ``scipy.stats.chi2_contingency(correction=False)``).

    >>> r = chi_square_test([100, 120, 130], [1000, 1000, 1000])
    >>> round(r.statistic, 4), r.df
    (4.5283, 2.0)
    """
    x, n = as_array(conversions), as_array(totals)
    observed = np.stack([x, n - x], axis=-1)  # k × 2 contingency table
    expected = (
        observed.sum(axis=-1, keepdims=True)
        * observed.sum(axis=-2, keepdims=True)
        / observed.sum(axis=(-2, -1), keepdims=True)
    )
    stat = ((observed - expected) ** 2 / expected).sum(axis=(-2, -1))
    df = float(x.shape[-1] - 1)
    return TestResult(unwrap(stat), unwrap(sps.chi2.sf(stat, df)), df)


def goodness_of_fit(observed: npt.ArrayLike, probabilities: npt.ArrayLike) -> TestResult:
    """Pearson chi-square goodness of fit of counts to expected shares.

    >>> r = goodness_of_fit([5000, 5100], [0.5, 0.5])
    >>> round(r.statistic, 4), round(r.p_value, 4)
    (0.9901, 0.3197)
    """
    obs, prob = as_array(observed), as_array(probabilities)
    expected = obs.sum(axis=-1, keepdims=True) * prob / prob.sum()
    stat = ((obs - expected) ** 2 / expected).sum(axis=-1)
    df = float(obs.shape[-1] - 1)
    return TestResult(unwrap(stat), unwrap(sps.chi2.sf(stat, df)), df)


@dataclass(frozen=True)
class LiftResult:
    """Absolute and relative lift of a treatment over the control.

    ``p_value`` tests the absolute difference; ``relative_ci`` uses the delta
    method. ``df`` is ``inf`` for z-based (normal) inference.
    """

    absolute: Real
    absolute_se: Real
    absolute_ci: Interval
    relative: Real
    relative_se: Real
    relative_ci: Interval
    statistic: Real
    p_value: Real
    df: Real
    alpha: float
    alternative: Alternative

    @property
    def significant(self) -> bool | npt.NDArray[np.bool_]:
        """``p_value < alpha`` (before any multiple-comparison correction)."""
        sig = as_array(self.p_value) < self.alpha
        return bool(sig) if sig.ndim == 0 else sig


def relative_lift(treatment: Estimate, control: Estimate) -> tuple[Real, Real]:
    """Relative lift ``mean_t / mean_c − 1`` and its delta-method standard error.

    ``Var ≈ v_t / m_c² + m_t² · v_c / m_c⁴`` (independent groups).

    >>> rel, se = relative_lift(Estimate(0.25, 1e-4, 1000), Estimate(0.20, 1e-4, 1000))
    >>> round(rel, 4), round(se, 5)
    (0.25, 0.08004)
    """
    mt, mc = as_array(treatment.mean), as_array(control.mean)
    vt, vc = as_array(treatment.variance), as_array(control.variance)
    var = vt / mc**2 + mt**2 * vc / mc**4
    return unwrap(mt / mc - 1.0), unwrap(np.sqrt(var))


def lift(
    treatment: Estimate,
    control: Estimate,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    use_t: bool = False,
) -> LiftResult:
    """Absolute and relative lift with confidence intervals and a p-value.

    ``use_t=True`` gives Welch's t test and t-based intervals (mean metrics);
    otherwise normal (z) inference (proportions, ratio and CUPED estimates).

    >>> r = lift(Estimate(0.25, 0.25 * 0.75 / 1000, 1000), Estimate(0.20, 0.2 * 0.8 / 1000, 1000))
    >>> round(r.absolute, 3), round(r.p_value, 4), round(r.relative_ci.lower, 3)
    (0.05, 0.0073, 0.045)
    """
    check_alpha(alpha)
    diff = as_array(treatment.mean) - as_array(control.mean)
    se = np.sqrt(as_array(treatment.variance) + as_array(control.variance))
    df = welch_df(treatment, control) if use_t else None
    stat = diff / se
    rel, rel_se = relative_lift(treatment, control)
    return LiftResult(
        absolute=unwrap(diff),
        absolute_se=unwrap(se),
        absolute_ci=confidence_interval(diff, se, alpha, alternative, df),
        relative=rel,
        relative_se=rel_se,
        relative_ci=confidence_interval(rel, rel_se, alpha, alternative, df),
        statistic=unwrap(stat),
        p_value=p_value(stat, alternative, df),
        df=float("inf") if df is None else df,
        alpha=alpha,
        alternative=alternative,
    )
