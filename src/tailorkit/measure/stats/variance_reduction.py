"""Variance reduction: CUPED from sufficient statistics, regression adjustment.

CUPED (Deng, Xu, Kohavi & Walker 2013) subtracts the part of the metric ``x``
that a pre-exposure covariate ``y`` predicts: ``x' = x − θ·(y − ȳ)``. Because
``y`` was fixed before randomization, the adjustment removes noise without
biasing the effect; the variance shrinks by the factor ``1 − ρ²`` (``ρ`` the
correlation of ``x`` and ``y``). ``y`` is usually the same metric in the weeks
before exposure, but any pre-period covariate works.

θ is pooled *within* arms, ``θ = Σ_arms S_xy / Σ_arms S_yy`` (centered sums),
which makes the CUPED effect identical to the treatment coefficient of the OLS
regression ``x ~ 1 + treatment + y`` on the raw rows (Frisch–Waugh–Lovell).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import statsmodels.api as sm
from scipy.stats import norm

from tailorkit.measure.stats._types import FloatArray, Real, as_array, check_alpha, unwrap
from tailorkit.measure.stats.frequentist import Interval
from tailorkit.measure.stats.metrics import Estimate
from tailorkit.measure.stats.sufficient import PairedStats


def _centered_cross(stats: PairedStats) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Centered ``S_xy`` and ``S_yy`` of one arm."""
    n, sy = as_array(stats.n), as_array(stats.sum_y)
    sxy = as_array(stats.sum_xy) - as_array(stats.sum_x) * sy / n
    syy = as_array(stats.sum_y2) - sy * sy / n
    return sxy, syy


def cuped_theta(arms: Sequence[PairedStats]) -> Real:
    """Regression slope of the metric on the covariate, pooled within arms.

    >>> a = PairedStats.from_values([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    >>> cuped_theta([a, a])
    2.0
    """
    parts = [_centered_cross(arm) for arm in arms]
    sxy = sum(p[0] for p in parts)
    syy = sum(p[1] for p in parts)
    return unwrap(as_array(sxy) / as_array(syy))


def cuped_adjust(
    arms: Sequence[PairedStats], theta: npt.ArrayLike | None = None
) -> tuple[list[Estimate], Real]:
    """CUPED-adjusted mean and variance per arm, and the θ used.

    Each arm's mean is ``x̄ − θ·(ȳ_arm − ȳ_pooled)``; its variance is
    ``(s_x² − 2θ·s_xy + θ²·s_y²) / n`` (θ treated as known, an O(1/n²)
    approximation). Pass all arms of one comparison together so they share θ
    and the pooled covariate mean.

    >>> t = PairedStats.from_values([3.0, 5.0, 8.0], [1.0, 2.0, 3.0])
    >>> c = PairedStats.from_values([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    >>> (et, ec), theta = cuped_adjust([t, c])
    >>> round(et.mean - ec.mean, 6), round(theta, 4)
    (1.333333, 2.25)
    """
    th = as_array(cuped_theta(arms) if theta is None else theta)
    pooled_y = as_array(sum(as_array(a.sum_y) for a in arms)) / as_array(
        sum(as_array(a.n) for a in arms)
    )
    return [_adjusted(arm, th, pooled_y) for arm in arms], unwrap(th)


def _adjusted(
    arm: PairedStats, theta: npt.NDArray[np.float64], pooled_y: npt.NDArray[np.float64]
) -> Estimate:
    n = as_array(arm.n)
    mean = as_array(arm.x.mean) - theta * (as_array(arm.y.mean) - pooled_y)
    var = as_array(arm.x.variance) - 2.0 * theta * as_array(arm.covariance)
    var = var + theta * theta * as_array(arm.y.variance)
    return Estimate(mean=unwrap(mean), variance=unwrap(np.maximum(var, 0.0) / n), n=arm.n)


def expected_variance_reduction(correlation: npt.ArrayLike) -> Real:
    """Share of variance CUPED removes: ``ρ²``.

    >>> expected_variance_reduction(0.7)
    0.48999999999999994
    """
    return unwrap(as_array(correlation) ** 2)


@dataclass(frozen=True)
class RegressionEffect:
    """Covariate-adjusted effect of one variation vs the control (OLS)."""

    variation: str
    effect: float
    se: float
    ci: Interval
    p_value: float
    nobs: int
    cov_type: str


def _design(
    frame: pd.DataFrame, treatment: str, covariates: Sequence[str], control: str
) -> tuple[pd.DataFrame, list[str]]:
    """Treatment dummies (control omitted) + covariates (categoricals as dummies)."""
    arm = frame[treatment].astype(str)
    variations = [v for v in sorted(arm.unique()) if v != control]
    if control not in set(arm):
        raise ValueError(f"control {control!r} not found in column {treatment!r}")
    dummies = pd.DataFrame({f"T[{v}]": (arm == v).to_numpy(dtype=float) for v in variations})
    design = dummies
    if covariates:
        covs = pd.get_dummies(frame[list(covariates)], drop_first=True, dtype=float)
        design = pd.concat([dummies, covs.reset_index(drop=True).astype(float)], axis=1)
    return sm.add_constant(design, has_constant="add"), variations


