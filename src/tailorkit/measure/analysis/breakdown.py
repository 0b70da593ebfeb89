"""Per-segment (heterogeneous) effects, the correction family, and cumulative results by day."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tailorkit.measure.analysis.groups import Groups
from tailorkit.measure.analysis.report import Context, Overall, lift_json, num, stats_for
from tailorkit.measure.analysis.spec import ExperimentSpec, MetricSpec
from tailorkit.measure.stats import (
    Estimate,
    LiftResult,
    PairedStats,
    adjust_p_values,
    cuped_adjust,
    estimate,
    lift,
    sequential_lift,
)
from tailorkit.measure.stats.multiple import CORRECTION_NAMES
from tailorkit.measure.stats.segments import cochran_q

MIN_USERS_PER_DAY_POINT = 2


@dataclass(frozen=True)
class SegmentRow:
    """One treatment vs the control on one metric within one segment."""

    segment: str
    metric: MetricSpec
    variation: str
    users: float
    control_users: float
    mean: float
    control_mean: float
    lift: LiftResult
    adjusted_p_value: float = float("nan")
    significant: bool = False

    @property
    def better(self) -> bool:
        """Whether the treatment moved the metric in the good direction."""
        diff = float(self.lift.absolute)
        return diff != 0 and (diff > 0) == self.metric.higher_is_better

    def to_json(self) -> dict[str, Any]:
        """The row of the per-segment table."""
        return {
            "segment": self.segment,
            "metric": self.metric.key,
            "variation": self.variation,
            "users": int(self.users),
            "control_users": int(self.control_users),
            "mean": num(self.mean),
            "control_mean": num(self.control_mean),
            **lift_json(self.lift),
            "adjusted_p_value": num(self.adjusted_p_value),
            "significant": self.significant,
            "better": self.better,
        }


def segment_rows(ctx: Context, g: Groups) -> list[SegmentRow]:
    """Every treatment × metric × segment with its raw p-value (see :func:`correct_families`).

    Frequentist only (the Bayesian summaries of the overall results would
    cost ~0.1 s per comparison and are not shown per segment).

    >>> from tailorkit.measure.analysis.examples import example_spec, example_table
    >>> spec = example_spec()
    >>> g = Groups.from_arrow(example_table(), 2)
    >>> rows = segment_rows(Context(spec, ["control", "new"]), g)
    >>> [(r.segment, r.metric.key, round(float(r.lift.relative), 2)) for r in rows]
    [('mobile', 'purchase', 0.2), ('mobile', 'revenue', 0.04)]
    """
    rows: list[SegmentRow] = []
    c = ctx.spec.control
    for s, segment in enumerate(ctx.spec.segments):
        for i, metric in enumerate(ctx.spec.metrics):
            stats = stats_for(metric, i, lambda col, s=s: g.pooled(col, segment=s))  # type: ignore[misc]
            for t, name in enumerate(ctx.names):
                r = ctx.compare(metric, stats[t], stats[c]) if t != c else None
                if r is not None:
                    control = estimate(stats[c], metric.type)
                    mean = float(estimate(stats[t], metric.type).mean)
                    sizes = float(stats[t].n), float(stats[c].n)
                    means = mean, float(control.mean)
                    rows.append(SegmentRow(segment, metric, name, *sizes, *means, r))
    return rows


@dataclass(frozen=True)
class Corrected:
    """The corrected overall analyses and segment rows, and how they were corrected."""

    overall: Overall
    rows: list[SegmentRow]
    family: dict[str, Any]


def _family_json(ctx: Context, sizes: dict[str, int]) -> dict[str, Any]:
    """What was corrected together, for the report ("Holm …, one family of 6 comparisons …").

    >>> from tailorkit.measure.analysis.examples import example_spec
    >>> from dataclasses import replace
    >>> spec = replace(example_spec(), segments=())
    >>> _family_json(Context(spec, ["a", "b"]), {"all": 2})["description"].split(", ")[1]
    'one family of 2 comparisons across variations × metrics; guardrails uncorrected'
    """
    spec = ctx.spec
    name = CORRECTION_NAMES[spec.correction]
    if spec.correction_family == "separate" and spec.segments:
        scope = (
            f"two families: {sizes['overall']} overall comparisons across variations × metrics, "
            f"{sizes['segments']} across variations × metrics × segments"
        )
    elif spec.segments:
        scope = (
            f"one family of {sizes['all']} comparisons across variations × metrics × segments "
            "(all users and each segment)"
        )
    else:
        n = sizes.get("all", sizes.get("overall"))
        scope = f"one family of {n} comparisons across variations × metrics"
    return {
        "method": spec.correction,
        "family": spec.correction_family,
        "sizes": sizes,
        "description": f"{name}, {scope}; guardrails uncorrected",
    }


def correct_families(ctx: Context, g: Groups) -> Corrected:
    """Overall and per-segment comparisons, corrected as the experiment's ``correction_family``.

    ``one`` (the default): the primary and secondary metrics' comparisons
    overall and in every segment form one family; ``separate``: the overall
    ones are a family and the segment breakdown another. Guardrails keep
    their raw p-values in both.

    >>> from tailorkit.measure.analysis.examples import example_spec, example_table
    >>> g = Groups.from_arrow(example_table(), 2)
    >>> out = correct_families(Context(example_spec(), ["a", "b"]), g)
    >>> out.family["sizes"], out.family["description"][:40]
    ({'all': 4}, 'Holm step-down (family-wise error rate),')
    """
    spec = ctx.spec
    raw = Overall.uncorrected(ctx, g)
    rows = segment_rows(ctx, g) if spec.segments else []
    tested = [k for k, r in enumerate(rows) if r.metric.role != "guardrail"]
    p_rows = [float(rows[k].lift.p_value) for k in tested]
    if spec.correction_family == "one":
        overall, adjusted = raw.corrected(ctx, p_rows)
        sizes = {"all": _size(overall, spec) + len(p_rows)}
    else:
        overall = raw.corrected(ctx, ())[0]
        adjusted = adjust_p_values(p_rows, spec.correction).tolist() if p_rows else []
        sizes = {"overall": _size(overall, spec), "segments": len(p_rows)}
    p_adj = [float(r.lift.p_value) for r in rows]  # guardrails: raw
    for k, p in zip(tested, adjusted, strict=True):
        p_adj[k] = p
    rows = [
        replace(r, adjusted_p_value=p, significant=bool(p <= spec.alpha))
        for r, p in zip(rows, p_adj, strict=True)
    ]
    return Corrected(overall, rows, _family_json(ctx, sizes))


def _size(overall: Overall, spec: ExperimentSpec) -> int:
    """Number of overall comparisons in the family (primary and secondary metrics with data)."""
    return sum(
        len(a.variations)
        for m in spec.metrics
        if m.role != "guardrail" and (a := overall.by_key[m.key]) is not None
    )


def _heterogeneity(ctx: Context, rows: list[SegmentRow]) -> list[dict[str, Any]]:
    """Per metric × treatment: do significant segment effects disagree? Cochran's Q."""
    out = []
    for metric in ctx.spec.metrics:
        for name in [n for k, n in enumerate(ctx.names) if k != ctx.spec.control]:
            mine = [r for r in rows if r.metric.key == metric.key and r.variation == name]
            if len(mine) < 2:
                continue
            effects = np.array([float(r.lift.absolute) for r in mine])
            ses = np.array([float(r.lift.absolute_se) for r in mine])
            with np.errstate(all="ignore"):
                q, df, p = cochran_q(effects, ses)
            better = [r.segment for r in mine if r.significant and r.better]
            worse = [r.segment for r in mine if r.significant and not r.better]
            out.append(
                {
                    "metric": metric.key,
                    "variation": name,
                    "sign_disagreement": bool(better and worse),
                    "better_segments": better,
                    "worse_segments": worse,
                    "q_statistic": num(q),
                    "q_df": df,
                    "q_p_value": num(p),
                }
            )
    return out


