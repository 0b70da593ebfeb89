"""Experiment results over HTTP (admin key).

* ``GET /v1/admin/experiments``: the experiments defined in ``features.yaml``
  (key, name, metrics, segments);
* ``GET /v1/admin/experiments/{key}/results``: the analysis report, the same
  document as ``tailorkit analyze KEY --json`` (``at``: as of an ISO-8601
  instant; ``format=html``: the self-contained HTML report).

The definitions are the server's current ones (reloaded or replaced through
``/v1/admin/features``). The analysis runs on its own warehouse connection,
so event ingestion is not blocked while it runs (an in-memory DuckDB, which
cannot be shared between connections, is used directly).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from tailorkit.cli.segments import parse_instant
from tailorkit.measure.analysis import analyze_experiment
from tailorkit.measure.analysis.html import render_html
from tailorkit.project.loader import ConfigError
from tailorkit.server.app import Admin, AppState
from tailorkit.store.warehouse import Warehouse

router = APIRouter(prefix="/v1/admin/experiments", tags=["experiments"])


def current_features(request: Request, state: AppState) -> Mapping[str, Any]:
    """The live feature definitions (the feature service's), else the project's file."""
    service = getattr(request.app.state, "features", None)
    if service is not None:
        document: Mapping[str, Any] = service.snapshot.document
        return document
    return state.project.definitions.get("features") or {}


@contextmanager
def analysis_warehouse(state: AppState) -> Iterator[Warehouse]:
    """A separate connection to the store (or the shared one for in-memory DuckDB)."""
    url = state.project.settings.store_url
    if url.rstrip("/") in ("duckdb://", "duckdb://:memory:") or state.warehouse.url != url:
        yield state.warehouse
        return
    wh = Warehouse(url)
    try:
        yield wh
    finally:
        wh.close()


@router.get("")
def list_experiments(request: Request, state: Admin) -> dict[str, Any]:
    """Experiments with analysis settings in ``features.yaml``."""
    experiments = current_features(request, state).get("experiments") or {}
    return {
        "experiments": [
            {
                "key": key,
                "name": doc.get("name", key),
                "metrics": list(doc.get("metrics", {})),
                "segments": doc.get("segments", []),
                "results": f"/v1/admin/experiments/{key}/results",
            }
            for key, doc in experiments.items()
        ]
    }


@router.get("/{key}/results", response_model=None)
def experiment_results(
    key: str,
    request: Request,
    state: Admin,
    at: str | None = None,
    format: Literal["json", "html"] = "json",
) -> dict[str, Any] | HTMLResponse:
    """Lifts with intervals, segments, cumulative results, health checks, recommendation."""
    features = current_features(request, state)
    if key not in (features.get("experiments") or {}):
        raise HTTPException(404, f"no experiment {key!r} in features.yaml experiments")
    try:
        moment = parse_instant(at) if at else None
        with analysis_warehouse(state) as wh:
            report = analyze_experiment(state.project, key, wh, moment, features)
    except (ConfigError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from exc
    if format == "html":
        return HTMLResponse(render_html(report))
    return report
