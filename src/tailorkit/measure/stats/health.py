"""Health checks that decide whether results can be trusted at all.

* Sample ratio mismatch (SRM): the users per variation must match the
  configured weights. A mismatch means assignment or logging is broken (bots,
  redirects, crashes in one variation) and *no* metric result is trustworthy.
  Flagged at p < 0.001: with daily monitoring of many experiments a laxer
  threshold would raise false alarms constantly.
* Users exposed to several variations: should be ~0; a noticeable share means
  inconsistent hashing or identity stitching problems.
* Minimum data: the normal approximations behind the tests need enough users
  and enough conversions (and non-conversions) per variation.
* Guardrails: metrics that must not get worse (e.g. page load time, refunds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from tailorkit.measure.stats._types import as_array
from tailorkit.measure.stats.frequentist import LiftResult, goodness_of_fit

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class HealthCheck:
    """One check's outcome: ``ok`` and a plain-language message."""

    name: str
    ok: bool
    message: str


@dataclass(frozen=True)
class SrmResult:
    """Chi-square goodness of fit of the users per variation to the weights."""

    statistic: float
    p_value: float
    flagged: bool
    observed: tuple[float, ...]
    expected: tuple[float, ...]
    threshold: float

    def as_check(self) -> HealthCheck:
        """The SRM result as a generic health check for reports."""
        if self.flagged:
            msg = (
                f"Sample ratio mismatch (p = {self.p_value:.2g} < {self.threshold}): "
                f"observed {list(self.observed)}, expected {[round(e) for e in self.expected]}. "
                "Fix assignment/logging before trusting any result."
            )
        else:
            msg = f"No sample ratio mismatch (p = {self.p_value:.3g})."
        return HealthCheck("sample_ratio_mismatch", not self.flagged, msg)


def srm_check(
    counts: Sequence[float] | npt.ArrayLike,
    weights: Sequence[float] | npt.ArrayLike,
    threshold: float = SRM_THRESHOLD,
) -> SrmResult:
    """Sample ratio mismatch test (flag when ``p < threshold``).

    >>> srm_check([5000, 5400], [0.5, 0.5]).flagged
    True
    >>> srm_check([5000, 5050], [0.5, 0.5]).flagged
    False
    """
    obs, w = as_array(counts), as_array(weights)
    if obs.shape != w.shape or obs.ndim != 1:
        raise ValueError("counts and weights must be 1-D and of equal length")
    test = goodness_of_fit(obs, w)
    p = float(as_array(test.p_value))
    return SrmResult(
        statistic=float(as_array(test.statistic)),
        p_value=p,
        flagged=p < threshold,
        observed=tuple(float(x) for x in obs),
        expected=tuple(float(x) for x in obs.sum() * w / w.sum()),
        threshold=threshold,
    )


def multiple_exposure_check(n_multiple: int, n_total: int, max_share: float = 0.01) -> HealthCheck:
    """Warn when more than ``max_share`` of users saw several variations.

    >>> multiple_exposure_check(300, 10_000).ok
    False
    """
    share = n_multiple / n_total if n_total else 0.0
    ok = share <= max_share
    msg = f"{n_multiple} of {n_total} users ({share:.2%}) were exposed to several variations"
    return HealthCheck("multiple_exposures", ok, msg + ("." if ok else "; check hashing/identity."))


def minimum_data_checks(
    users: Sequence[float],
    conversions: Sequence[float] | None = None,
    min_users: int = 100,
    min_conversions: int = 10,
) -> list[HealthCheck]:
    """Minimum-data warnings per variation (empty list = enough data).

    The z/t approximations need roughly ``min_users`` users and, for
    conversion metrics, at least ``min_conversions`` conversions *and*
    non-conversions in every variation.

    >>> [c.message for c in minimum_data_checks([1000, 80])]
    ['Variation 1 has 80 users (< 100).']
    >>> len(minimum_data_checks([1000, 1000], conversions=[4, 30]))
    1
    """
    checks = []
    for i, n in enumerate(users):
        if n < min_users:
            checks.append(
                HealthCheck(
                    "minimum_users", False, f"Variation {i} has {n:g} users (< {min_users})."
                )
            )
    for i, (n, x) in enumerate(zip(users, conversions or [], strict=False)):
        if min(x, n - x) < min_conversions:
            msg = (
                f"Variation {i} has {x:g} conversions of {n:g} "
                f"(need ≥ {min_conversions} of each outcome)."
            )
            checks.append(HealthCheck("minimum_conversions", False, msg))
    return checks


GuardrailStatus = Literal["ok", "warning", "harm"]


@dataclass(frozen=True)
class GuardrailResult:
    """``harm``: significantly worse; ``warning``: worse than the margin but not
    significant; ``ok`` otherwise. ``non_inferior``: the whole interval lies
    above ``−margin`` (safety actually shown, not just harm not detected)."""

    status: GuardrailStatus
    non_inferior: bool
    message: str


def guardrail_check(
    lift: LiftResult, higher_is_better: bool = True, margin: float = 0.0
) -> GuardrailResult:
    """Check a guardrail metric's relative lift against a tolerated worsening.

    ``margin`` is the relative worsening that is acceptable (0.01 = 1%).

    >>> from tailorkit.measure.stats.frequentist import lift
    >>> from tailorkit.measure.stats.metrics import Estimate
    >>> r = lift(Estimate(1.10, 0.0004, 5000), Estimate(1.00, 0.0004, 5000))
    >>> guardrail_check(r, higher_is_better=False).status  # e.g. page load seconds went up
    'harm'
    """
    sign = 1.0 if higher_is_better else -1.0
    bounds = sorted(
        sign * float(as_array(b)) for b in (lift.relative_ci.lower, lift.relative_ci.upper)
    )
    good_lo, good_hi = bounds
    improvement = sign * float(as_array(lift.relative))
    worse = "fell" if higher_is_better else "rose"
    if good_hi < 0:
        status: GuardrailStatus = "harm"
        msg = f"Guardrail significantly worse: it {worse} by {abs(improvement):.2%}."
    elif improvement < -margin:
        status = "warning"
        msg = f"Guardrail {worse} by {abs(improvement):.2%} (not significant)."
    else:
        status = "ok"
        msg = "Guardrail not worse."
    non_inferior = bool(np.isfinite(good_lo)) and good_lo > -margin
    return GuardrailResult(status, non_inferior, msg)
