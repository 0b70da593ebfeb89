"""The analysis pipeline: project + warehouse → experiment report.

:func:`analyze_experiment` reads the experiment's definition from
``features.yaml``, runs one Ibis query for the sufficient statistics
(:mod:`~tailorkit.measure.analysis.query`), and turns them into the report
(:mod:`~tailorkit.measure.analysis.report`): overall results per metric,
per-segment results, cumulative results by day, health checks and a
recommendation. The same dict is printed by ``tailorkit analyze --json``,
served by ``GET /v1/admin/experiments/{key}/results`` and rendered by
``tailorkit analyze --html``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from tailorkit.measure.analysis.breakdown import correct_families, cumulative_json, segments_json
from tailorkit.measure.analysis.factorial import factorial_json
from tailorkit.measure.analysis.groups import Groups
from tailorkit.measure.analysis.query import sufficient_stats
from tailorkit.measure.analysis.report import (
    Context,
    health_and_recommendation,
    metric_json,
    weights_of,
)
from tailorkit.measure.analysis.spec import ExperimentSpec, parse_experiment
from tailorkit.project import Project
from tailorkit.project.loader import QualitySettings
from tailorkit.store.warehouse import Warehouse


def load_spec(
    project: Project, key: str, features: Mapping[str, Any] | None = None
) -> ExperimentSpec:
    """The experiment ``key`` of a project (raises ``ConfigError``).

    ``features`` replaces the project's ``features.yaml`` document (the
    server passes its current, possibly reloaded, definitions).

    >>> from pathlib import Path
    >>> from tailorkit.measure.analysis.examples import FEATURES
    >>> from tailorkit.project.loader import Settings
    >>> defs = {"features": FEATURES, "segments": {"segments": {"mobile": {}}}}
    >>> project = Project(Path("."), Settings("duckdb://:memory:"), defs)
    >>> load_spec(project, "checkout").name
    'New checkout'
    """
    segments = (project.definitions.get("segments") or {}).get("segments") or {}
    doc = features if features is not None else project.definitions.get("features") or {}
    return parse_experiment(doc, key, set(segments))


def analysis_end(spec: ExperimentSpec, at: datetime | None) -> datetime:
    """The instant the analysis looks at: ``at`` (default now), no later than ``spec.end``.

    >>> from tailorkit.measure.analysis.examples import example_spec
    >>> analysis_end(example_spec(), datetime(2026, 3, 3, tzinfo=UTC)).isoformat()
    '2026-03-03T00:00:00+00:00'
    """
    moment = at or datetime.now(UTC)
    return min(moment, spec.end) if spec.end is not None else moment


def n_variations(spec: ExperimentSpec, table: pa.Table) -> int:
    """Configured number of variations, else the highest observed index + 1 (at least 2).

    >>> from tailorkit.measure.analysis.examples import example_spec, example_table
    >>> n_variations(example_spec(), example_table())
    2
    """
    if spec.factors:
        return math.prod(n for _, n in spec.factors)
    for configured in (spec.weights, spec.variations):
        if configured is not None:
            return len(configured)
    observed = table.column("variation").to_pylist() if table.num_rows else []
    return max(2, spec.control + 1, *(int(v) + 1 for v in observed if v is not None))


def variation_names(spec: ExperimentSpec, g: Groups, k: int) -> list[str]:
    """Configured names, else the logged variation keys, else the indexes.

    >>> from dataclasses import replace
    >>> from tailorkit.measure.analysis.examples import example_spec, example_table
    >>> spec = replace(example_spec(), variations=None)
    >>> variation_names(spec, Groups.from_arrow(example_table(), 2), 2)
    ['0', '1']
    """
    if spec.variations is not None:
        return list(spec.variations)
    names = [g.variation_keys.get(v, str(v)) for v in range(k)]
    # two variations logged with the same key must stay distinguishable
    return names if len(set(names)) == k else [f"{v}: {n}" for v, n in enumerate(names)]


def _settings(
    spec: ExperimentSpec, quality: QualitySettings, family: dict[str, Any]
) -> dict[str, Any]:
    return {
        "alpha": spec.alpha,
        "alternative": spec.alternative,
        "correction": spec.correction,
        "correction_family": spec.correction_family,
        "correction_family_sizes": family["sizes"],
        "correction_description": family["description"],
        "sequential": spec.sequential,
        "sequential_tuning": spec.sequential_tuning if spec.sequential else None,
        "planned_users_per_variation": spec.planned_per_variation,
        "min_users": spec.min_users,
        "guardrail_margin": spec.guardrail_margin,
        "exclude_flagged_users": quality.exclude_flagged_users,
        "adjust_for": list(spec.adjust_for),
    }


def _segment_notes(segments: dict[str, Any] | None) -> list[str]:
    notes = []
    for h in (segments or {}).get("heterogeneity", []):
        if h["sign_disagreement"]:
            notes.append(
                f"Segments disagree on {h['metric']} for {h['variation']}: better in "
                f"{', '.join(h['better_segments'])}, worse in "
                f"{', '.join(h['worse_segments'])} — consider personalizing."
            )
    return notes


def build_report(
    spec: ExperimentSpec, table: pa.Table, as_of: datetime, quality: QualitySettings
) -> dict[str, Any]:
    """The report dict from the query's sufficient statistics (no I/O).

    >>> from tailorkit.measure.analysis.examples import AS_OF, example_spec, example_table
    >>> r = build_report(example_spec(), example_table(), AS_OF, QualitySettings())
    >>> users = r["users"]
    >>> r["recommendation"]["action"], users["multiple_exposures"], users["excluded_flagged"]
    ('ship', 7, 3)
    """
    k = n_variations(spec, table)
    g = Groups.from_arrow(table, k)
    ctx = Context(spec, variation_names(spec, g, k))
    corrected = correct_families(ctx, g)
    overall = corrected.overall
    segments = segments_json(ctx, g, corrected) if spec.segments else None
    checks, srm, rec = health_and_recommendation(ctx, g, overall, _segment_notes(segments))
    users = g.pooled("n")
    weights = weights_of(spec, k)
    return {
        "experiment": spec.key,
        "name": spec.name,
        "as_of": as_of.isoformat(),
        "start": spec.start.isoformat() if spec.start else None,
        "variations": [
            {
                "index": v,
                "name": ctx.names[v],
                "weight": weights[v],
                "users": int(users[v]),
                "control": v == spec.control,
            }
            for v in range(k)
        ],
        "users": {
            "analysed": int(users.sum()),
            "multiple_exposures": g.n_multi,
            "excluded_flagged": g.n_flagged,
            "unknown_variation": g.n_unknown_variation,
        },
        "settings": _settings(spec, quality, corrected.family),
        "metrics": [
            metric_json(ctx, m, i, overall.by_key[m.key], g) for i, m in enumerate(spec.metrics)
        ],
        "segments": segments,
        "factorial": factorial_json(ctx, g),
        "cumulative": cumulative_json(ctx, g),
        "srm": srm,
        "health": [{"check": c.name, "ok": c.ok, "message": c.message} for c in checks],
        "recommendation": rec,
    }


def analyze_experiment(
    project: Project,
    key: str,
    warehouse: Warehouse | None = None,
    at: datetime | None = None,
    features: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Analyse experiment ``key`` of ``project`` as of ``at`` (default now).

    Opens the project's warehouse unless one is given (and closes only what
    it opened); ``features`` as for :func:`load_spec`.

    >>> from pathlib import Path
    >>> from tailorkit.measure.analysis.examples import FEATURES
    >>> from tailorkit.project.loader import Settings
    >>> defs = {"features": FEATURES, "segments": {"segments": {"mobile": {}}}}
    >>> project = Project(Path("."), Settings("duckdb://:memory:"), defs)
    >>> r = analyze_experiment(project, "checkout", Warehouse("duckdb://:memory:"))
    >>> r["users"]["analysed"], r["recommendation"]["action"]
    (0, 'keep_running')
    """
    spec = load_spec(project, key, features)
    end = analysis_end(spec, at)
    quality = project.settings.quality
    wh = warehouse or Warehouse(project.settings.store_url)
    try:
        table = sufficient_stats(wh, spec, quality, end)
    finally:
        if warehouse is None:
            wh.close()
    return build_report(spec, table, end, quality)
