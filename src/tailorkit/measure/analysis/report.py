"""From pooled sufficient statistics to the experiment report (a JSON-ready dict).

The engine (:mod:`tailorkit.measure.stats`) does all statistics; this module
decides what is compared with what and how p-values are corrected:

* **overall**: every treatment vs the control on every primary and
  secondary metric;
* **segments**: every treatment × metric × segment, with a
  sign-disagreement flag and Cochran's Q per metric and treatment;
* **correction**: with the experiment's ``correction`` (Holm by default),
  by default as one family across variations × metrics × segments (the
  overall comparisons and every segment's); ``correction_family: separate``
  corrects the overall comparisons and the segment breakdown as two
  families (:func:`tailorkit.measure.analysis.breakdown.correct_families`);
* **guardrails**: each judged on its own interval (no correction — a
  correction would make harm *harder* to detect), overall and per segment;
* **cumulative**: by first-exposure day, each day's cohort with its full
  attribution window (fixed-horizon intervals, or confidence sequences when
  the experiment is sequential — the only intervals valid to watch daily);
* **health**: sample ratio mismatch against the configured weights,
  multiple exposures, excluded bots/outliers, minimum data, guardrails;
* **recommendation**: :func:`tailorkit.measure.stats.recommend` on the primary
  metric, guardrails, SRM and minimum-data checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tailorkit.measure.analysis.groups import Floats, Groups
from tailorkit.measure.analysis.spec import ExperimentSpec, MetricSpec
from tailorkit.measure.stats import (
    BetaPrior,
    GaussianPrior,
    HealthCheck,
    Interval,
    LiftResult,
    MetricAnalysis,
    PairedStats,
    Recommendation,
    SampleStats,
    SrmResult,
    VariationResult,
    analyze_metric,
    correct_jointly,
    cuped_adjust,
    estimate,
    guardrail_check,
    lift,
    minimum_data_checks,
    multiple_exposure_check,
    recommend,
    regression_adjustment_cells,
    sequential_lift,
    srm_check,
)

Stats = SampleStats | PairedStats
Sums = Callable[[str], Floats]


def num(value: Any) -> float | None:
    """A finite float, or ``None`` (JSON has no NaN or infinity).

    >>> num(1.5), num(float("inf")), num(np.float64("nan"))
    (1.5, None, None)
    """
    x = float(value)
    return x if np.isfinite(x) else None


def _ci(interval: Interval) -> list[float | None]:
    return [num(interval.lower), num(interval.upper)]


def stats_for(metric: MetricSpec, i: int, sums: Sums) -> list[Stats]:
    """Per-variation engine inputs of metric ``i`` (arrays broadcast, e.g. over days).

    >>> from tailorkit.measure.analysis.examples import example_spec, example_table
    >>> g = Groups.from_arrow(example_table(), 2)
    >>> [s.mean for s in stats_for(example_spec().metrics[0], 0, g.pooled)]
    [0.1, 0.13]
    """
    n, x, xx = sums("n"), sums(f"x{i}"), sums(f"xx{i}")
    if not metric.paired:
        return [SampleStats(n[v], x[v], xx[v]) for v in range(len(n))]
    y, yy, xy = sums(f"y{i}"), sums(f"yy{i}"), sums(f"xy{i}")
    return [PairedStats(n[v], x[v], xx[v], y[v], yy[v], xy[v]) for v in range(len(n))]


@dataclass(frozen=True)
class Context:
    """What every comparison of one experiment shares."""

    spec: ExperimentSpec
    names: list[str]

    def analyze(
        self, metric: MetricSpec, i: int, sums: Sums, correction: str | None = None
    ) -> MetricAnalysis | None:
        """One metric across variations, or ``None`` when a variation lacks data."""
        stats = stats_for(metric, i, sums)
        if min(float(s.n) for s in stats) < 2:
            return None
        s = self.spec
        with np.errstate(all="ignore"):
            result = analyze_metric(
                stats,
                metric.type,
                names=self.names,
                control=s.control,
                metric=metric.key,
                alpha=s.alpha,
                alternative=s.alternative,
                correction=correction or s.correction,  # type: ignore[arg-type]
                higher_is_better=metric.higher_is_better,
                cuped=metric.cuped is not None,
                sequential=s.sequential,
                tuning=s.sequential_tuning,
                beta_prior=metric.prior if isinstance(metric.prior, BetaPrior) else None,
                gaussian_prior=metric.prior if isinstance(metric.prior, GaussianPrior) else None,
            )
        finite = all(np.isfinite(float(v.lift.p_value)) for v in result.variations)
        return result if finite else None

    def compare(self, metric: MetricSpec, t: Stats, c: Stats) -> LiftResult | None:
        """Frequentist lift of ``t`` vs ``c`` as :func:`analyze_metric` computes it, or ``None``."""
        s = self.spec
        if min(float(t.n), float(c.n)) < 2:
            return None
        with np.errstate(all="ignore"):
            if (
                metric.cuped is not None
                and isinstance(t, PairedStats)
                and isinstance(c, PairedStats)
            ):
                et, ec = cuped_adjust([t, c])[0]
            else:
                et, ec = estimate(t, metric.type), estimate(c, metric.type)
            if not s.sequential:
                use_t = metric.type == "mean" and metric.cuped is None
                r = lift(et, ec, s.alpha, s.alternative, use_t=use_t)
            elif float(et.variance) + float(ec.variance) > 0:
                r = sequential_lift(et, ec, s.alpha, s.alternative, s.sequential_tuning)
            else:
                return None
        return r if np.isfinite(float(r.p_value)) else None


# -- JSON --------------------------------------------------------------------------


def lift_json(r: LiftResult) -> dict[str, Any]:
    """Absolute and relative lift with intervals and the raw p-value.

    >>> from tailorkit.measure.stats import binomial_estimate
    >>> r = lift(binomial_estimate(SampleStats.from_proportion(1000, 130)),
    ...          binomial_estimate(SampleStats.from_proportion(1000, 100)))
    >>> round(lift_json(r)["relative"], 2)
    0.3
    """
    return {
        "absolute": num(r.absolute),
        "absolute_ci": _ci(r.absolute_ci),
        "relative": num(r.relative),
        "relative_ci": _ci(r.relative_ci),
        "p_value": num(r.p_value),
    }


def variation_json(v: VariationResult) -> dict[str, Any]:
    """One treatment vs control.

    >>> a = analyze_metric([SampleStats.from_proportion(5000, 500),
    ...                     SampleStats.from_proportion(5000, 580)], "binomial")
    >>> v = variation_json(a.variations[0])
    >>> v["users"], round(v["relative"], 2), v["significant"]
    (5000, 0.16, True)
    """
    return {
        "variation": v.name,
        "users": int(v.n),
        "mean": num(v.mean),
        **lift_json(v.lift),
        "adjusted_p_value": num(v.adjusted_p_value),
        "significant": v.significant,
        "better": v.better,
        "chance_to_win": num(v.bayes.chance_to_win),
        "risk": num(v.bayes.risk),
    }


def _cuped_json(ctx: Context, metric: MetricSpec, i: int, sums: Sums) -> dict[str, Any]:
    """θ and the variance reduction of CUPED vs the unadjusted comparison, per treatment."""
    stats = stats_for(metric, i, sums)
    paired = [s for s in stats if isinstance(s, PairedStats)]
    c = ctx.spec.control
    out = []
    for t in range(len(stats)):
        if t == c:
            continue
        with np.errstate(all="ignore"):
            (et, ec), theta = cuped_adjust([paired[t], paired[c]])
            raw = estimate(paired[t].x, metric.type), estimate(paired[c].x, metric.type)
            adjusted_var = float(et.variance) + float(ec.variance)
            raw_var = float(raw[0].variance) + float(raw[1].variance)
        out.append(
            {
                "variation": ctx.names[t],
                "theta": num(theta),
                "variance_reduction": num(1.0 - adjusted_var / raw_var),
            }
        )
    return {
        "pre_period_days": metric.cuped.pre_period_days if metric.cuped else None,
        "by_variation": out,
    }


REGRESSION_COV_TYPE = "HC1"


def regression_method(spec: ExperimentSpec) -> str:
    """How the regression-adjusted effects were computed, for the report.

    >>> from dataclasses import replace
    >>> from tailorkit.measure.analysis.examples import example_spec
    >>> regression_method(replace(example_spec(), adjust_for=("device", "weekday")))
    'regression adjustment (OLS, HC1) for device, weekday'
    """
    return f"regression adjustment (OLS, {REGRESSION_COV_TYPE}) for {', '.join(spec.adjust_for)}"


def _regression_json(ctx: Context, i: int, g: Groups) -> dict[str, Any]:
    """Treatment effects of metric ``i`` adjusted for the experiment's covariates.

    The query's groups are cells (variation × covariate levels, split further
    by day and segment mask, which leaves the normal equations unchanged).
    """
    spec = ctx.spec
    levels = [g.weekdays() if c == "weekday" else g.levels[f"cov_{c}"] for c in spec.adjust_for]
    with np.errstate(all="ignore"):
        effects = regression_adjustment_cells(
            g.variation,
            levels,
            g.columns["n"],
            g.columns[f"x{i}"],
            g.columns[f"xx{i}"],
            ctx.names,
            control=spec.control,
            cov_type=REGRESSION_COV_TYPE,
            alpha=spec.alpha,
        )
    return {
        "method": regression_method(spec),
        "covariates": list(spec.adjust_for),
        "cov_type": REGRESSION_COV_TYPE,
        "by_variation": [
            {
                "variation": e.variation,
                "absolute": num(e.effect),
                "se": num(e.se),
                "absolute_ci": _ci(e.ci),
                "p_value": num(e.p_value),
            }
            for e in effects
        ],
    }


def _prior_json(metric: MetricSpec) -> dict[str, Any]:
    """The Bayesian prior in use (the engine's default when none is configured)."""
    if metric.type == "binomial":
        b = metric.prior if isinstance(metric.prior, BetaPrior) else BetaPrior()
        return {"distribution": "beta", "alpha": b.alpha, "beta": b.beta}
    gp = metric.prior if isinstance(metric.prior, GaussianPrior) else GaussianPrior()
    sd = num(np.sqrt(gp.variance))
    return {"distribution": "normal", "mean": gp.mean, "sd": sd, "scale": gp.scale}


def metric_json(
    ctx: Context, metric: MetricSpec, i: int, a: MetricAnalysis | None, g: Groups
) -> dict[str, Any]:
    """One metric's overall result.

    >>> from tailorkit.measure.analysis.examples import example_spec, example_table
    >>> spec, g = example_spec(), Groups.from_arrow(example_table(), 2)
    >>> ctx = Context(spec, ["control", "new"])
    >>> m = metric_json(ctx, spec.metrics[1], 1, ctx.analyze(spec.metrics[1], 1, g.pooled), g)
    >>> m["key"], round(m["cuped"]["by_variation"][0]["variance_reduction"], 2)
    ('revenue', 0.61)
    """
    out: dict[str, Any] = {
        "key": metric.key,
        "type": metric.type,
        "role": metric.role,
        "higher_is_better": metric.higher_is_better,
        "window_hours": metric.window_hours,
        "winsorize_cap": num(g.columns[f"cap{i}"].max()) if f"cap{i}" in g.columns else None,
        "prior": _prior_json(metric),
    }
    if a is None:
        return {**out, "error": "not enough data in every variation"}
    out["control"] = {
        "variation": a.control,
        "users": int(a.control_n),
        "mean": num(a.control_mean),
    }
    out["variations"] = [variation_json(v) for v in a.variations]
    out["correction"] = a.correction
    if metric.cuped is not None:
        out["cuped"] = _cuped_json(ctx, metric, i, g.pooled)
    if ctx.spec.adjust_for and metric.type != "ratio":
        out["regression_adjustment"] = _regression_json(ctx, i, g)
    return out


# -- health and recommendation ---------------------------------------------------------


def weights_of(spec: ExperimentSpec, k: int) -> list[float]:
    """Configured weights (equal when none are configured), normalised to sum 1.

    >>> from tailorkit.measure.analysis.examples import example_spec
    >>> weights_of(example_spec(), 3)
    [0.3333333333333333, 0.3333333333333333, 0.3333333333333333]
    """
    w = list(spec.weights) if spec.weights is not None else [1.0] * k
    total = sum(w)
    return [x / total for x in w]


def _guardrail_checks(ctx: Context, guardrails: Sequence[MetricAnalysis]) -> list[HealthCheck]:
    checks = []
    for g in guardrails:
        for v in g.variations:
            r = guardrail_check(v.lift, g.higher_is_better, ctx.spec.guardrail_margin)
            checks.append(
                HealthCheck(f"guardrail:{g.metric}", r.status != "harm", f"{v.name}: {r.message}")
            )
    return checks


def _users_check(g: Groups) -> list[HealthCheck]:
    checks = []
    if g.n_flagged:
        checks.append(
            HealthCheck(
                "excluded_users",
                True,
                f"{g.n_flagged} exposed users flagged as bots or rate outliers were excluded.",
            )
        )
    if g.n_unknown_variation:
        checks.append(
            HealthCheck(
                "unknown_variation",
                False,
                f"{g.n_unknown_variation} users were exposed to a variation the experiment "
                "does not define; they were left out.",
            )
        )
    return checks


@dataclass(frozen=True)
class Overall:
    """The overall analyses by metric key (``None``: not enough data)."""

    by_key: dict[str, MetricAnalysis | None]

    @classmethod
    def uncorrected(cls, ctx: Context, g: Groups) -> Overall:
        """Every metric's analysis with raw p-values (``correction`` none)."""
        return cls(
            {m.key: ctx.analyze(m, i, g.pooled, "none") for i, m in enumerate(ctx.spec.metrics)}
        )

    @classmethod
    def compute(cls, ctx: Context, g: Groups) -> Overall:
        """Corrected across variations × metrics alone (no segments in the family)."""
        return cls.uncorrected(ctx, g).corrected(ctx, ())[0]

    def corrected(self, ctx: Context, others: Sequence[float]) -> tuple[Overall, list[float]]:
        """Primary and secondary metrics corrected as one family with the p-values ``others``.

        Guardrails keep their raw p-values: a correction would make harm
        harder to detect.
        """
        goals = {
            m.key: a
            for m in ctx.spec.metrics
            if m.role != "guardrail" and (a := self.by_key[m.key]) is not None
        }
        done, rest = correct_jointly(list(goals.values()), others, ctx.spec.correction)
        return Overall({**self.by_key, **dict(zip(goals, done, strict=True))}), rest

    def guardrails(self, spec: ExperimentSpec) -> list[MetricAnalysis]:
        found = [self.by_key[m.key] for m in spec.metrics if m.role == "guardrail"]
        return [a for a in found if a is not None]


def health_and_recommendation(
    ctx: Context, g: Groups, overall: Overall, segment_notes: Sequence[str]
) -> tuple[list[HealthCheck], dict[str, Any], dict[str, Any]]:
    """Health checks, the SRM result and the recommendation.

    >>> from tailorkit.measure.analysis.examples import example_spec, example_table
    >>> ctx, g = Context(example_spec(), ["a", "b"]), Groups.from_arrow(example_table(), 2)
    >>> checks, srm, rec = health_and_recommendation(ctx, g, Overall.compute(ctx, g), [])
    >>> [c.name for c in checks], srm["flagged"], rec["action"]
    (['sample_ratio_mismatch', 'multiple_exposures', 'excluded_users'], False, 'ship')
    """
    spec = ctx.spec
    users = g.pooled("n")
    srm = srm_check(users, weights_of(spec, len(users))) if users.sum() > 0 else None
    primary = overall.by_key[spec.primary.key]
    conversions = g.pooled(f"x{spec.metrics.index(spec.primary)}").tolist()
    minimum = minimum_data_checks(
        users.tolist(), conversions if spec.primary.type == "binomial" else None, spec.min_users
    )
    guard = overall.guardrails(spec)
    checks = [srm.as_check()] if srm else []
    checks.append(multiple_exposure_check(g.n_multi, int(users.sum()) + g.n_multi))
    checks += _users_check(g) + minimum + _guardrail_checks(ctx, guard)
    if primary is None:
        r = Recommendation(
            "keep_running",
            "Not enough data yet: every variation needs users "
            "(and the primary metric some variance) before it can be compared.",
        )
    else:
        r = recommend(primary, guard, srm, spec.planned_per_variation, minimum)
    reason = " ".join([r.reason, *segment_notes])
    rec = {"action": r.action, "variation": r.variation, "reason": reason}
    return checks, _srm_json(srm), rec


def _srm_json(srm: SrmResult | None) -> dict[str, Any]:
    if srm is None:
        return {}
    return {
        "p_value": num(srm.p_value),
        "flagged": srm.flagged,
        "observed": list(srm.observed),
        "expected": [round(e, 1) for e in srm.expected],
        "threshold": srm.threshold,
    }
