"""Always-valid (sequential) inference: asymptotic confidence sequences.

A fixed-horizon 95% interval is valid at *one* pre-planned look. Looking every
day and stopping at the first significant result inflates the false-positive
rate far beyond 5%. A confidence sequence is a sequence of intervals that
contains the true effect at *all* sample sizes simultaneously with probability
≥ 1 − α, so results may be watched continuously.

We use the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha,
Kennedy & Ramdas ("Time-uniform central limit theory and asymptotic confidence
sequences", 2023; a normal-mixture boundary in the style of Howard et al. 2021
and of the mixture SPRT), as GrowthBook and Eppo do::

    halfwidth(n) = σ · sqrt( 2(nρ² + 1) / (n²ρ²) · ln( sqrt(nρ² + 1) / α ) )

where ``n`` is the total number of users in the comparison and ``σ² = n·se²``
is the per-user variance of the estimator. The **tuning parameter** ``N*``
(``tuning``, default 5,000 users in the comparison) picks the mixing variance
``ρ²`` so that the sequence is tightest around ``n = N*``:
``ρ² = (−2 ln α + ln(−2 ln α + 1)) / N*``. Set it near the sample size at which
you expect to make the decision; any value keeps the guarantee, a badly chosen
one only costs width (power).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import optimize

from tailorkit.measure.stats._types import Alternative, Real, as_array, check_alpha, unwrap
from tailorkit.measure.stats.frequentist import Interval, LiftResult, relative_lift
from tailorkit.measure.stats.metrics import Estimate

DEFAULT_TUNING = 5000.0


def mixing_rho(alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """Mixing parameter ``ρ`` that makes the sequence tightest at ``n = tuning``.

    >>> round(mixing_rho(0.05, 5000.0), 6)
    0.03984
    """
    check_alpha(alpha)
    if tuning <= 0:
        raise ValueError("tuning must be positive")
    log_a = np.log(alpha)
    return float(np.sqrt((-2.0 * log_a + np.log(-2.0 * log_a + 1.0)) / tuning))


def halfwidth(
    se: npt.ArrayLike, n: npt.ArrayLike, alpha: float = 0.05, tuning: float = DEFAULT_TUNING
) -> Real:
    """Half-width of the two-sided (1 − α) confidence sequence at sample size ``n``.

    ``se`` is the standard error of the estimate at ``n`` (total users).

    >>> round(halfwidth(1.0, 5000.0), 4)  # ≈ 3.04 standard errors at n = N*
    3.0352
    """
    rho2 = mixing_rho(alpha, tuning) ** 2
    nn = as_array(n)
    sigma = as_array(se) * np.sqrt(nn)
    inner = 2.0 * (nn * rho2 + 1.0) / (nn * nn * rho2) * np.log(np.sqrt(nn * rho2 + 1.0) / alpha)
    return unwrap(sigma * np.sqrt(inner))


def _two_sided_alpha(alpha: float, alternative: Alternative) -> float:
    """A one-sided sequence at α is one side of the two-sided sequence at 2α."""
    return alpha if alternative == "two-sided" else 2.0 * alpha


def interval(
    estimate: npt.ArrayLike,
    se: npt.ArrayLike,
    n: npt.ArrayLike,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    tuning: float = DEFAULT_TUNING,
) -> Interval:
    """Always-valid interval for an effect estimate (one-sided: half-open).

    >>> ci = interval(0.05, 0.01, 4000)
    >>> round(ci.lower, 4), round(ci.upper, 4)
    (0.0196, 0.0804)
    """
    est = as_array(estimate)
    h = as_array(halfwidth(se, n, _two_sided_alpha(alpha, alternative), tuning))
    inf = np.full(np.broadcast(est, h).shape, np.inf)
    lower = -inf if alternative == "less" else est - h
    upper = inf if alternative == "greater" else est + h
    return Interval(unwrap(lower), unwrap(upper))


def p_value(
    estimate: float,
    se: float,
    n: float,
    alternative: Alternative = "two-sided",
    tuning: float = DEFAULT_TUNING,
) -> float:
    """Always-valid p-value: the smallest α whose sequence excludes zero.

    Take the running minimum over looks (:func:`numpy.minimum.accumulate`) for
    a p-value that never goes up as data arrive.

    >>> round(p_value(0.05, 0.015, 4000), 4)
    0.0215
    """
    sided = estimate if alternative != "less" else -estimate
    if alternative != "two-sided" and sided <= 0:
        return 1.0
    # One-sided at α is one side of the two-sided sequence at 2α: halve.
    factor = 1.0 if alternative == "two-sided" else 0.5

    def gap(log_alpha: float) -> float:  # > 0 once the sequence excludes zero
        return abs(estimate) - float(as_array(halfwidth(se, n, float(np.exp(log_alpha)), tuning)))

    hi = np.log(1.0 - 1e-12)
    if gap(hi) <= 0:
        return 1.0
    lo = -700.0
    if gap(lo) > 0:
        return 0.0
    return min(1.0, factor * float(np.exp(optimize.brentq(gap, lo, hi, xtol=1e-12))))


def sequential_lift(
    treatment: Estimate,
    control: Estimate,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    tuning: float = DEFAULT_TUNING,
) -> LiftResult:
    """Lift with always-valid intervals and p-value (scalar inputs).

    >>> r = sequential_lift(Estimate(10.5, 0.01, 3000), Estimate(10.0, 0.01, 3000))
    >>> round(r.absolute_ci.lower, 3), r.p_value < 0.05
    (0.071, True)
    """
    diff = float(as_array(treatment.mean) - as_array(control.mean))
    se = float(np.sqrt(as_array(treatment.variance) + as_array(control.variance)))
    n = float(as_array(treatment.n) + as_array(control.n))
    rel, rel_se = relative_lift(treatment, control)
    return LiftResult(
        absolute=diff,
        absolute_se=se,
        absolute_ci=interval(diff, se, n, alpha, alternative, tuning),
        relative=rel,
        relative_se=rel_se,
        relative_ci=interval(rel, rel_se, n, alpha, alternative, tuning),
        statistic=diff / se,
        p_value=p_value(diff, se, n, alternative, tuning),
        df=float("inf"),
        alpha=alpha,
        alternative=alternative,
    )
