"""Metric types: turn sufficient statistics into an estimate and its variance.

Every metric type ends up as an :class:`Estimate` per variation (a mean and the
variance *of that mean*); the tests, intervals and Bayesian models downstream
only ever see estimates, so they work unchanged for every metric type and for
CUPED-adjusted means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from tailorkit.measure.stats._types import Real, as_array, unwrap
from tailorkit.measure.stats.sufficient import PairedStats, SampleStats

MetricType = Literal["binomial", "mean", "ratio"]


@dataclass(frozen=True)
class Estimate:
    """A per-variation estimate: ``mean``, ``variance`` of the mean, sample size ``n``.

    ``n`` is kept because Welch's test needs the per-group degrees of freedom.

    >>> Estimate(mean=2.0, variance=0.25, n=100).se
    0.5
    """

    mean: Real
    variance: Real
    n: Real

    @property
    def se(self) -> Real:
        """Standard error of the mean."""
        return unwrap(np.sqrt(as_array(self.variance)))


def binomial_estimate(stats: SampleStats) -> Estimate:
    """Conversion rate with the binomial variance ``p(1-p)/n``.

    A user counts as converted if they did the action within the attribution
    window after exposure; SQL delivers ``n`` and the number converted.

    >>> e = binomial_estimate(SampleStats.from_proportion(100, 20))
    >>> round(e.mean, 3), round(e.variance, 6)
    (0.2, 0.0016)
    """
    n = as_array(stats.n)
    p = as_array(stats.total) / n
    return Estimate(mean=unwrap(p), variance=unwrap(p * (1.0 - p) / n), n=stats.n)


def mean_estimate(stats: SampleStats) -> Estimate:
    """Mean per user with the unbiased sample variance ``s²/n``.

    >>> e = mean_estimate(SampleStats.from_values([1.0, 2.0, 3.0]))
    >>> e.mean, round(e.variance, 6)
    (2.0, 0.333333)
    """
    return Estimate(
        mean=stats.mean,
        variance=unwrap(as_array(stats.variance) / as_array(stats.n)),
        n=stats.n,
    )


def ratio_estimate(stats: PairedStats) -> Estimate:
    """Ratio metric ``Σx / Σy`` (e.g. revenue per session) via the delta method.

    The randomization unit is the user, but the ratio's denominator (sessions,
    impressions) varies per user, so sessions are not independent. The delta
    method linearizes ``R = x̄ / ȳ`` around the means:
    ``Var(R) ≈ (s_x² − 2R·s_xy + R²·s_y²) / (n·ȳ²)``.

    >>> e = ratio_estimate(PairedStats.from_values([1.0, 0.0, 3.0, 2.0], [2.0, 1.0, 3.0, 2.0]))
    >>> round(e.mean, 4), round(e.variance, 6)
    (0.75, 0.033854)
    """
    n = as_array(stats.n)
    mx, my = as_array(stats.x.mean), as_array(stats.y.mean)
    r = mx / my
    vx, vy, cxy = as_array(stats.x.variance), as_array(stats.y.variance), as_array(stats.covariance)
    var = (vx - 2.0 * r * cxy + r * r * vy) / (n * my * my)
    return Estimate(mean=unwrap(r), variance=unwrap(np.maximum(var, 0.0)), n=stats.n)


def estimate(stats: SampleStats | PairedStats, metric_type: MetricType) -> Estimate:
    """Dispatch on the metric type.

    >>> estimate(SampleStats.from_proportion(10, 5), "binomial").mean
    0.5
    """
    if metric_type == "ratio":
        if not isinstance(stats, PairedStats):
            raise TypeError("ratio metrics need PairedStats (numerator x, denominator y)")
        return ratio_estimate(stats)
    base = stats.x if isinstance(stats, PairedStats) else stats
    if metric_type == "binomial":
        return binomial_estimate(base)
    if metric_type == "mean":
        return mean_estimate(base)
    raise ValueError(f"unknown metric type {metric_type!r}")


def as_estimate(value: SampleStats | PairedStats | Estimate, metric_type: MetricType) -> Estimate:
    """Pass estimates through; turn sufficient statistics into one.

    >>> as_estimate(Estimate(1.0, 0.1, 10), "mean").mean
    1.0
    """
    return value if isinstance(value, Estimate) else estimate(value, metric_type)
