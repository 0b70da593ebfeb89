"""Multiple-comparison corrections: Bonferroni, Holm, Benjamini–Hochberg.

Testing many variations × metrics × segments at α = 0.05 each finds "winners"
by chance. Bonferroni and Holm control the family-wise error rate (the chance
of *any* false positive); Benjamini–Hochberg controls the false discovery rate
(the expected share of false positives among the discoveries) and keeps more
power when many hypotheses are tested.

The functions work along the last axis, so a ``(sims, m)`` array corrects
``sims`` families at once (statsmodels' ``multipletests`` handles one family
per call, which is why they are implemented here; the tests check them
against it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from tailorkit.measure.stats._types import FloatArray, as_array, check_alpha

Correction = Literal["none", "bonferroni", "holm", "bh"]
CORRECTION_NAMES: dict[str, str] = {
    "none": "no correction",
    "bonferroni": "Bonferroni (family-wise error rate)",
    "holm": "Holm step-down (family-wise error rate)",
    "bh": "Benjamini–Hochberg (false discovery rate)",
}


def _sorted(p: FloatArray) -> tuple[FloatArray, npt.NDArray[np.intp], FloatArray]:
    """Ascending p-values, the sort order, and ranks 1..m."""
    order = np.argsort(p, axis=-1, kind="stable")
    ranks = np.arange(1, p.shape[-1] + 1, dtype=np.float64)
    return np.take_along_axis(p, order, axis=-1), order, ranks


def _unsort(values: FloatArray, order: npt.NDArray[np.intp]) -> FloatArray:
    out = np.empty_like(values)
    np.put_along_axis(out, order, values, axis=-1)
    return out


def adjust_p_values(p_values: npt.ArrayLike, method: Correction) -> FloatArray:
    """Adjusted p-values (compare with α directly), along the last axis.

    >>> adjust_p_values([0.01, 0.04, 0.03], "holm").round(4).tolist()
    [0.03, 0.06, 0.06]
    >>> adjust_p_values([0.01, 0.04, 0.03], "bh").round(4).tolist()
    [0.03, 0.04, 0.04]
    """
    p = as_array(p_values)
    m = p.shape[-1] if p.ndim else 1
    if method == "none":
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    ps, order, ranks = _sorted(np.atleast_1d(p))
    if method == "holm":
        # Step-down: the i-th smallest is tested at α/(m − i + 1); adjusted
        # values are made monotone with a running maximum.
        adj = np.maximum.accumulate(np.minimum((m - ranks + 1.0) * ps, 1.0), axis=-1)
    elif method == "bh":
        # Step-up: m·p_(i)/i, made monotone with a running minimum from the top.
        scaled = np.minimum(ps * m / ranks, 1.0)
        adj = np.flip(np.minimum.accumulate(np.flip(scaled, axis=-1), axis=-1), axis=-1)
    else:
        raise ValueError(f"unknown correction {method!r}")
    return _unsort(adj, order).reshape(p.shape)


@dataclass(frozen=True)
class CorrectionResult:
    """Which correction was applied, the adjusted p-values and the rejections."""

    method: Correction
    alpha: float
    adjusted: FloatArray
    rejected: npt.NDArray[np.bool_]

    @property
    def description(self) -> str:
        """Human-readable name, for reports ("Holm step-down (family-wise …)")."""
        return CORRECTION_NAMES[self.method]


def correct(
    p_values: npt.ArrayLike, method: Correction = "holm", alpha: float = 0.05
) -> CorrectionResult:
    """Apply a correction and decide at level ``alpha``.

    >>> r = correct([0.001, 0.02, 0.04], "bonferroni")
    >>> r.rejected.tolist(), r.description
    ([True, False, False], 'Bonferroni (family-wise error rate)')
    """
    check_alpha(alpha)
    adjusted = adjust_p_values(p_values, method)
    return CorrectionResult(
        method=method, alpha=alpha, adjusted=adjusted, rejected=adjusted <= alpha
    )
