"""``tailorkit build``: train and refresh every model of a project, one versioned artifact each.

Steps, in order (each may be run alone with ``only``):

``clusters``         k-means personas over behaviour features; ids aligned with the
                     previous version; ``cluster`` score per person
``journeys``         frequent session paths, the purchase funnel per cluster,
                     next steps after the most common paths
``propensity``       LightGBM propensity to buy within N days -> ``propensity_to_buy``
``churn``            LightGBM churn risk (no activity within N days) -> ``churn_risk``
``recommendations``  popularity, ALS, TF-IDF content and hybrid; served by
                     :class:`tailorkit.learn.recommender.Recommender`

Every step runs inside :meth:`ArtifactStore.run`: it publishes a new version
only if it succeeds, so a failing step leaves the previous version served and
the other steps still run. Scores go to the warehouse table
``profile_scores`` (:mod:`tailorkit.learn.scores`).

>>> STEPS
('clusters', 'journeys', 'propensity', 'churn', 'recommendations')
>>> BuildOptions(only=("churn",)).churn.score_name
'churn_risk'

The resolved events and the cleaned, parsed events are copied once into
temporary tables, so that the steps do not re-run identity resolution, bot
detection and JSON parsing for every query.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import ibis.expr.types as ir
import pandas as pd
import yaml

from tailorkit.learn.artifacts import ArtifactStore, Run
from tailorkit.learn.data import EventSource, behaviour_features, data_range, fetch
from tailorkit.learn.data import session_steps as session_steps_expr
from tailorkit.learn.propensity import ScoreModel, TaskConfig, train_task
from tailorkit.learn.recommender import NAME as RECOMMENDATIONS
from tailorkit.learn.recommender import RecConfig, save, train_recommender
from tailorkit.learn.scores import score_rows, write_many
from tailorkit.project import Project
from tailorkit.project.loader import QualitySettings
from tailorkit.segment.clusters import ClusterConfig, ClusterModel, fit_clusters, transitions
from tailorkit.segment.journeys import collapse_repeats, encode, funnel, next_steps, prefixspan
from tailorkit.store.warehouse import Warehouse

STEPS = ("clusters", "journeys", "propensity", "churn", RECOMMENDATIONS)
MATERIALIZED = "_tk_learn_events"
RESOLVED = "_tk_learn_resolved"
#: Callback: (step, state, details) with state "start", "done" or "failed".
Progress = Callable[[str, str, dict[str, Any]], None]


@dataclass(frozen=True)
class JourneyConfig:
    """Journey mining settings."""

    min_support: float = 0.01  # share of sessions
    max_length: int = 5
    top_k: int = 50
    detail: str | None = None  # "category" adds the product category to product steps
    funnel: tuple[str, ...] = ("product_view", "add_to_cart", "checkout", "purchase")
    window_days: float = 30.0


@dataclass(frozen=True)
class BuildOptions:
    """What to build and with which settings (defaults suit an online shop)."""

    at: datetime | None = None  # "now" for the models; default: just after the last event
    only: tuple[str, ...] = ()
    cluster_window_days: float = 30.0
    clusters: ClusterConfig = field(default_factory=ClusterConfig)
    journeys: JourneyConfig = field(default_factory=JourneyConfig)
    propensity: TaskConfig = field(default_factory=lambda: TaskConfig(task="propensity"))
    churn: TaskConfig = field(default_factory=lambda: TaskConfig(task="churn"))
    recommendations: RecConfig = field(default_factory=RecConfig)
    write_scores: bool = True


@dataclass
class Context:
    """What the steps share: warehouse, parsed events, the instant, earlier results."""

    wh: Warehouse
    source: EventSource
    events: ir.Table  # source.clean(): all cleaned events, materialized
    end: datetime
    options: BuildOptions
    store: ArtifactStore
    clusters: pd.Series | None = None  # person_id -> cluster id, from this build


def materialize(wh: Warehouse, name: str, expr: ir.Table) -> ir.Table:
    """``expr`` as a temporary table (falls back to the expression)."""
    with wh.lock:
        try:
            return wh.con.create_table(name, expr, temp=True, overwrite=True)
        except Exception:  # a backend without temporary tables: query the expression
            return expr


def event_source(wh: Warehouse, quality: QualitySettings) -> EventSource:
    """An event source over temporary copies: resolved events once, cleaned events once."""
    resolved = materialize(wh, RESOLVED, wh.resolved_events())
    source = EventSource(wh, quality, resolved=resolved)
    source.remember(None, materialize(wh, MATERIALIZED, source.clean()))
    return source


def build(project: Project, options: BuildOptions | None = None,
          progress: Progress | None = None) -> dict[str, Any]:  # fmt: skip
    """Run the steps; returns a JSON-ready summary (one entry per step)."""
    options = options or BuildOptions()
    steps = options.only or STEPS
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise ValueError(f"unknown build steps {unknown}; choose from {list(STEPS)}")
    wh = Warehouse(project.settings.store_url)
    try:
        return _build(project, wh, options, steps, progress or (lambda *_: None))
    finally:
        wh.close()


def _build(project: Project, wh: Warehouse, options: BuildOptions, steps: tuple[str, ...],
           progress: Progress) -> dict[str, Any]:  # fmt: skip
    started = time.perf_counter()
    source = event_source(wh, project.settings.quality)
    span = data_range(wh, source.clean())
    if span is None:
        raise ValueError("the warehouse has no behavioural events to learn from")
    end = options.at or span[1] + timedelta(microseconds=1)
    store = ArtifactStore.of_project(project.root)
    ctx = Context(wh, source, source.clean(), end, options, store)
    results: dict[str, Any] = {}
    for step in STEPS:
        if step not in steps:
            continue
        progress(step, "start", {})
        results[step] = _run_step(ctx, step)
        progress(step, "done" if results[step]["status"] == "ok" else "failed", results[step])
    return {
        "project": str(project.root),
        "as_of": end.isoformat(),
        "data_from": span[0].isoformat(),
        "steps": results,
        "failed": [s for s, r in results.items() if r["status"] != "ok"],
        "seconds": round(time.perf_counter() - started, 2),
    }


def _run_step(ctx: Context, step: str) -> dict[str, Any]:
    try:
        with ctx.store.run(step) as run:
            summary = RUNNERS[step](ctx, run)
            run.metrics.setdefault("summary", summary)
        return {"status": "ok", "version": run.version, **summary}
    except Exception as exc:
        return {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "serving": ctx.store.current(step),
        }


# -- steps -----------------------------------------------------------------------------


def _clusters(ctx: Context, run: Run) -> dict[str, Any]:
    start = ctx.end - timedelta(days=ctx.options.cluster_window_days)
    frame = fetch(ctx.wh, behaviour_features(ctx.events, ctx.end, start)).set_index("person_id")
    previous = _previous_clusters(ctx)
    model = fit_clusters(frame, ctx.options.clusters, previous)
    labels = pd.Series(model.assign(frame), index=frame.index, name="cluster")
    ctx.clusters = labels
    (run.path / "model.json").write_text(json.dumps(model.to_dict(), indent=1))
    (run.path / "segments.yaml").write_text(yaml.safe_dump(model.segments_document()))
    before = {p: int(v["cluster"]) for p, v in score_rows(ctx.wh, ["cluster"]).items()}
    run.metrics = {
        "persons": len(frame),
        "method": model.method,
        "k": model.k,
        "selection": model.selection,
        "personas": [vars(p) for p in model.personas],
        "alignment": model.alignment,
        "transitions": transitions(before, {str(k): int(v) for k, v in labels.items()})
        if before
        else None,
    }
    if ctx.options.write_scores:
        write_many(ctx.wh, {"cluster": labels.astype(float)}, f"clusters@{run.version}")
    names = {p.id: p.name for p in model.personas}
    return {"persons": len(frame), "k": model.k, "personas": names}


def _previous_clusters(ctx: Context) -> ClusterModel | None:
    try:
        doc = json.loads((ctx.store.path("clusters") / "model.json").read_text())
        model = ClusterModel.from_dict(doc)
    except (KeyError, FileNotFoundError, ValueError, TypeError):
        return None
    same = model.preprocessor.columns == list(ctx.options.clusters.features)
    return model if same and model.method == ctx.options.clusters.method else None


def _journeys(ctx: Context, run: Run) -> dict[str, Any]:
    config = ctx.options.journeys
    start = ctx.end - timedelta(days=config.window_days)
    sessions = fetch(ctx.wh, session_steps_expr(ctx.events, start, ctx.end, config.detail))
    if sessions.empty:
        raise ValueError("no sessions in the journey window")
    steps = [collapse_repeats(s) for s in sessions.steps]
    groups = _session_groups(ctx, sessions)
    db = encode(steps, groups)
    patterns = prefixspan(db, config.min_support, config.max_length, config.top_k)
    paths = [p.steps for p in patterns if len(p.steps) >= 2][:10]
    doc = {
        "sessions": db.total,
        "distinct_sequences": int(db.starts.size),
        "patterns": [p.to_dict(db.total) for p in patterns],
        "funnel": {"steps": list(config.funnel), "by_cluster": funnel(db, config.funnel)},
        "next_steps": [{"path": list(p), "next": next_steps(db, p)} for p in paths],
    }
    (run.path / "journeys.json").write_text(json.dumps(doc, indent=1, default=str))
    run.metrics = {k: v for k, v in doc.items() if k != "next_steps"}
    last_step = funnel(db, config.funnel)["all"][-1]
    return {
        "sessions": db.total,
        "patterns": len(patterns),
        "funnel_conversion": last_step["from_start"],
    }


def _session_groups(ctx: Context, sessions: pd.DataFrame) -> list[str]:
    """Cluster of each session's person (from this build, else the stored scores)."""
    labels = ctx.clusters
    if labels is None:
        stored = score_rows(ctx.wh, ["cluster"])
        labels = pd.Series({p: v["cluster"] for p, v in stored.items()}, dtype=float)
    mapped = sessions.person_id.map(labels)
    return [f"cluster_{int(v)}" if pd.notna(v) else "unclustered" for v in mapped]


