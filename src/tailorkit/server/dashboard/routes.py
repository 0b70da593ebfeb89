"""Dashboard pages: server-rendered Jinja2 (autoescaped) with inline SVG charts."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tailorkit.learn.background import training_status
from tailorkit.server.app import AppState
from tailorkit.server.auth import Scope
from tailorkit.server.dashboard import data, svg
from tailorkit.server.dashboard.auth import COOKIE, SESSION_SECONDS, require_login, sessions_of

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
PAGES = (
    ("overview", "/"),
    ("segments", "/dashboard/segments"),
    ("experiments", "/dashboard/experiments"),
    ("bandits", "/dashboard/bandits"),
    ("personas", "/dashboard/personas"),
    ("journeys", "/dashboard/journeys"),
    ("recommendations", "/dashboard/recommendations"),
    ("profile", "/dashboard/profile"),
)


def pct(value: float | None) -> str:
    """A share as a signed percentage ('' when missing)."""
    return "" if value is None else f"{value:+.2%}"


def lift_rows(metric: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    """(variation, relative lift, lower, upper) rows of one metric, for the interval chart."""
    rows = []
    for v in metric.get("variations", []):
        ci = v.get("relative_ci") or [None, None]
        if v.get("relative") is not None and None not in ci:
            rows.append((v["variation"], v["relative"], ci[0], ci[1]))
    return rows


def cumulative(metric: dict[str, Any]) -> dict[str, list[float | None]]:
    """Cumulative relative lift per variation."""
    return {name: list(v.get("relative", [])) for name, v in metric.items()}


def arm_map(arms: list[str], probabilities: list[float] | None) -> dict[str, float]:
    """Arm name to probability."""
    return dict(zip(arms, probabilities or [], strict=False))


def posterior_rows(report: dict[str, Any], segment: str) -> list[tuple[str, float, float, float]]:
    """(arm, posterior mean, lower, upper) rows of one segment, for the interval chart."""
    return [
        (r["arm"], r["mean"], r["ci_low"], r["ci_high"])
        for r in report["posteriors"]
        if r["segment"] == segment
    ]


def reward_series(report: dict[str, Any]) -> dict[str, list[float]]:
    """Cumulative reward of the bandit and the uniform estimate with its interval."""
    c = report["reward"]["cumulative"]
    return {
        "bandit (observed)": c["bandit"],
        "uniform (IPS estimate)": c["uniform"],
        "uniform, lower": c["uniform_low"],
        "uniform, upper": c["uniform_high"],
    }


TEMPLATES.globals.update(
    pct=pct,
    lift_rows=lift_rows,
    cumulative=cumulative,
    arm_map=arm_map,
    posterior_rows=posterior_rows,
    reward_series=reward_series,
    experiment_status=data.status,
)
router = APIRouter(tags=["dashboard"], include_in_schema=False)
LoggedIn = Annotated[None, Depends(require_login)]
_CACHE = data.Cache()


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.tk
    return state


def render(name: str, page: str, status: int = 200, **values: Any) -> HTMLResponse:
    """A page of the dashboard (``page`` highlights its menu entry)."""
    html = TEMPLATES.get_template(name).render(pages=PAGES, page=page, svg=svg, **values)
    return HTMLResponse(html, status_code=status)


@router.get("/login")
def login_form() -> HTMLResponse:
    """The login form."""
    return render("login.html", "login")


@router.post("/login")
async def login(request: Request) -> Response:
    """Admin key → session cookie; ingest and unknown keys are refused."""
    form = parse_qs((await request.body()).decode(errors="replace"))
    key = (form.get("key") or [""])[0].strip()
    keys = _state(request).keys
    if keys.scope_of_key(key) is not Scope.ADMIN:
        return render("login.html", "login", 403, error="This is not an admin key.")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        sessions_of(request).open(),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    """End the session."""
    sessions_of(request).close(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/")
def overview(request: Request, _: LoggedIn) -> HTMLResponse:
    """Events per minute, active users, decisions by source, errors."""
    return render("overview.html", "overview", o=data.overview(_state(request)))


def _profiles(request: Request) -> Any:
    return request.app.state.profiles


@router.get("/dashboard/segments")
def segments(request: Request, _: LoggedIn, show: str | None = None) -> HTMLResponse:
    """Definitions, sizes (batch and online), size over time, overlap, members with reasons."""
    service = _profiles(request)
    rep = data.segments(_state(request), service.definitions, _CACHE)
    keys = [s["key"] for s in rep["segments"]]
    chosen = show if show in keys else (keys[0] if keys else None)
    members = []
    if chosen:
        for person in data.members_sample(_state(request), service.definitions, chosen):
            described = service.engine.describe(person) or {}
            why = (described.get("explanations") or {}).get(chosen)
            members.append({"person": person, "why": why})
    conditions = {s.key: s.condition for s in service.definitions.segments}
    largest = sorted(rep["segments"], key=lambda s: -s["size"])[:8]
    history = rep["size_over_time"]
    return render(
        "segments.html",
        "segments",
        rep=rep,
        sizes={s["key"]: s["size"] for s in rep["segments"]},
        history={s["key"]: [row.get(s["key"], 0) for row in history] for s in largest},
        history_labels=[str(row["as_of"])[:10] for row in history],
        conditions=conditions,
        online=service.engine.sizes(),
        chosen=chosen,
        members=members,
    )


@router.get("/dashboard/experiments")
def experiments(request: Request, _: LoggedIn) -> HTMLResponse:
    """Every experiment with its status and recommendation."""
    state = _state(request)
    rows = [(key, data.experiment(state, key, _CACHE)) for key in data.experiment_keys(state)]
    return render("experiments.html", "experiments", rows=rows)


@router.get("/dashboard/experiments/{key}")
def experiment(request: Request, key: str, _: LoggedIn) -> HTMLResponse:
    """One experiment: health, lift with intervals, cumulative, segments, recommendation."""
    state = _state(request)
    if key not in data.experiment_keys(state):
        raise HTTPException(404, f"no experiment {key!r}")
    report = data.experiment(state, key, _CACHE)
    return render("experiment.html", "experiments", r=report, power=data.power(report))


@router.get("/dashboard/bandits")
def bandits(request: Request, _: LoggedIn) -> HTMLResponse:
    """Arms, allocation over time, posteriors per segment and reward against uniform."""
    service = request.app.state.decide
    described = service.bandits.describe()
    specs = service.engine.definitions.bandits
    reports = {
        key: data.bandit_report(_state(request), specs[key], service.bandits.policy(key), _CACHE)
        for key in described
        if key in specs
    }
    return render("bandits.html", "bandits", bandits=described, reports=reports)


@router.get("/dashboard/personas")
def personas(request: Request, _: LoggedIn) -> HTMLResponse:
    """Cluster profiles (``tailorkit build`` clusters)."""
    root = _state(request).project.root
    found = data.model_file(root, "clusters", "metrics.json")
    return render("personas.html", "personas", m=found, training=training_status(root))


@router.get("/dashboard/journeys")
def journeys(request: Request, _: LoggedIn) -> HTMLResponse:
    """Funnel and top paths (``tailorkit build`` journeys)."""
    root = _state(request).project.root
    found = data.model_file(root, "journeys", "journeys.json")
    return render("journeys.html", "journeys", j=found, training=training_status(root))


@router.get("/dashboard/recommendations")
def recommendations(request: Request, _: LoggedIn) -> HTMLResponse:
    """Offline metrics of the recommendation models."""
    root = _state(request).project.root
    found = data.model_file(root, "recommendations", "metrics.json")
    training = training_status(root)
    return render("recommendations.html", "recommendations", m=found, training=training)


@router.get("/dashboard/profile")
def profile(request: Request, _: LoggedIn, user: str = "") -> HTMLResponse:
    """Look up one person's online profile, segments and reasons."""
    found = _profiles(request).engine.describe(user.strip()) if user.strip() else None
    return render("profile.html", "profile", user=user, p=found)


@router.get("/demo/shop")
def demo_shop(request: Request) -> HTMLResponse:
    """A small shop page using ``/sdk.js`` (ingest keys are browser-safe)."""
    key = _state(request).project.settings.ingest_keys[0]
    return render("shop.html", "shop", ingest_key=key, products=shop_products())


@cache
def shop_products(n: int = 6) -> list[dict[str, Any]]:
    """``n`` products of the demo catalog, spread over it (the ids the demo data uses)."""
    from tailorkit.demo.catalog import build_catalog

    rows = build_catalog().table().to_pylist()
    return [rows[i * len(rows) // n] for i in range(n)]
