"""Experiment planning: sample size, minimum detectable effect, duration.

Conventions (the ones the analysis uses, so plan and test agree):

* two-sample comparison of each treatment with the control, equal allocation;
* normal approximation; for conversion rates the *unpooled* variance under
  the alternative, ``σ² = p₁(1−p₁) + p₂(1−p₂)`` — the textbook closed form
  ``n = (z₁₋α/₂ + z₁₋β)² · σ² / δ²`` (Fleiss/Chow), identical to statsmodels'
  ``NormalIndPower`` with effect size ``δ / sqrt(σ²/2)``;
* the power function counts both rejection tails, and the sample size solves
  it exactly (the far tail changes n by far less than one user);
* with ``k`` variations (control included) there are ``k − 1`` comparisons
  with the control, each planned at the Bonferroni level ``α / (k − 1)`` so
  the family-wise error rate stays ≤ α.

The popular claim that ~150 users per variation detect +5 points on a 20%
baseline is wrong: at 80% power and two-sided α = 0.05, 20% → 25% needs
1,091 users per variation (``sample_size_binomial(0.20, 0.05).per_variation``).

Post-hoc ("observed") power is deliberately not offered: it is a function of
the p-value and adds no information.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import optimize
from scipy import stats as sps

from tailorkit.measure.stats._types import check_alpha

Sides = Literal["two-sided", "one-sided"]


@dataclass(frozen=True)
class SampleSizePlan:
    """Users needed per variation (rounded up) to detect ``effect`` with ``power``."""

    per_variation: int
    total: int
    exact: float
    effect: float
    baseline: float
    alpha: float
    alpha_per_comparison: float
    power: float
    n_variations: int
    sides: Sides


@dataclass(frozen=True)
class MdePlan:
    """Smallest effect detectable with ``power`` at ``per_variation`` users."""

    absolute: float
    relative: float
    baseline: float
    per_variation: float
    alpha_per_comparison: float
    power: float


def comparison_alpha(alpha: float, n_variations: int) -> float:
    """Bonferroni level per treatment-vs-control comparison.

    >>> comparison_alpha(0.05, 3)
    0.025
    """
    check_alpha(alpha)
    if n_variations < 2:
        raise ValueError("an experiment needs at least 2 variations (control + treatment)")
    return alpha / (n_variations - 1)


def power_from_se(effect: float, se: float, alpha: float, sides: Sides = "two-sided") -> float:
    """Power of a z test for a true ``effect`` whose estimate has standard error ``se``.

    >>> round(power_from_se(2.8015852, 1.0, 0.05), 4)
    0.8
    """
    shift = abs(effect) / se
    if sides == "one-sided":
        return float(sps.norm.sf(sps.norm.isf(alpha) - shift))
    crit = sps.norm.isf(alpha / 2.0)
    return float(sps.norm.sf(crit - shift) + sps.norm.cdf(-crit - shift))


def _binomial_var(baseline: float, effect: float) -> float:
    """``p₁(1−p₁) + p₂(1−p₂)``: the per-user variance of the difference."""
    treated = baseline + effect
    if not (0.0 < baseline < 1.0 and 0.0 < treated < 1.0):
        raise ValueError("baseline and baseline + effect must be proportions in (0, 1)")
    return baseline * (1.0 - baseline) + treated * (1.0 - treated)


def _absolute(baseline: float, mde: float, relative: bool) -> float:
    effect = mde * baseline if relative else mde
    if effect == 0:
        raise ValueError("the minimum detectable effect must be non-zero")
    return effect


def _solve_n(effect: float, var_diff: float, alpha: float, power: float, sides: Sides) -> float:
    """Smallest (fractional) n per variation with the target power."""
    z_alpha = sps.norm.isf(alpha / 2.0 if sides == "two-sided" else alpha)
    closed_form = var_diff * (z_alpha + sps.norm.ppf(power)) ** 2 / effect**2
    gap = lambda n: power_from_se(effect, math.sqrt(var_diff / n), alpha, sides) - power  # noqa: E731
    return float(
        optimize.brentq(gap, closed_form * 0.5, closed_form * 1.01, xtol=1e-10, rtol=1e-14)
    )


def _plan(
    exact: float, effect: float, baseline: float, alpha: float, power: float, k: int, sides: Sides
) -> SampleSizePlan:
    per = math.ceil(exact - 1e-9)  # guard against 1091.0000000001 → 1092
    return SampleSizePlan(
        per_variation=per,
        total=per * k,
        exact=exact,
        effect=effect,
        baseline=baseline,
        alpha=alpha,
        alpha_per_comparison=comparison_alpha(alpha, k),
        power=power,
        n_variations=k,
        sides=sides,
    )


def sample_size_binomial(
    baseline: float,
    mde: float,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    n_variations: int = 2,
    sides: Sides = "two-sided",
) -> SampleSizePlan:
    """Users per variation to detect a change in a conversion rate.

    ``mde`` is absolute (0.05 = +5 points) unless ``relative=True`` (0.25 = +25%).

    >>> sample_size_binomial(0.20, 0.05).per_variation
    1091
    >>> sample_size_binomial(0.20, 0.25, relative=True).per_variation
    1091
    """
    effect = _absolute(baseline, mde, relative)
    alpha_c = comparison_alpha(alpha, n_variations)
    exact = _solve_n(effect, _binomial_var(baseline, effect), alpha_c, power, sides)
    return _plan(exact, effect, baseline, alpha, power, n_variations, sides)


def sample_size_mean(
    baseline: float,
    std: float,
    mde: float,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    n_variations: int = 2,
    sides: Sides = "two-sided",
) -> SampleSizePlan:
    """Users per variation to detect a change in a mean (same ``std`` in all arms).

    >>> sample_size_mean(baseline=50.0, std=20.0, mde=0.05, relative=True).per_variation
    1005
    """
    effect = _absolute(baseline, mde, relative)
    alpha_c = comparison_alpha(alpha, n_variations)
    exact = _solve_n(effect, 2.0 * std * std, alpha_c, power, sides)
    return _plan(exact, effect, baseline, alpha, power, n_variations, sides)


def power_binomial(
    baseline: float,
    mde: float,
    per_variation: float,
    relative: bool = False,
    alpha: float = 0.05,
    n_variations: int = 2,
    sides: Sides = "two-sided",
) -> float:
    """Planned (pre-experiment) power for a conversion-rate change.

    >>> round(power_binomial(0.20, 0.05, 150), 3)  # the "150 users" rule of thumb
    0.18
    """
    effect = _absolute(baseline, mde, relative)
    se = math.sqrt(_binomial_var(baseline, effect) / per_variation)
    return power_from_se(effect, se, comparison_alpha(alpha, n_variations), sides)


def power_mean(
    baseline: float,
    std: float,
    mde: float,
    per_variation: float,
    relative: bool = False,
    alpha: float = 0.05,
    n_variations: int = 2,
    sides: Sides = "two-sided",
) -> float:
    """Planned power for a change in a mean.

    >>> round(power_mean(50.0, 20.0, 2.5, 1005), 3)
    0.8
    """
    effect = _absolute(baseline, mde, relative)
    se = math.sqrt(2.0 * std * std / per_variation)
    return power_from_se(effect, se, comparison_alpha(alpha, n_variations), sides)


def mde_binomial(
    baseline: float,
    per_variation: float,
    alpha: float = 0.05,
    power: float = 0.8,
    n_variations: int = 2,
    sides: Sides = "two-sided",
) -> MdePlan:
    """Smallest upward change of a conversion rate detectable with ``per_variation`` users.

    >>> round(mde_binomial(0.20, 1091).absolute, 4)
    0.05
    """
    alpha_c = comparison_alpha(alpha, n_variations)

    def gap(effect: float) -> float:
        se = math.sqrt(_binomial_var(baseline, effect) / per_variation)
        return power_from_se(effect, se, alpha_c, sides) - power

    effect = float(optimize.brentq(gap, 1e-12, (1.0 - baseline) * (1.0 - 1e-9), xtol=1e-12))
    return MdePlan(effect, effect / baseline, baseline, per_variation, alpha_c, power)


def mde_mean(
    baseline: float,
    std: float,
    per_variation: float,
    alpha: float = 0.05,
    power: float = 0.8,
    n_variations: int = 2,
    sides: Sides = "two-sided",
) -> MdePlan:
    """Smallest change of a mean detectable with ``per_variation`` users.

    >>> round(mde_mean(50.0, 20.0, 1005).relative, 4)
    0.05
    """
    alpha_c = comparison_alpha(alpha, n_variations)
    se = math.sqrt(2.0 * std * std / per_variation)
    gap = lambda effect: power_from_se(effect, se, alpha_c, sides) - power  # noqa: E731
    effect = float(optimize.brentq(gap, 1e-15 * se, 20.0 * se, xtol=1e-14 * se))
    return MdePlan(effect, effect / baseline, baseline, per_variation, alpha_c, power)


@dataclass(frozen=True)
class DurationEstimate:
    """How long the experiment must run at the observed traffic."""

    days: int
    recommended_days: int
    total_users: int
    daily_users_in_experiment: float


def expected_duration(
    per_variation: int, n_variations: int, daily_users: float, traffic_share: float = 1.0
) -> DurationEstimate:
    """Days until every variation reaches ``per_variation`` users.

    ``daily_users`` is the observed daily number of *new* users in the targeted
    segment (returning users are not new samples); ``traffic_share`` the part
    of them included in the experiment. ``recommended_days`` rounds up to
    whole weeks (at least one) so every weekday is represented equally.

    >>> d = expected_duration(1091, 2, daily_users=400)
    >>> d.days, d.recommended_days
    (6, 7)
    """
    if daily_users <= 0 or not 0.0 < traffic_share <= 1.0:
        raise ValueError("daily_users must be > 0 and traffic_share in (0, 1]")
    total = per_variation * n_variations
    per_day = daily_users * traffic_share
    days = math.ceil(total / per_day)
    return DurationEstimate(days, 7 * max(1, math.ceil(days / 7)), total, per_day)
