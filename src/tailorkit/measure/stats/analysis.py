"""The report layer: analyse one metric across variations and recommend an action.

:func:`analyze_metric` takes per-variation sufficient statistics and returns,
for every treatment vs the control, the absolute and relative lift with
confidence intervals, the p-value (corrected across treatments), the Bayesian
chance to win and risk. :func:`apply_correction` re-corrects several analyses
jointly (variations × metrics × segments) and :func:`recommend` turns the
primary metric, guardrails and health checks into ship / keep running /
stop for harm / inconclusive, with the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tailorkit.measure.stats._types import Alternative, Real, as_array, check_alpha
from tailorkit.measure.stats.bayesian import (
    BayesianResult,
    BetaPrior,
    GaussianPrior,
    beta_binomial,
    gaussian_model,
)
from tailorkit.measure.stats.frequentist import LiftResult, lift
from tailorkit.measure.stats.health import HealthCheck, SrmResult, guardrail_check
from tailorkit.measure.stats.metrics import Estimate, MetricType, estimate
from tailorkit.measure.stats.multiple import CORRECTION_NAMES, Correction, adjust_p_values
from tailorkit.measure.stats.sequential import DEFAULT_TUNING, sequential_lift
from tailorkit.measure.stats.sufficient import PairedStats, SampleStats
from tailorkit.measure.stats.variance_reduction import cuped_adjust

Stats = SampleStats | PairedStats


def _f(x: Real) -> float:
    return float(as_array(x))


@dataclass(frozen=True)
class VariationResult:
    """One treatment compared with the control on one metric."""

    name: str
    n: float
    mean: float
    lift: LiftResult
    adjusted_p_value: float
    significant: bool
    better: bool
    bayes: BayesianResult


@dataclass(frozen=True)
class MetricAnalysis:
    """All treatments of one metric vs the control, with the settings used."""

    metric: str
    metric_type: MetricType
    control: str
    control_n: float
    control_mean: float
    variations: list[VariationResult]
    alpha: float
    alternative: Alternative
    correction: Correction
    correction_description: str
    higher_is_better: bool
    cuped: bool
    sequential: bool
    tuning: float


def _estimates(
    t: Stats, c: Stats, metric_type: MetricType, cuped: bool
) -> tuple[Estimate, Estimate]:
    if not cuped:
        return estimate(t, metric_type), estimate(c, metric_type)
    if metric_type == "ratio" or not (isinstance(t, PairedStats) and isinstance(c, PairedStats)):
        raise ValueError(
            "CUPED needs PairedStats (metric x, pre-period covariate y); not for ratios"
        )
    (et, ec), _ = cuped_adjust([t, c])
    return et, ec


def _orient(b: BayesianResult, higher_is_better: bool, control_mean: float) -> BayesianResult:
    """For lower-is-better metrics a "win" is a decrease: swap the tails."""
    if higher_is_better:
        return b
    return dataclasses.replace(
        b,
        chance_to_win=1.0 - _f(b.chance_to_win),
        risk=b.risk_control,
        risk_control=b.risk,
        relative_risk=_f(b.risk_control) / abs(control_mean),
    )


@dataclass(frozen=True)
class _Settings:
    """How to compare each pair (shared by all treatments of a metric)."""

    alpha: float
    alternative: Alternative
    cuped: bool
    sequential: bool
    tuning: float
    beta_prior: BetaPrior | None
    gaussian_prior: GaussianPrior | None


def _compare(
    t: Stats, c: Stats, metric_type: MetricType, s: _Settings
) -> tuple[LiftResult, BayesianResult]:
    """Frequentist (fixed-horizon or sequential) and Bayesian comparison of one pair."""
    et, ec = _estimates(t, c, metric_type, s.cuped)
    if s.sequential:
        fr = sequential_lift(et, ec, s.alpha, s.alternative, s.tuning)
    else:
        fr = lift(et, ec, s.alpha, s.alternative, use_t=metric_type == "mean" and not s.cuped)
    if metric_type == "binomial" and not s.cuped:
        base_t = t.x if isinstance(t, PairedStats) else t
        base_c = c.x if isinstance(c, PairedStats) else c
        return fr, beta_binomial(base_t, base_c, s.beta_prior, s.alpha)
    return fr, gaussian_model(et, ec, s.gaussian_prior, s.alpha)


def analyze_metric(
    variations: Sequence[Stats],
    metric_type: MetricType = "mean",
    names: Sequence[str] | None = None,
    control: int = 0,
    metric: str = "metric",
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    correction: Correction = "holm",
    higher_is_better: bool = True,
    cuped: bool = False,
    sequential: bool = False,
    tuning: float = DEFAULT_TUNING,
    beta_prior: BetaPrior | None = None,
    gaussian_prior: GaussianPrior | None = None,
) -> MetricAnalysis:
    """Compare every variation with the control on one metric.

    ``variations`` holds one :class:`SampleStats` (or :class:`PairedStats` for
    ratio metrics and CUPED) per variation; ``correction`` is applied across
    the treatments of this metric (use :func:`apply_correction` to correct
    across metrics and segments too).

    >>> a = analyze_metric(
    ...     [SampleStats.from_proportion(5000, 500), SampleStats.from_proportion(5000, 580)],
    ...     "binomial", names=["control", "new checkout"], metric="purchase")
    >>> v = a.variations[0]
    >>> v.name, round(v.lift.relative, 3), round(v.adjusted_p_value, 4)
    ('new checkout', 0.16, 0.0099)
    >>> round(v.bayes.chance_to_win, 3), round(v.bayes.risk, 5)
    (0.995, 1e-05)
    """
    check_alpha(alpha)
    labels = list(names) if names else [f"variation {i}" for i in range(len(variations))]
    if len(labels) != len(variations) or len(variations) < 2:
        raise ValueError("need ≥ 2 variations and one name per variation")
    settings = _Settings(alpha, alternative, cuped, sequential, tuning, beta_prior, gaussian_prior)
    ctrl = variations[control]
    treated = [i for i in range(len(variations)) if i != control]
    pairs = [_compare(variations[i], ctrl, metric_type, settings) for i in treated]
    adjusted = adjust_p_values([_f(fr.p_value) for fr, _ in pairs], correction)
    ctrl_est = estimate(ctrl, metric_type)
    ctrl_mean = _f(ctrl_est.mean)
    rows = [
        _row(labels[i], estimate(variations[i], metric_type), fr, by, float(p), alpha,
             higher_is_better, ctrl_mean)
        for i, (fr, by), p in zip(treated, pairs, adjusted, strict=True)
    ]  # fmt: skip
    return MetricAnalysis(
        metric=metric,
        metric_type=metric_type,
        control=labels[control],
        control_n=_f(ctrl_est.n),
        control_mean=_f(ctrl_est.mean),
        variations=rows,
        alpha=alpha,
        alternative=alternative,
        correction=correction,
        correction_description=CORRECTION_NAMES[correction],
        higher_is_better=higher_is_better,
        cuped=cuped,
        sequential=sequential,
        tuning=tuning,
    )


def _row(
    name: str,
    est: Estimate,
    fr: LiftResult,
    by: BayesianResult,
    adj_p: float,
    alpha: float,
    higher_is_better: bool,
    control_mean: float,
) -> VariationResult:
    better = (_f(fr.absolute) > 0) == higher_is_better and _f(fr.absolute) != 0
    return VariationResult(
        name=name,
        n=_f(est.n),
        mean=_f(est.mean),
        lift=fr,
        adjusted_p_value=adj_p,
        significant=adj_p <= alpha,
        better=better,
        bayes=_orient(by, higher_is_better, control_mean),
    )


def correct_jointly(
    analyses: Sequence[MetricAnalysis], others: Sequence[float], correction: Correction = "holm"
) -> tuple[list[MetricAnalysis], list[float]]:
    """One family: every comparison in ``analyses`` and the p-values ``others``.

    ``others`` are further comparisons of the same family (e.g. per-segment
    lifts); their adjusted p-values are returned beside the analyses, which
    get their adjusted p-values, significance and the method's name.

    >>> a = analyze_metric([SampleStats.from_proportion(5000, 500),
    ...                     SampleStats.from_proportion(5000, 580)], "binomial")
    >>> out, rest = correct_jointly([a], [0.01, 0.5], "bonferroni")
    >>> round(out[0].variations[0].adjusted_p_value, 4), [round(p, 2) for p in rest]
    (0.0298, [0.03, 1.0])
    """
    raw = [_f(v.lift.p_value) for a in analyses for v in a.variations] + [float(p) for p in others]
    adjusted = adjust_p_values(raw, correction).tolist() if raw else []
    it = iter(adjusted)
    out = []
    for a in analyses:
        rows = []
        for v in a.variations:
            p = float(next(it))
            rows.append(dataclasses.replace(v, adjusted_p_value=p, significant=p <= a.alpha))
        out.append(
            dataclasses.replace(
                a,
                variations=rows,
                correction=correction,
                correction_description=CORRECTION_NAMES[correction],
            )
        )
    return out, [float(p) for p in it]


def apply_correction(
    analyses: Sequence[MetricAnalysis], correction: Correction = "holm"
) -> list[MetricAnalysis]:
    """Correct jointly across all comparisons in ``analyses`` (metrics × segments).

    Replaces each variation's adjusted p-value and significance, and records
    the method on every analysis so the report states it.

    >>> a = analyze_metric([SampleStats.from_proportion(5000, 500),
    ...                     SampleStats.from_proportion(5000, 580)], "binomial")
    >>> b = apply_correction([a, a], "bonferroni")
    >>> round(b[0].variations[0].adjusted_p_value, 4), b[0].correction
    (0.0199, 'bonferroni')
    """
    return correct_jointly(analyses, (), correction)[0]


Action = Literal["ship", "keep_running", "stop_for_harm", "inconclusive"]


@dataclass(frozen=True)
class Recommendation:
    """What to do, which variation it concerns, and why (one or two sentences)."""

    action: Action
    reason: str
    variation: str | None = None


def _describe(v: VariationResult, a: MetricAnalysis) -> str:
    ci = v.lift.relative_ci
    return (
        f"{v.name}: {a.metric} {_f(v.lift.relative):+.1%} vs {a.control} "
        f"(CI {_f(ci.lower):+.1%} to {_f(ci.upper):+.1%}, p = {v.adjusted_p_value:.3g}, "
        f"chance to win {_f(v.bayes.chance_to_win):.0%})"
    )


def _guardrail_harm(name: str, guardrails: Sequence[MetricAnalysis]) -> list[str]:
    """Guardrail metrics on which variation ``name`` is significantly worse."""
    harmed = []
    for g in guardrails:
        for v in g.variations:
            if v.name == name and guardrail_check(v.lift, g.higher_is_better).status == "harm":
                harmed.append(g.metric)
    return harmed


def recommend(
    primary: MetricAnalysis,
    guardrails: Sequence[MetricAnalysis] = (),
    srm: SrmResult | None = None,
    planned_per_variation: float | None = None,
    health: Sequence[HealthCheck] = (),
) -> Recommendation:
    """Ship, keep running, stop for harm, or inconclusive — with the reason.

    Order of reasoning: untrustworthy data (sample ratio mismatch) first; then
    a significant winner on the primary metric without guardrail harm; then
    harm; then "keep running" while the planned sample size (or minimum data)
    is not reached; otherwise inconclusive.

    >>> a = analyze_metric([SampleStats.from_proportion(5000, 500),
    ...                     SampleStats.from_proportion(5000, 580)], "binomial", metric="purchase")
    >>> recommend(a).action
    'ship'
    """
    if srm is not None and srm.flagged:
        return Recommendation("inconclusive", srm.as_check().message)
    harms = {v.name: _guardrail_harm(v.name, guardrails) for v in primary.variations}
    winners = [v for v in primary.variations if v.significant and v.better and not harms[v.name]]
    if winners:
        best = max(
            winners, key=lambda v: _f(v.lift.relative) * (1 if primary.higher_is_better else -1)
        )
        return Recommendation(
            "ship", f"Significant improvement: {_describe(best, primary)}.", best.name
        )
    harmful = [v for v in primary.variations if (v.significant and not v.better) or harms[v.name]]
    if harmful:
        return Recommendation(
            "stop_for_harm", _harm_reason(harmful, harms, primary), harmful[0].name
        )
    return _not_decided(primary, planned_per_variation, health)


def _harm_reason(
    harmful: list[VariationResult], harms: dict[str, list[str]], a: MetricAnalysis
) -> str:
    parts = []
    for v in harmful:
        if harms[v.name]:
            parts.append(f"{v.name} harms guardrail(s) {', '.join(harms[v.name])}")
        else:
            parts.append(f"significantly worse — {_describe(v, a)}")
    return "Stop: " + "; ".join(parts) + "."


def _not_decided(
    a: MetricAnalysis, planned: float | None, health: Sequence[HealthCheck]
) -> Recommendation:
    smallest = min([a.control_n, *(v.n for v in a.variations)])
    failing = [h.message for h in health if not h.ok]
    if planned is not None and smallest < planned:
        return Recommendation(
            "keep_running",
            f"No significant result yet; {smallest:,.0f} of the planned "
            f"{planned:,.0f} users per variation.",
        )
    if failing:
        return Recommendation("keep_running", "Not enough data: " + " ".join(failing))
    if a.sequential and planned is None:
        return Recommendation(
            "keep_running", "No significant result yet; always-valid inference allows continuing."
        )
    widest = max(
        a.variations, key=lambda v: abs(_f(v.lift.relative_ci.upper) - _f(v.lift.relative_ci.lower))
    )
    ci = widest.lift.relative_ci
    return Recommendation(
        "inconclusive",
        f"No significant difference at the planned sample size; effects between "
        f"{_f(ci.lower):+.1%} and {_f(ci.upper):+.1%} remain plausible.",
    )
