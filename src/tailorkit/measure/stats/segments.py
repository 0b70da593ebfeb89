"""Heterogeneous effects: the lift in each segment, corrected for multiplicity.

Segments are taken as of exposure time (a user who later becomes a "VIP"
because of the treatment must not move segments, or the comparison is
biased). Looking at many segments finds spurious winners, so p-values are
corrected across segments. Two summaries help reading the table:

* ``sign_disagreement``: at least one segment is significantly positive and
  another significantly negative (after correction) — a reason to
  personalize rather than ship to everyone;
* Cochran's Q test that all segment effects are equal (heterogeneity).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from tailorkit.measure.stats._types import Real, as_array, check_alpha
from tailorkit.measure.stats.frequentist import LiftResult, lift
from tailorkit.measure.stats.metrics import Estimate, MetricType, as_estimate
from tailorkit.measure.stats.multiple import CORRECTION_NAMES, Correction, adjust_p_values
from tailorkit.measure.stats.sufficient import PairedStats, SampleStats

Stats = SampleStats | PairedStats | Estimate


@dataclass(frozen=True)
class SegmentLift:
    """One segment's lift, its corrected p-value and significance."""

    segment: str
    lift: LiftResult
    adjusted_p_value: float
    significant: bool


@dataclass(frozen=True)
class HeterogeneityResult:
    """Per-segment lifts plus the sign-disagreement flag and Cochran's Q."""

    segments: list[SegmentLift]
    correction: Correction
    correction_description: str
    sign_disagreement: bool
    q_statistic: float
    q_df: float
    q_p_value: float

    @property
    def message(self) -> str:
        """Plain-language summary for reports."""
        if self.sign_disagreement:
            pos = [
                s.segment for s in self.segments if s.significant and _value(s.lift.absolute) > 0
            ]
            neg = [
                s.segment for s in self.segments if s.significant and _value(s.lift.absolute) < 0
            ]
            return f"Segments disagree: better in {', '.join(pos)}, worse in {', '.join(neg)}."
        return f"No significant opposite-sign effects ({self.correction_description})."


def _value(x: Real) -> float:
    return float(as_array(x))


def cochran_q(effects: np.ndarray, ses: np.ndarray) -> tuple[float, float, float]:
    """Cochran's Q test of equal effects: statistic, degrees of freedom, p-value.

    >>> q, df, p = cochran_q(np.array([0.1, 0.3]), np.array([0.1, 0.1]))
    >>> round(q, 6), df, round(p, 4)
    (2.0, 1.0, 0.1573)
    """
    w = 1.0 / ses**2
    pooled = float(w @ effects / w.sum())
    q = float(w @ (effects - pooled) ** 2)
    df = float(effects.size - 1)
    return q, df, float(sps.chi2.sf(q, df)) if df > 0 else 1.0


def segment_lifts(
    segments: Mapping[str, tuple[Stats, Stats]],
    metric_type: MetricType = "mean",
    correction: Correction = "holm",
    alpha: float = 0.05,
) -> HeterogeneityResult:
    """Lift of treatment vs control per segment, with a correction across segments.

    ``segments`` maps a segment name to ``(treatment, control)`` statistics.

    >>> conv = SampleStats.from_proportion
    >>> seg = {
    ...     "mobile": (conv(5000, 650), conv(5000, 500)),
    ...     "desktop": (conv(5000, 420), conv(5000, 560)),
    ... }
    >>> r = segment_lifts(seg, "binomial")
    >>> r.sign_disagreement, r.message
    (True, 'Segments disagree: better in mobile, worse in desktop.')
    """
    check_alpha(alpha)
    names = list(segments)
    lifts = [
        lift(
            as_estimate(t, metric_type),
            as_estimate(c, metric_type),
            alpha,
            use_t=metric_type == "mean",
        )
        for t, c in (segments[n] for n in names)
    ]
    adjusted = adjust_p_values([_value(r.p_value) for r in lifts], correction)
    rows = [
        SegmentLift(n, r, float(p), bool(p <= alpha))
        for n, r, p in zip(names, lifts, adjusted, strict=True)
    ]
    signs = {np.sign(_value(r.lift.absolute)) for r in rows if r.significant}
    q, q_df, q_p = cochran_q(
        np.array([_value(r.absolute) for r in lifts]),
        np.array([_value(r.absolute_se) for r in lifts]),
    )
    return HeterogeneityResult(
        segments=rows,
        correction=correction,
        correction_description=CORRECTION_NAMES[correction],
        sign_disagreement={1.0, -1.0} <= signs,
        q_statistic=q,
        q_df=q_df,
        q_p_value=q_p,
    )