def _task(ctx: Context, run: Run, config: TaskConfig) -> dict[str, Any]:
    result = train_task(ctx.source, ctx.end, config)
    result.model.save(run.path)
    run.metrics = result.report
    if ctx.options.write_scores:
        write_many(ctx.wh, {config.score_name: result.scores}, f"{config.task}@{run.version}")
    cv = result.report["cross_validation"]
    return {
        "persons": result.report["rows"],
        "scored": len(result.scores),
        "auc": cv["lightgbm"].get("auc"),
        "auc_logistic": cv["logistic"].get("auc"),
        "top_features": list(result.report["importance"])[:3],
    }


def _recommendations(ctx: Context, run: Run) -> dict[str, Any]:
    result = train_recommender(ctx.source, ctx.end, ctx.options.recommendations)
    save(result, run.path)
    run.metrics = result.report
    warm = {row["model"]: row["ndcg"] for row in result.report["warm"]}
    return {"users": result.report["served_users"], "ndcg@k": warm}


RUNNERS: dict[str, Callable[[Context, Run], dict[str, Any]]] = {
    "clusters": _clusters,
    "journeys": _journeys,
    "propensity": lambda ctx, run: _task(ctx, run, ctx.options.propensity),
    "churn": lambda ctx, run: _task(ctx, run, ctx.options.churn),
    RECOMMENDATIONS: _recommendations,
}


def load_score_model(store: ArtifactStore, step: str) -> ScoreModel:
    """The served propensity or churn model (e.g. to explain one person's score)."""
    return ScoreModel.load(store.path(step))
