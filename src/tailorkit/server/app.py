"""The FastAPI application: ingestion, admin, health and metrics endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from tailorkit import __version__
from tailorkit.collect import segment_spec
from tailorkit.collect.bus import bus_publisher
from tailorkit.collect.pipeline import Collector
from tailorkit.collect.quality import quality_report
from tailorkit.collect.raw import PayloadError, parse_body
from tailorkit.project.loader import Project
from tailorkit.server import openapi_doc
from tailorkit.server.admission import Admission
from tailorkit.server.auth import KeyChecker, Scope
from tailorkit.server.latency import RequestTiming
from tailorkit.server.ratelimit import make_limiter
from tailorkit.server.schemas import EventIn, IngestAnswer, SegmentMessage
from tailorkit.store.warehouse import Warehouse

log = logging.getLogger("tailorkit.server")


@dataclass
class AppState:
    """What the request handlers share."""

    project: Project
    warehouse: Warehouse
    collector: Collector
    keys: KeyChecker


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.tk
    return state


def _require(scope: Scope) -> Callable[[Request], Awaitable[AppState]]:
    # async: a sync dependency would cost every request a hop to the thread pool
    async def dependency(request: Request) -> AppState:
        state = _state(request)
        state.keys.check(request, scope)
        return state

    return dependency


Ingest = Annotated[AppState, Depends(_require(Scope.INGEST))]
Admin = Annotated[AppState, Depends(_require(Scope.ADMIN))]


async def read_bounded(request: Request, limit: int) -> bytes:
    """Read the body, refusing (413) past ``limit`` bytes even without Content-Length.

    Straight from the ASGI ``receive`` (the only reader of the body):
    Starlette's ``request.stream()`` costs a few microseconds more per request.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadError(413, f"request body over {limit} bytes")
    chunks, size = [], 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":  # the client gave up; nothing was acknowledged
            raise PayloadError(499, "client disconnected before the body was read")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadError(413, f"request body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _ingest_items(state: AppState, items: list[Any], source: str) -> Response:
    result = await asyncio.wrap_future(state.collector.submit_items(items, source))
    body = result.to_dict()
    all_rejected = bool(items) and body["rejected"] == len(items)
    status = 422 if all_rejected else 200
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


events_router = APIRouter(tags=["collect"])


@events_router.post(
    "/v1/events",
    response_model=IngestAnswer,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": EventIn.model_json_schema()}
                },
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
            "required": True,
        }
    },
)
async def post_events(request: Request, state: Ingest) -> Response:
    """Store a batch of events (JSON array, one object, or NDJSON).

    Answers one status per event (``accepted``, ``duplicate``, ``rejected``,
    ``consent_dropped``) and, for rejected ones, the index and reason. Events
    are acknowledged only after they are durably stored.
    """
    limits = state.project.settings.limits
    body = await read_bounded(request, limits.max_request_bytes)
    items = parse_body(body, request.headers.get("content-type", ""), limits)
    return await _ingest_items(state, items, "http")


segment_router = APIRouter(prefix="/v1/segment", tags=["segment"])


def _segment_route(call: str | None) -> Callable[[Request, AppState], Awaitable[Response]]:
    async def handler(request: Request, state: Ingest) -> Response:
        limits = state.project.settings.limits
        body = await read_bounded(request, limits.max_request_bytes)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PayloadError(422, f"body is not valid JSON: {exc}") from exc
        if call is None:
            items = segment_spec.batch_to_events(payload)
        else:
            items = [segment_spec.to_event(payload, call)]
        if len(items) > limits.max_batch_events:
            raise PayloadError(413, f"{len(items)} events; at most {limits.max_batch_events}")
        return await _ingest_items(state, items, "segment")

    handler.__doc__ = f"Segment tracking API: `{call or 'batch'}` call."
    return handler


for _call in ("track", "identify", "page", "screen", "alias", None):
    segment_router.add_api_route(
        f"/{_call or 'batch'}",
        _segment_route(_call),
        methods=["POST"],
        response_model=IngestAnswer,
        openapi_extra={
            "requestBody": {
                "content": {"application/json": {"schema": SegmentMessage.model_json_schema()}},
                "required": True,
            }
        },
        name=f"segment_{_call or 'batch'}",
    )


admin_router = APIRouter(prefix="/v1/admin", tags=["admin"])


@admin_router.get("/quality")
def get_quality(state: Admin, days: Annotated[int, Query(ge=1, le=3650)] = 30) -> dict[str, Any]:
    """Data-quality report: violations, duplicates, skew, late events, bots and outliers."""
    return quality_report(state.warehouse, state.project.settings.quality, days=days)


