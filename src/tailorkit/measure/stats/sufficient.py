"""Sufficient statistics: what the warehouse computes per variation (× segment).

The SQL side aggregates ``COUNT(*)``, ``SUM(x)``, ``SUM(x*x)`` per variation and,
for CUPED and ratio metrics, ``SUM(y)``, ``SUM(y*y)``, ``SUM(x*y)`` where ``x`` is
the metric (or the ratio's numerator) and ``y`` the covariate (or denominator).
Nothing in this package ever needs the rows themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tailorkit.measure.stats._types import Real, as_array, unwrap


@dataclass(frozen=True)
class SampleStats:
    """``n``, ``Σx`` and ``Σx²`` of one metric in one variation.

    >>> s = SampleStats.from_values([1.0, 2.0, 3.0])
    >>> s.mean, s.variance
    (2.0, 1.0)
    """

    n: Real
    total: Real
    total_sq: Real

    @classmethod
    def from_values(cls, values: npt.ArrayLike) -> SampleStats:
        """Aggregate raw values (tests, small data); SQL does this in production."""
        x = as_array(values)
        return cls(n=float(x.size), total=float(x.sum()), total_sq=float((x * x).sum()))

    @classmethod
    def from_proportion(cls, n: Real, conversions: Real) -> SampleStats:
        """Binomial metric: for 0/1 values ``Σx² = Σx``.

        >>> SampleStats.from_proportion(200, 50).mean
        0.25
        """
        return cls(n=n, total=conversions, total_sq=conversions)

    @property
    def mean(self) -> Real:
        """Sample mean ``Σx / n``."""
        return unwrap(as_array(self.total) / as_array(self.n))

    @property
    def variance(self) -> Real:
        """Unbiased sample variance (``ddof=1``)."""
        n, s, ss = as_array(self.n), as_array(self.total), as_array(self.total_sq)
        # max(.., 0): the textbook formula can go a hair negative in floating point.
        return unwrap(np.maximum(ss - s * s / n, 0.0) / (n - 1.0))

    def __add__(self, other: SampleStats) -> SampleStats:
        """Pool two groups (e.g. two days or two segments) of the same variation."""
        return SampleStats(
            n=unwrap(as_array(self.n) + as_array(other.n)),
            total=unwrap(as_array(self.total) + as_array(other.total)),
            total_sq=unwrap(as_array(self.total_sq) + as_array(other.total_sq)),
        )


@dataclass(frozen=True)
class PairedStats:
    """Joint sufficient statistics of a metric ``x`` and a second quantity ``y``.

    ``y`` is the pre-exposure covariate for CUPED or the denominator of a ratio
    metric (e.g. ``x`` = revenue, ``y`` = sessions for revenue per session).

    >>> p = PairedStats.from_values([1.0, 2.0, 4.0], [1.0, 1.0, 2.0])
    >>> p.n, p.y.mean, round(p.covariance, 6)
    (3.0, 1.3333333333333333, 0.833333)
    """

    n: Real
    sum_x: Real
    sum_x2: Real
    sum_y: Real
    sum_y2: Real
    sum_xy: Real

    @classmethod
    def from_values(cls, x: npt.ArrayLike, y: npt.ArrayLike) -> PairedStats:
        """Aggregate raw paired values (tests, small data)."""
        xa, ya = as_array(x), as_array(y)
        if xa.shape != ya.shape:
            raise ValueError("x and y must have the same shape")
        return cls(
            n=float(xa.size),
            sum_x=float(xa.sum()),
            sum_x2=float((xa * xa).sum()),
            sum_y=float(ya.sum()),
            sum_y2=float((ya * ya).sum()),
            sum_xy=float((xa * ya).sum()),
        )

    @property
    def x(self) -> SampleStats:
        """The metric's own sufficient statistics."""
        return SampleStats(self.n, self.sum_x, self.sum_x2)

    @property
    def y(self) -> SampleStats:
        """The covariate's / denominator's sufficient statistics."""
        return SampleStats(self.n, self.sum_y, self.sum_y2)

    @property
    def covariance(self) -> Real:
        """Unbiased sample covariance of ``x`` and ``y`` (``ddof=1``)."""
        n = as_array(self.n)
        cross = as_array(self.sum_xy) - as_array(self.sum_x) * as_array(self.sum_y) / n
        return unwrap(cross / (n - 1.0))

    @property
    def correlation(self) -> Real:
        """Pearson correlation of ``x`` and ``y``."""
        sd = np.sqrt(as_array(self.x.variance) * as_array(self.y.variance))
        return unwrap(as_array(self.covariance) / sd)


def winsorize(values: npt.ArrayLike, upper: float, lower: float | None = None) -> Real:
    """Cap values at ``upper`` (and floor at ``lower``) before aggregating.

    Revenue has whales: one order of 50,000 can swamp an experiment. Capping
    trades a little bias for much less variance. In SQL this is
    ``LEAST(x, cap)``; the cap is usually a high percentile of the pooled data
    (see :func:`percentile_cap`), computed over all variations so the cap does
    not itself depend on the treatment.

    >>> winsorize([1.0, 5.0, 100.0], upper=10.0).tolist()
    [1.0, 5.0, 10.0]
    """
    return unwrap(np.clip(as_array(values), lower, upper))


def percentile_cap(values: npt.ArrayLike, percentile: float = 99.0) -> float:
    """The cap value for :func:`winsorize`: a percentile of the pooled data.

    >>> percentile_cap(list(range(101)), 99.0)
    99.0
    """
    if not 0.0 < percentile <= 100.0:
        raise ValueError("percentile must be in (0, 100]")
    return float(np.percentile(as_array(values), percentile))