def segments_json(ctx: Context, g: Groups, corrected: Corrected | None = None) -> dict[str, Any]:
    """Per-segment table, the correction used, and heterogeneity summaries.

    >>> from tailorkit.measure.analysis.examples import example_spec, example_table
    >>> g = Groups.from_arrow(example_table(), 2)
    >>> out = segments_json(Context(example_spec(), ["a", "b"]), g)
    >>> out["users"], len(out["rows"])
    ({'mobile': [1000, 1000]}, 2)
    """
    done = corrected or correct_families(ctx, g)
    users = {
        seg: g.pooled("n", segment=s).astype(int).tolist()
        for s, seg in enumerate(ctx.spec.segments)
    }
    return {
        "segments": list(ctx.spec.segments),
        "users": users,
        "correction": ctx.spec.correction,
        "correction_family": ctx.spec.correction_family,
        "correction_description": done.family["description"],
        "rows": [r.to_json() for r in done.rows],
        "heterogeneity": _heterogeneity(ctx, done.rows),
    }


def _day(e: Estimate, d: int) -> Estimate:
    return Estimate(
        float(np.asarray(e.mean)[d]), float(np.asarray(e.variance)[d]), float(np.asarray(e.n)[d])
    )


def _daily_lifts(
    ctx: Context, i: int, t: int, g: Groups, valid: np.ndarray
) -> list[LiftResult | None] | LiftResult:
    """Cumulative lift of treatment ``t`` at every day: vectorized, or per day if sequential."""
    metric, spec = ctx.spec.metrics[i], ctx.spec
    stats = stats_for(metric, i, g.cumulative)
    arms = stats[t], stats[spec.control]
    if metric.cuped is not None:
        et, ec = cuped_adjust([a for a in arms if isinstance(a, PairedStats)])[0]
    else:
        et, ec = (estimate(a, metric.type) for a in arms)
    if not spec.sequential:
        use_t = metric.type == "mean" and metric.cuped is None
        return lift(et, ec, spec.alpha, spec.alternative, use_t=use_t)
    tuning = spec.sequential_tuning
    return [
        sequential_lift(_day(et, d), _day(ec, d), spec.alpha, spec.alternative, tuning)
        if valid[d]
        else None
        for d in range(len(g.days))
    ]


