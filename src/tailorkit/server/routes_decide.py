"""Decision routes: ``POST /v1/decide``, ``POST /v1/consent``, ``/sdk.js`` and placement admin.

The router brings its own lifespan (merged into the app's by
``include_router``, so it runs after the profiles service has started): it
builds the :class:`~tailorkit.decide.service.DecideService` and keeps it in
``app.state.decide``.

Keys: ``/v1/decide``, ``/v1/decide/defaults`` and ``/v1/consent`` take an
ingest (browser-safe) or admin key; ``/v1/admin/placements*`` and
``/v1/admin/bandits*`` an admin key; ``/sdk.js`` none.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from types import SimpleNamespace
from typing import Annotated, Any

import orjson
import yaml
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.types import Receive, Scope, Send

from tailorkit.collect.raw import PayloadError
from tailorkit.decide.engine import DecideRequest
from tailorkit.decide.service import DecideService
from tailorkit.server.admission import default_answer
from tailorkit.server.app import Admin, Ingest, read_bounded
from tailorkit.server.auth import Scope as AuthScope
from tailorkit.server.latency import tune_runtime

log = logging.getLogger(__name__)
MAX_DECIDE_BYTES = 64 * 1024
MAX_ID_LENGTH = 256
MAX_PLACEMENTS = 100


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build and start the decision service; stop it (flush logs, save bandits) at shutdown."""
    state = app.state.tk
    service = DecideService(
        state.project,
        state.collector,
        getattr(app.state, "profiles", None),
        getattr(app.state, "features", None),  # its lifespan ran first (included earlier)
    )
    app.state.decide = service
    service.start()
    threading.Thread(target=_load_opt_outs, args=(service,), daemon=True).start()
    tune_runtime()  # the last service to start: what lives now lives for the server's life
    yield
    await asyncio.to_thread(service.stop)


def _load_opt_outs(service: DecideService) -> None:
    try:
        count = service.load_opt_outs()
        log.info("loaded %d personalization opt-outs", count)
    except Exception:
        log.exception("could not load opt-outs from the warehouse")


router = APIRouter(tags=["decide"], lifespan=lifespan)


def _service(request: Request) -> DecideService:
    service: DecideService = request.app.state.decide
    return service


# -- documentation models (the hot path parses with orjson) ------------------------------


class DecideIn(BaseModel):
    """A decision request."""

    user_id: str | None = Field(None, description="Known user id (user_id and/or anonymous_id).")
    anonymous_id: str | None = Field(None, description="Device/browser id.")
    attributes: dict[str, Any] = Field(
        default_factory=dict, description="Targeting attributes (override profile and context)."
    )
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="Request context: device, url, referrer, hour, weekday, language, ...",
    )
    placements: list[str] | None = Field(None, description="Placements to decide (default all).")
    consent: dict[str, bool] | None = Field(
        None, description="{'personalization': false} gets default content for this request."
    )


class PlacementOut(BaseModel):
    """The decision of one placement."""

    content: str
    variant: str
    source: str = Field(description="rule, experiment, bandit, recommendation or default")
    rule: str | None = None
    experiment: str | None = None
    bandit: str | None = None
    reason: str | None = Field(None, description="Why the default was served, when it was.")
    held: bool | None = Field(None, description="Kept by the placement's minimum dwell.")
    data: dict[str, Any] | None = None
    model_version: str | None = Field(
        None, description="Recommendation model that ranked the items (recommendations@<version>)."
    )
    items: list[Any] | None = Field(None, description="Recommended item ids, in order.")


class DecideOut(BaseModel):
    """The decisions for one request."""

    user_id: str | None
    anonymous_id: str | None
    segments: list[str]
    flags: dict[str, Any]
    experiments: list[dict[str, Any]]
    holdout: bool
    placements: dict[str, PlacementOut]


class ConsentIn(BaseModel):
    """A user's consent choice."""

    user_id: str | None = None
    anonymous_id: str | None = None
    personalization: bool = Field(description="false opts out of personalization.")
    analytics: bool = True
    reset: bool = Field(False, description="Also forget dwell, caps and pending bandit decisions.")


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "content": {"application/json": {"schema": model.model_json_schema()}},
            "required": True,
        }
    }