@admin_router.delete("/users/{user_id:path}")
def erase_user(user_id: str, state: Admin, request: Request) -> dict[str, Any]:
    """Erase every event and identity row of a user and their merged anonymous ids."""
    try:
        anonymous = state.warehouse.user_anonymous_ids(user_id)
    except ValueError as exc:  # an id no stored row can have (NUL)
        raise HTTPException(422, f"user_id: {exc}") from exc
    deleted = state.warehouse.erase_user(user_id)
    request.app.state.profiles.engine.forget(user_id, anonymous)  # and the online profile
    return {"user_id": user_id, "events_deleted": deleted}


@admin_router.post("/purge")
def purge(state: Admin) -> dict[str, Any]:
    """Delete events older than the configured retention window."""
    cutoff = datetime.now(UTC) - timedelta(days=state.project.settings.retention_days)
    return {"cutoff": cutoff.isoformat(), "events_deleted": state.warehouse.purge_before(cutoff)}


ops_router = APIRouter(tags=["ops"])


@ops_router.get("/healthz")
def healthz(request: Request) -> dict[str, Any]:
    """Liveness, the store backend, whether profiles are rebuilt and the event bus's state."""
    state = _state(request)
    out: dict[str, Any] = {
        "status": "ok",
        "version": __version__,
        "store": state.warehouse.backend,
        "profiles": "ready" if request.app.state.profiles.ready.is_set() else "replaying",
    }
    if request.app.state.bus is not None:
        out["bus"] = request.app.state.bus.status()
    return out


@ops_router.get("/metrics")
def prometheus_metrics() -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class TailorkitApp(FastAPI):
    """FastAPI behind admission control, with hot endpoints that skip its middleware stack.

    ``POST /v1/decide`` comes with every page view. Starlette's stack (error and
    telemetry wrappers, body limit, exception middleware, then the router's
    ~100 routes and dependency solving) costs about as much CPU as a small
    decision; a handler in :attr:`hot` is called right after admission control
    instead and brings its own timing, CORS and error handling.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (method, path) → ASGI app answering it before the middleware stack
        self.hot: dict[tuple[str, str], ASGIApp] = {}
        #: the outermost layer (sheds before any work); None: no admission control
        self.admission: Admission | None = None

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        scope["app"] = self  # admission and hot handlers read the live state from it
        if self.admission is None:
            await self._dispatch(scope, receive, send)
            return
        await self.admission(scope, receive, send)

    async def _dispatch(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hot = self.hot.get((scope["method"], scope["path"]))
            if hot is not None:
                await hot(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(project: Project, warehouse: Warehouse | None = None) -> TailorkitApp:
    """Build the application for a loaded project."""
    settings = project.settings
    warehouse = warehouse or Warehouse(settings.store_url)
    collector = Collector(warehouse, settings)
    limiter = make_limiter(settings.redis_url, settings.redis_prefix, settings.redis_options)
    keys = KeyChecker(
        settings.ingest_keys, settings.admin_keys, limiter, settings.rate_limits, settings.sdk_keys
    )
    state = AppState(project, warehouse, collector, keys)
    from tailorkit.server import routes_features, routes_profiles  # import this module: late

    profiles = routes_profiles.install(state)
    publisher = bus_publisher(project, collector)  # None: the in-process path

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # before the writer, so no batch escapes the hook; a long replay goes on in the background
        wait = profiles.definitions.features.settings.startup_wait_seconds
        await asyncio.to_thread(profiles.start, wait)
        if publisher is not None:
            publisher.start()
        collector.start()
        yield
        collector.stop()
        if publisher is not None:
            publisher.stop()
        profiles.stop()

    app = TailorkitApp(title="tailorkit", version=__version__, lifespan=lifespan)
    app.state.tk = state
    app.state.profiles = profiles
    app.state.bus = publisher
    from tailorkit.server.routes_decide import DecideEndpoint  # late: it imports this module

    decide: ASGIApp = DecideEndpoint()
    if settings.cors_origins:

        def with_cors(inner: ASGIApp) -> ASGIApp:
            return CORSMiddleware(
                inner,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type", "x-tailorkit-key", "x-api-key"],
            )

        app.add_middleware(with_cors)
        decide = with_cors(decide)
    app.hot[("POST", "/v1/decide")] = RequestTiming(decide)

    @app.exception_handler(PayloadError)
    async def payload_error(request: Request, exc: PayloadError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    app.add_middleware(RequestTiming)

    for router in (events_router, segment_router, admin_router, ops_router, routes_profiles.router):
        app.include_router(router)
    app.include_router(routes_features.router)
    from tailorkit.server import routes_decide, routes_experiments  # late: they import this module

    app.include_router(routes_experiments.router)
    app.include_router(routes_decide.router)  # brings its own lifespan (decide service)
    from tailorkit.server.dashboard import router as dashboard_router  # late, as above

    app.include_router(dashboard_router)
    openapi_doc.install(app)
    app.admission = Admission(app._dispatch, settings.admission)
    return app