def _series(values: Any, valid: np.ndarray) -> list[float | None]:
    arr = np.broadcast_to(np.asarray(values, dtype=np.float64), valid.shape)
    return [num(x) if ok else None for x, ok in zip(arr.tolist(), valid.tolist(), strict=True)]


def _track(
    r: list[LiftResult | None] | LiftResult, valid: np.ndarray
) -> dict[str, list[float | None]]:
    """The day-by-day series of one treatment's lift (``None`` where data are missing)."""

    def col(get: Callable[[LiftResult], Any]) -> Any:
        if isinstance(r, list):
            return [get(x) if x is not None else np.nan for x in r]
        return get(r)

    return {
        "relative": _series(col(lambda x: x.relative), valid),
        "relative_lower": _series(col(lambda x: x.relative_ci.lower), valid),
        "relative_upper": _series(col(lambda x: x.relative_ci.upper), valid),
        "absolute": _series(col(lambda x: x.absolute), valid),
        "absolute_lower": _series(col(lambda x: x.absolute_ci.lower), valid),
        "absolute_upper": _series(col(lambda x: x.absolute_ci.upper), valid),
        "p_value": _series(col(lambda x: x.p_value), valid),
    }


def cumulative_json(ctx: Context, g: Groups) -> dict[str, Any]:
    """Results of the users exposed up to each day (each with their full window).

    >>> from tailorkit.measure.analysis.examples import example_spec, example_table
    >>> g = Groups.from_arrow(example_table(), 2)
    >>> out = cumulative_json(Context(example_spec(), ["a", "b"]), g)
    >>> out["days"], out["users"]["b"], round(out["metrics"]["purchase"]["b"]["relative"][-1], 2)
    (['2026-03-01', '2026-03-02'], [1000, 2000], 0.3)
    """
    n = g.cumulative("n") if g.days else np.zeros((len(ctx.names), 0))
    c = ctx.spec.control
    out: dict[str, Any] = {
        "days": [d.isoformat() for d in g.days],
        "users": {name: n[v].astype(int).tolist() for v, name in enumerate(ctx.names)},
        "metrics": {},
    }
    if not g.days:
        return out
    for i, metric in enumerate(ctx.spec.metrics):
        per: dict[str, Any] = {}
        for t, name in enumerate(ctx.names):
            if t == c:
                continue
            valid = (n[t] >= MIN_USERS_PER_DAY_POINT) & (n[c] >= MIN_USERS_PER_DAY_POINT)
            with np.errstate(all="ignore"):
                per[name] = _track(_daily_lifts(ctx, i, t, g, valid), valid)
        out["metrics"][metric.key] = per
    return out
