"""Seeded, vectorized simulations that validate the engine's error rates.

Used by the test-suite (CI-sized runs) and by ``benchmarks/stats_simulation.py``
(larger runs). Wherever the data-generating distribution allows, the
*sufficient statistics* are simulated directly instead of rows:

* conversions: ``Binomial(n, p)`` counts;
* normal metrics: the sample mean is ``N(μ, σ²/n)`` and, independently, the
  sum of squared deviations is ``σ²·χ²(n−1)``; for a metric with a
  pre-period covariate the centered cross-product matrix is
  ``Wishart(n−1, Σ)`` (independent of the mean vector ``N(μ, Σ/n)``);
* heavy-tailed revenue has no such shortcut, so rows are drawn in chunks and
  aggregated with numpy.

Every experiment in a batch is analysed by one vectorized call of the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from tailorkit.measure.stats._types import FloatArray, as_array
from tailorkit.measure.stats.frequentist import LiftResult, chi_square_test, goodness_of_fit, lift
from tailorkit.measure.stats.metrics import binomial_estimate, mean_estimate
from tailorkit.measure.stats.multiple import adjust_p_values
from tailorkit.measure.stats.planning import sample_size_binomial, sample_size_mean
from tailorkit.measure.stats.sequential import DEFAULT_TUNING, halfwidth
from tailorkit.measure.stats.sufficient import PairedStats, SampleStats
from tailorkit.measure.stats.variance_reduction import cuped_adjust

CHUNK_VALUES = 4_000_000  # rows drawn at once (~32 MB), bounds memory of raw draws

Sampler = Callable[[np.random.Generator, tuple[int, ...]], FloatArray]


# --- data generators -----------------------------------------------------------


def binomial_stats(rng: np.random.Generator, sims: int, n: int, p: float) -> SampleStats:
    """``sims`` draws of the sufficient statistics of ``n`` Bernoulli(p) users.

    >>> s = binomial_stats(np.random.default_rng(0), 3, 100, 0.5)
    >>> s.total.shape
    (3,)
    """
    return SampleStats.from_proportion(float(n), rng.binomial(n, p, sims).astype(float))


def normal_stats(
    rng: np.random.Generator, sims: int, n: int, mean: float, sd: float
) -> SampleStats:
    """Exact sufficient statistics of ``n`` normal users, without drawing rows.

    >>> s = normal_stats(np.random.default_rng(0), 2, 1000, 10.0, 2.0)
    >>> bool(abs(s.mean[0] - 10.0) < 0.5)
    True
    """
    m = rng.normal(mean, sd / np.sqrt(n), sims)
    ss = sd * sd * rng.chisquare(n - 1, sims)
    return SampleStats(float(n), n * m, ss + n * m * m)


def bivariate_normal_stats(
    rng: np.random.Generator,
    sims: int,
    n: int,
    means: tuple[float, float],
    sds: tuple[float, float],
    rho: float,
) -> PairedStats:
    """Sufficient statistics of ``n`` users with metric ``x`` and covariate ``y``.

    >>> p = bivariate_normal_stats(np.random.default_rng(0), 4, 5000, (1.0, 1.0), (1.0, 1.0), 0.8)
    >>> bool(np.all(np.abs(p.correlation - 0.8) < 0.05))
    True
    """
    cov = np.array([[sds[0] ** 2, rho * sds[0] * sds[1]], [rho * sds[0] * sds[1], sds[1] ** 2]])
    mu = rng.multivariate_normal(np.array(means), cov / n, sims)
    scatter = np.asarray(sps.wishart(df=n - 1, scale=cov).rvs(size=sims, random_state=rng))
    scatter = scatter.reshape(sims, 2, 2)
    return PairedStats(
        n=float(n),
        sum_x=n * mu[:, 0],
        sum_x2=scatter[:, 0, 0] + n * mu[:, 0] ** 2,
        sum_y=n * mu[:, 1],
        sum_y2=scatter[:, 1, 1] + n * mu[:, 1] ** 2,
        sum_xy=scatter[:, 0, 1] + n * mu[:, 0] * mu[:, 1],
    )


def revenue_sampler(buy_rate: float = 0.1, log_mean: float = 3.0, log_sd: float = 1.0) -> Sampler:
    """Heavy-tailed revenue per user: most buy nothing, buyers spend lognormal amounts.

    >>> draw = revenue_sampler()
    >>> draw(np.random.default_rng(0), (5,)).shape
    (5,)
    """

    def draw(rng: np.random.Generator, shape: tuple[int, ...]) -> FloatArray:
        return (rng.random(shape) < buy_rate) * rng.lognormal(log_mean, log_sd, shape)

    return draw


def revenue_mean(buy_rate: float = 0.1, log_mean: float = 3.0, log_sd: float = 1.0) -> float:
    """Population mean of :func:`revenue_sampler` (``buy_rate·exp(μ + σ²/2)``).

    >>> round(revenue_mean(), 4)
    3.3115
    """
    return float(buy_rate * np.exp(log_mean + log_sd**2 / 2.0))


def _chunks(sims: int, per_sim: int) -> Iterator[int]:
    """Split ``sims`` so each chunk draws at most ~CHUNK_VALUES values."""
    size = max(1, CHUNK_VALUES // max(per_sim, 1))
    for start in range(0, sims, size):
        yield min(size, sims - start)


def raw_stats(
    rng: np.random.Generator, sims: int, n: int, sampler: Sampler, scale: float = 1.0
) -> SampleStats:
    """Sufficient statistics of ``n`` rows from ``sampler`` (× ``scale``), per simulation.

    >>> s = raw_stats(np.random.default_rng(0), 3, 10, revenue_sampler())
    >>> s.n, s.total.shape
    (10.0, (3,))
    """
    sums, squares = [], []
    for k in _chunks(sims, n):
        x = sampler(rng, (k, n)) * scale
        sums.append(x.sum(axis=1))
        squares.append((x * x).sum(axis=1))
    return SampleStats(float(n), np.concatenate(sums), np.concatenate(squares))


# --- experiments ------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationResult:
    """A simulated rate with its Monte-Carlo standard error."""

    name: str
    value: float
    sims: int
    expected: float

    @property
    def se(self) -> float:
        """Monte-Carlo standard error of ``value`` (binomial, at the expected rate)."""
        p = min(max(self.expected, 1e-12), 1 - 1e-12)
        return float(np.sqrt(p * (1 - p) / self.sims))

    def upper_bound(self, confidence: float = 0.99) -> float:
        """One-sided Clopper–Pearson upper bound of the true rate.

        >>> round(SimulationResult("x", 0.02, 10_000, 0.05).upper_bound(), 4)
        0.0235
        """
        k = round(self.value * self.sims)
        return float(sps.beta.ppf(confidence, k + 1, self.sims - k)) if k < self.sims else 1.0


def _pair(
    metric: str, rng: np.random.Generator, sims: int, n: int, lift_rel: float
) -> tuple[SampleStats, SampleStats]:
    """Treatment and control statistics for a binomial or revenue metric."""
    if metric == "binomial":
        return binomial_stats(rng, sims, n, 0.1 * (1 + lift_rel)), binomial_stats(rng, sims, n, 0.1)
    draw = revenue_sampler()
    return raw_stats(rng, sims, n, draw, 1 + lift_rel), raw_stats(rng, sims, n, draw)


def _lift(metric: str, t: SampleStats, c: SampleStats, alpha: float = 0.05) -> LiftResult:
    """z test for conversions, Welch t for revenue — what ``analyze_metric`` does."""
    if metric == "binomial":
        return lift(binomial_estimate(t), binomial_estimate(c), alpha)
    return lift(mean_estimate(t), mean_estimate(c), alpha, use_t=True)


def aa_false_positive_rate(
    metric: str = "binomial", sims: int = 10_000, n: int = 2000, alpha: float = 0.05, seed: int = 1
) -> SimulationResult:
    """Share of A/A tests (no true difference) declared significant at ``alpha``.

    ``metric`` is ``"binomial"`` (10% conversion, z test) or ``"revenue"``
    (heavy-tailed, Welch t).

    >>> r = aa_false_positive_rate("binomial", sims=4000, seed=3)
    >>> bool(0.03 < r.value < 0.07)
    True
    """
    rng = np.random.default_rng(seed)
    t, c = _pair(metric, rng, sims, n, 0.0)
    p = as_array(_lift(metric, t, c, alpha).p_value)
    return SimulationResult(f"aa_fpr_{metric}", float(np.mean(p < alpha)), sims, alpha)


def interval_coverage(
    metric: str = "binomial",
    sims: int = 10_000,
    n: int = 2000,
    lift_rel: float = 0.1,
    seed: int = 2,
) -> tuple[SimulationResult, SimulationResult]:
    """Coverage of the 95% intervals of the absolute and the relative lift.

    >>> a, r = interval_coverage("binomial", sims=2000)
    >>> bool(0.93 < a.value < 0.97 and 0.93 < r.value < 0.97)
    True
    """
    rng = np.random.default_rng(seed)
    t, c = _pair(metric, rng, sims, n, lift_rel)
    base = 0.1 if metric == "binomial" else revenue_mean()
    res = _lift(metric, t, c)
    hit_abs = as_array(res.absolute_ci.contains(base * lift_rel))
    hit_rel = as_array(res.relative_ci.contains(lift_rel))
    return (
        SimulationResult(f"coverage_abs_{metric}", float(hit_abs.mean()), sims, 0.95),
        SimulationResult(f"coverage_rel_{metric}", float(hit_rel.mean()), sims, 0.95),
    )


def _cumulative_binomial(
    rng: np.random.Generator, sims: int, looks: int, per_arm: int
) -> tuple[SampleStats, SampleStats]:
    arms = [
        np.cumsum(rng.binomial(per_arm, 0.1, (sims, looks)), axis=1).astype(float) for _ in range(2)
    ]
    n = per_arm * np.arange(1, looks + 1, dtype=float)
    return SampleStats.from_proportion(n, arms[0]), SampleStats.from_proportion(n, arms[1])


def _cumulative_revenue(
    rng: np.random.Generator, sims: int, looks: int, per_arm: int
) -> tuple[SampleStats, SampleStats]:
    draw, out = revenue_sampler(), []
    n = per_arm * np.arange(1, looks + 1, dtype=float)
    for _ in range(2):
        sums, squares = [], []
        for k in _chunks(sims, looks * per_arm):
            x = draw(rng, (k, looks, per_arm))
            sums.append(np.cumsum(x.sum(axis=2), axis=1))
            squares.append(np.cumsum((x * x).sum(axis=2), axis=1))
        out.append(SampleStats(n, np.concatenate(sums), np.concatenate(squares)))
    return out[0], out[1]


def sequential_false_positive_rate(
    metric: str = "binomial",
    sims: int = 10_000,
    looks: int = 100,
    users_per_look: int = 100,
    alpha: float = 0.05,
    tuning: float = DEFAULT_TUNING,
    seed: int = 3,
) -> tuple[SimulationResult, SimulationResult]:
    """A/A tests peeked after every ``users_per_look`` users (split evenly).

    Returns the false-positive rate of stopping at the first look where the
    confidence sequence excludes 0, and — for contrast — of the same peeking
    with the fixed-horizon z test (which is *not* valid under peeking).

    >>> seq, naive = sequential_false_positive_rate("binomial", sims=1000, looks=30)
    >>> bool(seq.value < 0.05 < naive.value)
    True
    """
    rng = np.random.default_rng(seed)
    make = _cumulative_binomial if metric == "binomial" else _cumulative_revenue
    t, c = make(rng, sims, looks, users_per_look // 2)
    est = binomial_estimate if metric == "binomial" else mean_estimate
    et, ec = est(t), est(c)
    diff = as_array(et.mean) - as_array(ec.mean)
    se = np.sqrt(as_array(et.variance) + as_array(ec.variance))
    total = as_array(t.n) + as_array(c.n)
    seq_hit = np.abs(diff) > as_array(halfwidth(se, total, alpha, tuning))
    naive_hit = np.abs(diff) > sps.norm.isf(alpha / 2) * se
    return (
        SimulationResult(
            f"sequential_fpr_{metric}", float(seq_hit.any(axis=1).mean()), sims, alpha
        ),
        SimulationResult(
            f"naive_peeking_fpr_{metric}", float(naive_hit.any(axis=1).mean()), sims, alpha
        ),
    )


def cuped_variance_reduction(
    rho: float = 0.7, sims: int = 10_000, n: int = 1000, seed: int = 4
) -> tuple[SimulationResult, SimulationResult]:
    """Variance reduction of CUPED: empirical (across simulations) and reported (SE²).

    Both should match ``ρ²``. The treatment adds 0.1 to the metric.

    >>> emp, rep = cuped_variance_reduction(0.7, sims=2000)
    >>> bool(abs(emp.value - 0.49) < 0.04 and abs(rep.value - 0.49) < 0.01)
    True
    """
    rng = np.random.default_rng(seed)
    t = bivariate_normal_stats(rng, sims, n, (10.1, 10.0), (2.0, 2.0), rho)
    c = bivariate_normal_stats(rng, sims, n, (10.0, 10.0), (2.0, 2.0), rho)
    (et, ec), _ = cuped_adjust([t, c])
    plain = as_array(t.x.mean) - as_array(c.x.mean)
    adjusted = as_array(et.mean) - as_array(ec.mean)
    reported = (as_array(et.variance) + as_array(ec.variance)) / (
        as_array(mean_estimate(t.x).variance) + as_array(mean_estimate(c.x).variance)
    )
    return (
        SimulationResult(
            "cuped_reduction_empirical", float(1 - adjusted.var() / plain.var()), sims, rho**2
        ),
        SimulationResult("cuped_reduction_reported", float(1 - reported.mean()), sims, rho**2),
    )


def planned_power(metric: str = "binomial", sims: int = 10_000, seed: int = 5) -> SimulationResult:
    """Simulated power at the calculator's sample size (claimed: 80%).

    ``binomial``: 20% → 25% (1,091 per variation), z test. ``mean``: normal
    metric 50 ± 20, +5% (1,005 per variation), Welch t test.

    >>> r = planned_power("binomial", sims=2000)
    >>> bool(abs(r.value - 0.8) < 0.03)
    True
    """
    rng = np.random.default_rng(seed)
    if metric == "binomial":
        n = sample_size_binomial(0.20, 0.05).per_variation
        t, c = binomial_stats(rng, sims, n, 0.25), binomial_stats(rng, sims, n, 0.20)
        res = lift(binomial_estimate(t), binomial_estimate(c))
    else:
        n = sample_size_mean(50.0, 20.0, 0.05, relative=True).per_variation
        t, c = normal_stats(rng, sims, n, 52.5, 20.0), normal_stats(rng, sims, n, 50.0, 20.0)
        res = lift(mean_estimate(t), mean_estimate(c), use_t=True)
    return SimulationResult(
        f"power_{metric}", float(np.mean(as_array(res.p_value) < 0.05)), sims, 0.8
    )


def multiple_testing_error_rates(
    sims: int = 10_000,
    m: int = 20,
    m_null: int = 15,
    effect: float = 3.0,
    correlation: float = 0.0,
    seed: int = 6,
) -> dict[str, SimulationResult]:
    """FWER of none/Bonferroni/Holm and FDR of BH over families of ``m`` z tests.

    The first ``m_null`` hypotheses are true nulls; the others have mean
    ``effect``. ``correlation`` makes the z statistics equicorrelated (BH stays
    valid under this positive dependence).

    >>> r = multiple_testing_error_rates(sims=2000)
    >>> bool(r["holm_fwer"].value <= 0.05 and r["bh_fdr"].value <= 0.05 < r["none_fwer"].value)
    True
    """
    rng = np.random.default_rng(seed)
    common = rng.normal(size=(sims, 1))
    noise = np.sqrt(1 - correlation) * rng.normal(size=(sims, m)) + np.sqrt(correlation) * common
    z = noise + np.where(np.arange(m) < m_null, 0.0, effect)
    p = 2 * sps.norm.sf(np.abs(z))
    null = np.arange(m) < m_null
    out = {}
    for method in ("none", "bonferroni", "holm"):
        rejected = adjust_p_values(p, method) <= 0.05
        out[f"{method}_fwer"] = SimulationResult(
            f"{method}_fwer", float(rejected[:, null].any(axis=1).mean()), sims, 0.05
        )
    rejected = adjust_p_values(p, "bh") <= 0.05
    false_share = rejected[:, null].sum(axis=1) / np.maximum(rejected.sum(axis=1), 1)
    out["bh_fdr"] = SimulationResult("bh_fdr", float(false_share.mean()), sims, 0.05)
    return out


def chi_square_aa_rate(
    sims: int = 10_000, k: int = 4, n: int = 2000, seed: int = 7
) -> SimulationResult:
    """False-positive rate of the A/B/n chi-square test with ``k`` equal arms.

    >>> bool(0.03 < chi_square_aa_rate(sims=2000).value < 0.07)
    True
    """
    rng = np.random.default_rng(seed)
    conv = rng.binomial(n, 0.1, (sims, k)).astype(float)
    p = as_array(chi_square_test(conv, np.full((sims, k), float(n))).p_value)
    return SimulationResult("chi_square_aa_fpr", float(np.mean(p < 0.05)), sims, 0.05)


def srm_false_alarm_rate(sims: int = 100_000, n: int = 10_000, seed: int = 8) -> SimulationResult:
    """How often a correctly working 50/50 split is flagged as SRM (expected 0.1%).

    >>> bool(srm_false_alarm_rate(sims=20_000).value < 0.003)
    True
    """
    rng = np.random.default_rng(seed)
    a = rng.binomial(n, 0.5, sims).astype(float)
    p = as_array(goodness_of_fit(np.stack([a, n - a], axis=1), [0.5, 0.5]).p_value)
    return SimulationResult("srm_false_alarm", float(np.mean(p < 0.001)), sims, 0.001)