# -- parsing -------------------------------------------------------------------------------


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise PayloadError(422, f"body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise PayloadError(422, "body must be a JSON object")
    return doc


def _id(doc: Mapping[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise PayloadError(422, f"{name}: must be a string")
    text = str(value)
    if len(text) > MAX_ID_LENGTH:
        raise PayloadError(422, f"{name}: longer than {MAX_ID_LENGTH} characters")
    return text


def _mapping(doc: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(422, f"{name}: must be an object")
    return value


def _placements(doc: Mapping[str, Any]) -> list[str] | None:
    value = doc.get("placements")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PayloadError(422, "placements: must be a list of placement keys")
    if len(value) > MAX_PLACEMENTS:
        raise PayloadError(422, f"placements: at most {MAX_PLACEMENTS}")
    return value


def parse_decide(doc: Mapping[str, Any]) -> DecideRequest:
    """Turn a request body into a :class:`DecideRequest` (422 on a wrong shape).

    >>> parse_decide({"user_id": "u1", "placements": ["hero"]}).placements
    ['hero']
    """
    consent = _mapping(doc, "consent")
    return DecideRequest(
        user_id=_id(doc, "user_id"),
        anonymous_id=_id(doc, "anonymous_id"),
        attributes=_mapping(doc, "attributes"),
        context=_mapping(doc, "context"),
        placements=_placements(doc),
        personalization=consent.get("personalization", True) is not False,
    )


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


# -- routes ----------------------------------------------------------------------------------


@router.post(
    "/v1/decide", response_model=DecideOut, openapi_extra=_body_doc(DecideIn), tags=["decide"]
)
async def post_decide(request: Request, state: Ingest) -> Response:
    """Segments, flag values, experiment assignments and the content of each placement.

    Never fails the page: past the deadline (``settings.deadline_ms``, default
    50 ms) or on any internal error a placement gets its default content with
    ``source: "default"`` and a ``reason``. Accepts ``text/plain`` bodies too,
    so browsers can call it without a CORS preflight (key in ``?key=``).
    """
    return Response(await _answer_decide(request, _service(request)), media_type="application/json")


async def _answer_decide(request: Request, service: DecideService) -> bytes:
    started = time.perf_counter()
    body = await read_bounded(request, MAX_DECIDE_BYTES)
    decide_request = parse_decide(_json_object(body))
    answer = service.engine.decide(decide_request, started)
    return orjson.dumps(answer, option=orjson.OPT_NON_STR_KEYS)


class DecideEndpoint:
    """``POST /v1/decide`` as a plain ASGI app, answered before FastAPI's middleware stack.

    :class:`~tailorkit.server.app.TailorkitApp` calls it right after admission
    control (the route above documents the endpoint, and answers for a plain
    FastAPI app). Same key check, bounds, parsing and answers; errors are
    answered as FastAPI would (``{"detail": ...}`` with the status and
    headers), and an unexpected error with every placement's default content:
    the page never breaks.
    """

    ROUTE = SimpleNamespace(path="/v1/decide")  # what the timing middleware labels

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["app"]
        scope["route"] = self.ROUTE
        request = Request(scope, receive)
        status, headers = 200, _JSON_HEADERS
        try:
            app.state.tk.keys.check(request, AuthScope.INGEST)
            body = await _answer_decide(request, app.state.decide)
        except HTTPException as exc:
            status, body = exc.status_code, orjson.dumps({"detail": exc.detail})
            extra = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
            headers = [*headers, *extra]
        except PayloadError as exc:
            status, body = exc.status, orjson.dumps({"detail": str(exc)})
        except Exception:
            log.exception("decide failed: answering the default content")
            body = default_answer(app, "error")
        length = (b"content-length", str(len(body)).encode())
        await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
        await send({"type": "http.response.body", "body": body})


_JSON_HEADERS = [(b"content-type", b"application/json")]


@router.get("/v1/decide/defaults", tags=["decide"])
def get_defaults(request: Request, state: Ingest) -> Response:
    """The default content of every placement (what clients show when the server is down)."""
    engine = _service(request).engine
    return _json({"version": engine.definitions.version, "placements": engine.defaults()})


@router.post("/v1/consent", openapi_extra=_body_doc(ConsentIn), tags=["decide"])
async def post_consent(request: Request, state: Ingest) -> Response:
    """Opt out of (or back into) personalization.

    An opt-out stops personalization at once for the user and anonymous id,
    clears what the decision path remembers about them (dwell, caps,
    pending bandit decisions) and is stored as a ``consent`` event, so their
    profile stops updating and the choice survives restarts.
    """
    doc = _json_object(await read_bounded(request, MAX_DECIDE_BYTES))
    user_id, anonymous_id = _id(doc, "user_id"), _id(doc, "anonymous_id")
    if user_id is None and anonymous_id is None:
        raise PayloadError(422, "user_id or anonymous_id is required")
    flags = {}
    for name, default in (("personalization", None), ("analytics", True), ("reset", False)):
        value = doc.get(name, default)
        if not isinstance(value, bool):
            raise PayloadError(422, f"{name}: must be true or false")
        flags[name] = value
    result = _service(request).set_consent(
        user_id, anonymous_id, flags["personalization"], flags["analytics"], flags["reset"]
    )
    return _json({"user_id": user_id, "anonymous_id": anonymous_id, **result})


@cache
def _sdk() -> tuple[bytes, str]:
    text = resources.files("tailorkit.server").joinpath("static/sdk.js").read_bytes()
    return text, '"' + hashlib.sha256(text).hexdigest()[:16] + '"'


@router.get("/sdk.js", tags=["decide"], include_in_schema=True)
def get_sdk(request: Request) -> Response:
    """The browser snippet (no key needed; cache-friendly)."""
    text, etag = _sdk()
    headers = {"ETag": etag, "Cache-Control": "public, max-age=300"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(text, media_type="application/javascript", headers=headers)


# -- admin -------------------------------------------------------------------------------------


@router.get("/v1/admin/placements", tags=["admin"])
def get_placements(request: Request, state: Admin) -> Response:
    """Live placement definitions, their version, and the last refused change (if any)."""
    service = _service(request)
    definitions = service.engine.definitions
    error = service.last_error
    return _json(
        {
            "version": definitions.version,
            "reloaded_at": service.reloaded_at,
            "placements": sorted(definitions.placements),
            "bandits": sorted(definitions.bandits),
            "last_error": None
            if error is None
            else {"file": error.file, "key": error.path, "reason": error.message},
            "document": definitions.document,
        }
    )


@router.post("/v1/admin/placements/reload", tags=["admin"])
def reload_placements(request: Request, state: Admin) -> Response:
    """Reload definitions from the project files now (422 with file/key/reason if refused)."""
    service = _service(request)
    result = service.reload()
    if result.applied:
        service.share("placements")  # the other replicas apply it too (Redis)
    return _json(result.to_dict(), 200 if result.applied else 422)


@router.put("/v1/admin/placements", tags=["admin"])
async def put_placements(request: Request, state: Admin) -> Response:
    """Replace ``placements.yaml`` (JSON or YAML body); refused with file/key/reason if invalid."""
    body = await read_bounded(request, state.project.settings.limits.max_request_bytes)
    try:
        document = yaml.safe_load(body) or {}
    except yaml.YAMLError as exc:
        raise PayloadError(422, f"body is neither JSON nor YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise PayloadError(422, "body must be a mapping")
    service = _service(request)
    result = await asyncio.to_thread(service.reload, document, True)
    if result.applied:
        await asyncio.to_thread(service.share, "placements")  # the other replicas too (Redis)
    return _json(result.to_dict(), 200 if result.applied else 422)


@router.get("/v1/admin/bandits", tags=["admin"])
def get_bandits(request: Request, state: Admin) -> Response:
    """Every live bandit: arms, current probabilities, decisions, rewards, state."""
    return _json(_service(request).bandits.describe())


@router.get("/v1/admin/bandits/{key}/report", tags=["admin"])
def get_bandit_report(
    key: str,
    request: Request,
    state: Admin,
    since: Annotated[str | None, Query(description="Decisions from (ISO-8601).")] = None,
    bins: Annotated[int, Query(ge=1, le=200, description="Time slices of the allocation.")] = 24,
    alpha: Annotated[float, Query(gt=0, lt=1, description="1 - credible/confidence level.")] = 0.05,
) -> Response:
    """Allocation over time, posteriors per segment × arm, and reward against uniform (IPS)."""
    from tailorkit.measure.bandit_report import report_for
    from tailorkit.segment.batch import reader

    service = _service(request)
    spec = service.engine.definitions.bandits.get(key)
    if spec is None:
        raise HTTPException(404, f"no bandit {key!r}")
    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError as exc:
            raise HTTPException(422, f"since: not an ISO-8601 instant: {since!r}") from exc
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
    with reader(state.warehouse) as view:
        report = report_for(
            view, spec, service.bandits.policy(key), since=start, bins=bins, alpha=alpha
        )
    return _json(report)


class RewardIn(BaseModel):
    """A reward joined outside the event stream."""

    arm: str
    reward: float = Field(ge=0.0, le=1.0)
    segment: str | None = None


@router.post("/v1/admin/bandits/{key}/rewards", tags=["admin"])
def post_reward(key: str, reward: RewardIn, request: Request, state: Admin) -> Response:
    """Apply one reward to a bandit (for rewards joined offline)."""
    service = _service(request)
    try:
        service.bandits.update(key, reward.arm, reward.reward, reward.segment)
    except KeyError as exc:
        raise HTTPException(404, f"no bandit {key!r}") from exc
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    return _json({"bandit": key, "applied": 1})
