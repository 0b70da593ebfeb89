"""Factorial (multivariate) experiments: main effects and two-way interactions.

Each user gets one level of every factor (e.g. headline × image); SQL reports
sufficient statistics per *cell* (combination of levels). Effects are linear
contrasts of the cell means, weighting every cell equally:

* main effect of level ``a`` of factor ``j``: mean of cells at ``a`` minus mean
  of cells at the baseline level 0, averaged over the other factors' levels;
* interaction of (``j`` at ``a``) × (``k`` at ``b``): the difference in
  differences ``μ_ab − μ_a0 − μ_0b + μ_00``, averaged over the other factors.
  Zero means the two changes add up; positive means they reinforce each other.

Variances use each cell's own variance (no equal-variance assumption), the
same as OLS on a cell-means model with HC2 robust standard errors; t tests use
Welch–Satterthwaite degrees of freedom.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tailorkit.measure.stats._types import as_array, check_alpha
from tailorkit.measure.stats.frequentist import Interval, confidence_interval, p_value
from tailorkit.measure.stats.metrics import Estimate, MetricType, estimate
from tailorkit.measure.stats.sufficient import PairedStats, SampleStats

Cell = tuple[int, ...]


@dataclass(frozen=True)
class FactorialEffect:
    """One main effect or interaction with its test."""

    name: str
    kind: Literal["main", "interaction"]
    estimate: float
    se: float
    ci: Interval
    statistic: float
    p_value: float
    df: float


def _levels(cells: Sequence[Cell]) -> list[int]:
    """Levels per factor; insists on a complete grid (every combination observed)."""
    k = len(cells[0])
    levels = [max(c[j] for c in cells) + 1 for j in range(k)]
    if set(cells) != set(itertools.product(*(range(n) for n in levels))):
        raise ValueError("factorial analysis needs every combination of levels (a full grid)")
    return levels


def _indicator(cells: Sequence[Cell], factor: int, level: int) -> np.ndarray:
    """``[l_j = level] − [l_j = 0]`` per cell: the simple-effect contrast."""
    lv = np.array([c[factor] for c in cells])
    return (lv == level).astype(float) - (lv == 0).astype(float)


def _contrasts(cells: Sequence[Cell], names: Sequence[str]) -> list[tuple[str, str, np.ndarray]]:
    """(name, kind, weights) of every main effect and two-way interaction."""
    levels = _levels(cells)
    total = math.prod(levels)
    out: list[tuple[str, str, np.ndarray]] = []
    label = lambda j, a: names[j] if levels[j] == 2 else f"{names[j]}[{a}]"  # noqa: E731
    for j in range(len(levels)):
        for a in range(1, levels[j]):
            out.append((label(j, a), "main", _indicator(cells, j, a) * levels[j] / total))
    for j, k in itertools.combinations(range(len(levels)), 2):
        for a, b in itertools.product(range(1, levels[j]), range(1, levels[k])):
            w = _indicator(cells, j, a) * _indicator(cells, k, b) * levels[j] * levels[k] / total
            out.append((f"{label(j, a)}×{label(k, b)}", "interaction", w))
    return out


def _test(
    name: str, kind: str, w: np.ndarray, ests: Sequence[Estimate], alpha: float, use_t: bool
) -> FactorialEffect:
    means = np.array([float(as_array(e.mean)) for e in ests])
    parts = w**2 * np.array([float(as_array(e.variance)) for e in ests])
    dof = np.array([float(as_array(e.n)) - 1.0 for e in ests])
    var = float(parts.sum())
    used = parts > 0
    df = var**2 / float((parts[used] ** 2 / dof[used]).sum()) if use_t else math.inf
    est, se = float(w @ means), math.sqrt(var)
    dist_df = df if use_t else None
    ci = confidence_interval(est, se, alpha, "two-sided", dist_df)
    return FactorialEffect(
        name=name,
        kind="main" if kind == "main" else "interaction",
        estimate=est,
        se=se,
        ci=ci,
        statistic=est / se,
        p_value=float(as_array(p_value(est / se, "two-sided", dist_df))),
        df=df,
    )


def factorial_effects(
    cells: Mapping[Cell, SampleStats | PairedStats | Estimate],
    factor_names: Sequence[str] | None = None,
    metric_type: MetricType = "mean",
    alpha: float = 0.05,
    use_t: bool | None = None,
) -> list[FactorialEffect]:
    """Main effects and two-way interactions from per-cell statistics.

    Keys are level tuples, ``(0, 1)`` = factor A at baseline, factor B at
    level 1. ``use_t`` defaults to Welch t for mean metrics, z otherwise.

    >>> cells = {
    ...     (0, 0): SampleStats.from_proportion(1000, 100),
    ...     (1, 0): SampleStats.from_proportion(1000, 130),
    ...     (0, 1): SampleStats.from_proportion(1000, 110),
    ...     (1, 1): SampleStats.from_proportion(1000, 180),
    ... }
    >>> [(e.name, round(e.estimate, 3)) for e in factorial_effects(cells, ["A", "B"], "binomial")]
    [('A', 0.05), ('B', 0.03), ('A×B', 0.04)]
    """
    check_alpha(alpha)
    keys = sorted(cells)
    if not keys:
        raise ValueError("no cells")
    names = list(factor_names) if factor_names else [chr(ord("A") + j) for j in range(len(keys[0]))]
    ests = [
        c if isinstance(c, Estimate) else estimate(c, metric_type) for c in (cells[k] for k in keys)
    ]
    t = (metric_type == "mean") if use_t is None else use_t
    return [_test(name, kind, w, ests, alpha, t) for name, kind, w in _contrasts(keys, names)]
