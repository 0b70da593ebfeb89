"""Factorial experiments in the report: main effects and two-way interactions.

An experiment with ``factors`` (e.g. ``{headline: 2, image: 2}``) assigns
every variation to one cell of the grid: variation ``v`` is the ``v``-th
combination of levels with the first factor varying slowest (2 × 2:
``0 = (0, 0)``, ``1 = (0, 1)``, ``2 = (1, 0)``, ``3 = (1, 1)``; variation 0
is every factor at its baseline). Per metric,
:func:`tailorkit.measure.stats.factorial_effects` estimates each main effect
and two-way interaction from the per-variation sufficient statistics
(CUPED-adjusted where the metric has CUPED), tested with Welch t (plain
means) or z; the p-values of all effects × metrics are corrected as one
family with the experiment's ``correction``.
"""

from __future__ import annotations

import itertools
from typing import Any

from tailorkit.measure.analysis.groups import Groups
from tailorkit.measure.analysis.report import Context, num, stats_for
from tailorkit.measure.stats import (
    Estimate,
    FactorialEffect,
    PairedStats,
    adjust_p_values,
    cuped_adjust,
    estimate,
    factorial_effects,
)
from tailorkit.measure.stats.multiple import CORRECTION_NAMES


def cells(levels: list[int]) -> list[tuple[int, ...]]:
    """The cell of every variation index (first factor varying slowest).

    >>> cells([2, 3])
    [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    """
    return list(itertools.product(*(range(n) for n in levels)))


def _effects(ctx: Context, i: int, g: Groups) -> list[FactorialEffect] | None:
    metric, spec = ctx.spec.metrics[i], ctx.spec
    stats = stats_for(metric, i, g.pooled)
    if min(float(s.n) for s in stats) < 2:
        return None
    ests: list[Estimate]
    if metric.cuped is not None:
        ests = cuped_adjust([s for s in stats if isinstance(s, PairedStats)])[0]
    else:
        ests = [estimate(s, metric.type) for s in stats]
    grid = cells([n for _, n in spec.factors])
    names = [name for name, _ in spec.factors]
    use_t = metric.type == "mean" and metric.cuped is None
    try:
        return factorial_effects(dict(zip(grid, ests, strict=True)), names, metric.type,
                                 spec.alpha, use_t)  # fmt: skip
    except (ValueError, ZeroDivisionError):
        return None  # no variance in some cell


def factorial_json(ctx: Context, g: Groups) -> dict[str, Any] | None:
    """Main effects and interactions per metric, or ``None`` for a plain A/B/n experiment.

    >>> from dataclasses import replace
    >>> from tailorkit.measure.analysis.examples import example_spec, example_table
    >>> spec = replace(example_spec(), factors=(("a", 2),), variations=None, weights=None)
    >>> out = factorial_json(Context(spec, ["0", "1"]), Groups.from_arrow(example_table(), 2))
    >>> [(e["name"], round(e["estimate"], 2)) for e in out["metrics"][0]["effects"]]
    [('a', 0.03)]
    """
    spec = ctx.spec
    if not spec.factors:
        return None
    found = {m.key: _effects(ctx, i, g) for i, m in enumerate(spec.metrics)}
    raw = [float(e.p_value) for effects in found.values() for e in effects or []]
    adjusted = iter(adjust_p_values(raw, spec.correction).tolist() if raw else [])
    metrics: list[dict[str, Any]] = []
    for m in spec.metrics:
        effects = found[m.key]
        if effects is None:
            metrics.append({"metric": m.key, "error": "not enough data in every cell"})
            continue
        rows: list[dict[str, Any]] = []
        for e in effects:
            p = float(next(adjusted))
            rows.append(
                {
                    "name": e.name,
                    "kind": e.kind,
                    "estimate": num(e.estimate),
                    "ci": [num(e.ci.lower), num(e.ci.upper)],
                    "p_value": num(e.p_value),
                    "adjusted_p_value": num(p),
                    "significant": p <= spec.alpha,
                }
            )
        metrics.append({"metric": m.key, "effects": rows})
    grid = cells([n for _, n in spec.factors])
    return {
        "factors": [{"name": name, "levels": n} for name, n in spec.factors],
        "cells": {ctx.names[v]: list(cell) for v, cell in enumerate(grid)},
        "correction_description": f"{CORRECTION_NAMES[spec.correction]}, one family of "
        f"{len(raw)} effects across metrics",
        "metrics": metrics,
    }