def regression_adjustment(
    frame: pd.DataFrame,
    outcome: str,
    treatment: str,
    covariates: Sequence[str],
    control: str,
    cov_type: str = "HC1",
    alpha: float = 0.05,
) -> list[RegressionEffect]:
    """Effect of each variation adjusted for covariates, with robust standard errors.

    Fits ``outcome ~ 1 + variation dummies + covariates`` by OLS (statsmodels).
    Non-numeric covariates (device, traffic source, weekday) become dummies.
    ``cov_type`` is any statsmodels heteroskedasticity-robust type (HC0–HC3).
    Unlike the rest of this package it needs rows, not sufficient statistics.

    >>> df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 5.0, 2.0, 4.0], "arm": list("ccttct"),
    ...                    "device": ["m", "d", "m", "d", "m", "d"]})
    >>> [round(r.effect, 4) for r in regression_adjustment(df, "y", "arm", ["device"], "c")]
    [2.0]
    """
    check_alpha(alpha)
    if frame[[outcome, treatment, *covariates]].isna().any().any():
        raise ValueError("missing values in outcome, treatment or covariates")
    design, variations = _design(frame, treatment, covariates, control)
    fit = sm.OLS(frame[outcome].to_numpy(dtype=float), design).fit(cov_type=cov_type)
    ci = fit.conf_int(alpha=alpha)
    return [
        RegressionEffect(
            variation=v,
            effect=float(fit.params[f"T[{v}]"]),
            se=float(fit.bse[f"T[{v}]"]),
            ci=Interval(float(ci.loc[f"T[{v}]", 0]), float(ci.loc[f"T[{v}]", 1])),
            p_value=float(fit.pvalues[f"T[{v}]"]),
            nobs=int(fit.nobs),
            cov_type=cov_type,
        )
        for v in variations
    ]


def _dummies(codes: npt.ArrayLike, keep: Sequence[object] | None = None) -> list[FloatArray]:
    """0/1 columns, one per level in ``keep`` (default: every sorted level but the first)."""
    values = np.asarray(codes)
    levels = list(keep) if keep is not None else sorted(set(values.tolist()))[1:]
    return [(values == level).astype(np.float64) for level in levels]


def regression_adjustment_cells(
    variation: npt.ArrayLike,
    covariates: Sequence[npt.ArrayLike],
    n: npt.ArrayLike,
    sum_y: npt.ArrayLike,
    sum_y2: npt.ArrayLike,
    names: Sequence[str],
    control: int = 0,
    cov_type: str = "HC1",
    alpha: float = 0.05,
) -> list[RegressionEffect]:
    """:func:`regression_adjustment` from cell sums: categorical covariates only.

    Each row is a cell (or part of one): a variation index, one level per
    covariate, and the cell's ``n``, ``Σy``, ``Σy²``. Every regressor is
    constant within a cell, so ``X'X``, ``X'y`` and the robust "meat"
    ``Σ eᵢ² xᵢxᵢ'`` follow from the sums: a cell with fitted value ``f`` has
    ``Σ eᵢ² = Σy² − 2f·Σy + n·f²``. ``cov_type`` is ``HC0`` (White) or ``HC1``
    (HC0 × n / (n − p)), as in statsmodels; intervals and p-values are normal
    (z), as statsmodels uses for robust covariances. ``names`` has one entry
    per variation (its length is the number of variations).

    >>> effects = regression_adjustment_cells(
    ...     [0, 0, 1, 1, 0, 1], [["m", "d", "m", "d", "m", "d"]], [1, 1, 1, 1, 1, 1],
    ...     [1.0, 2.0, 3.0, 5.0, 2.0, 4.0], [1.0, 4.0, 9.0, 25.0, 4.0, 16.0], ["c", "t"])
    >>> [round(e.effect, 4) for e in effects]
    [2.0]
    """
    check_alpha(alpha)
    if cov_type not in ("HC0", "HC1"):
        raise ValueError(f"cov_type must be HC0 or HC1, got {cov_type!r}")
    cells = as_array(n)
    used = cells > 0
    arm = np.asarray(variation)[used]
    count, sy, syy = cells[used], as_array(sum_y)[used], as_array(sum_y2)[used]
    treated = [v for v in range(len(names)) if v != control]
    columns = [np.ones(arm.shape), *_dummies(arm, treated)]
    for codes in covariates:
        columns += _dummies(np.asarray(codes)[used])
    x = np.column_stack(columns)
    root = np.sqrt(count)
    # one weighted row per cell: the same normal equations as the raw rows
    bread = np.linalg.pinv((x * count[:, None]).T @ x)
    beta = bread @ (x.T @ sy)
    fitted = x @ beta
    squared = np.maximum(syy - 2.0 * fitted * sy + count * fitted * fitted, 0.0)
    meat = (x * squared[:, None]).T @ x
    cov = bread @ meat @ bread
    total = float(count.sum())
    if cov_type == "HC1":
        cov = cov * total / (total - np.linalg.matrix_rank(x * root[:, None]))
    z = float(norm.ppf(1.0 - alpha / 2.0))
    out = []
    for j, v in enumerate(treated, start=1):
        effect, se = float(beta[j]), float(np.sqrt(max(cov[j, j], 0.0)))
        out.append(
            RegressionEffect(
                variation=names[v],
                effect=effect,
                se=se,
                ci=Interval(effect - z * se, effect + z * se),
                p_value=float(2.0 * norm.sf(abs(effect / se))) if se > 0 else float("nan"),
                nobs=int(total),
                cov_type=cov_type,
            )
        )
    return out
