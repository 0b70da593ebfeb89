"""Feature flags over HTTP: the GrowthBook SDK payload, OFREP, and the admin API.

* ``GET /api/features/{client_key}``: GrowthBook's SDK payload
  (``features``, ``savedGroups``, ``dateUpdated``; ``encryptedFeatures`` and
  ``encryptedSavedGroups`` when ``sdk.encryption_key`` is set).  The client
  key is an SDK client key (``keys.sdk``) or an ingest key; both are public.
  Admin keys are refused: they are secret and URLs end up in logs.  The
  body is built once per definitions version and served with an ``ETag``
  (``If-None-Match`` gives 304) and ``Access-Control-Allow-Origin: *``.
* OpenFeature Remote Evaluation Protocol (ingest or admin key, as
  ``Authorization: Bearer``, ``X-API-Key`` or ``X-Tailorkit-Key``):
  ``POST /ofrep/v1/evaluate/flags/{key}``, ``POST /ofrep/v1/evaluate/flags``
  (bulk, with ``ETag``/``If-None-Match``) and ``GET /ofrep/v1/configuration``.
  Evaluations are profile-aware and log exposures, like ``/v1/decide``.
* ``GET|PUT /v1/admin/features`` and ``POST /v1/admin/features/reload``
  (admin key): the definitions, replacing them, re-reading the file.

The :class:`~tailorkit.decide.features.FeatureService` lives in
``app.state.features``; this router's lifespan creates, starts and stops it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tailorkit.decide.exposures import EXPOSURE_SOURCE, ExposureLog
from tailorkit.decide.features import FeatureService, ProfileLookup
from tailorkit.decide.log import StoredToday, store_exposures
from tailorkit.evaluate import FeatureResult
from tailorkit.project.loader import ConfigError
from tailorkit.server.app import Admin, AppState, Ingest, read_bounded
from tailorkit.server.auth import key_in

__all__ = ["install", "ofrep_failure", "ofrep_success", "router"]

_JSON = "application/json"
_MAX_CONTEXT_BYTES = 256 * 1024
#: OpenFeature reasons by GrowthBook result source
_REASONS = {
    "force": "TARGETING_MATCH",
    "experiment": "SPLIT",
    "override": "STATIC",
    "prerequisite": "DISABLED",
}


def install(app: FastAPI) -> FeatureService:
    """Create the feature service of an app (profile-aware, exposures to the collector)."""
    state: AppState = app.state.tk
    settings = state.project.settings

    stored_today = StoredToday(EXPOSURE_SOURCE)

    def submit(events: list[dict[str, Any]]) -> object:
        # tailorkit's own events: stored directly, without the JSON path's validation;
        # their ids are per UTC day, so only that day's stored events can repeat them
        return store_exposures(
            state.collector, events, EXPOSURE_SOURCE, daily_ids=True, stored_today=stored_today
        )

    exposures = ExposureLog(submit, hide_hash_values_of=settings.pii.fields)
    # Read the file again (not the project's copy): a change since the project
    # was loaded is then not missed by the watcher
    return FeatureService(
        state.project.root,
        encryption_key=settings.sdk.encryption_key,
        watch_seconds=settings.sdk.watch_seconds,
        exposures=exposures,
        profiles=_profile_lookup(app),
    )


def _profile_lookup(app: FastAPI) -> ProfileLookup | None:
    """The profiles service's targeting attributes (features + ``segments``), when profiles
    are defined.

    Every declared profile feature is set, to ``None`` (missing) for a
    person without a profile, so a request cannot supply one itself.
    """
    profiles = getattr(app.state, "profiles", None)
    engine = getattr(profiles, "engine", None)
    definitions = getattr(profiles, "definitions", None)
    if engine is None or definitions is None or not hasattr(engine, "attributes"):
        return None
    features = definitions.features
    if not (features.features or definitions.segments):
        return None  # nothing declared: no profile to merge
    blank: dict[str, Any] = dict.fromkeys(features.condition_names)
    blank["segments"] = []

    def lookup(person: str) -> dict[str, Any]:  # a shared store that is down: no profile
        return engine.guarded(lambda: {**blank, **engine.attributes(person)}, blank.copy)

    return lookup


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Runs inside the app's lifespan: the collector is already started
    service = install(app)
    app.state.features = service
    service.start()
    yield
    await run_in_threadpool(service.stop)  # flushes queued exposures to the collector


router = APIRouter(lifespan=_lifespan)


def _service(request: Request) -> FeatureService:
    service: FeatureService = request.app.state.features
    return service


# ------------------------------------------------------------ SDK payload


@router.get("/api/features/{client_key}", tags=["features"])
def get_sdk_payload(client_key: str, request: Request) -> Response:
    """GrowthBook SDK payload for ``apiHost`` + ``clientKey`` (GrowthBook's SDKs fetch it).

    The client key is an SDK client key (``keys.sdk``) or an ingest key.
    """
    state: AppState = request.app.state.tk
    settings = state.project.settings
    if key_in(client_key, settings.admin_keys):
        raise HTTPException(403, "admin keys are secret: use an SDK client key (keys.sdk)")
    if not key_in(client_key, settings.sdk_keys + settings.ingest_keys):
        raise HTTPException(401, "unknown client key")
    state.keys.throttle(client_key, "sdk")
    snapshot = _service(request).snapshot
    headers = {
        "ETag": snapshot.etag,
        # Revalidate every time (a 304 is cheap), so a change shows at once
        "Cache-Control": "no-cache",
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Expose-Headers": "ETag",
    }
    if _etag_matches(request.headers.get("if-none-match"), snapshot.etag):
        return Response(status_code=304, headers=headers)
    return Response(snapshot.body, media_type=_JSON, headers=headers)


def _etag_matches(header: str | None, etag: str) -> bool:
    """``If-None-Match`` against one strong ETag (lists, ``*`` and weak tags allowed).

    >>> _etag_matches('W/"abc", "x"', '"abc"'), _etag_matches(None, '"abc"')
    (True, False)
    """
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


# ------------------------------------------------------------------ OFREP


class _OfrepError(Exception):
    def __init__(self, status: int, code: str, details: str) -> None:
        super().__init__(details)
        self.status, self.code, self.details = status, code, details


async def _ofrep_context(request: Request) -> dict[str, Any]:
    """The request's ``context`` object (``{}`` without a body)."""
    body = await read_bounded(request, _MAX_CONTEXT_BYTES)
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        raise _OfrepError(400, "INVALID_CONTEXT", f"body is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise _OfrepError(400, "INVALID_CONTEXT", "body must be a JSON object")
    context = parsed.get("context") or {}
    if not isinstance(context, dict):
        raise _OfrepError(400, "INVALID_CONTEXT", "context must be an object")
    return context


def ofrep_attributes(context: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """GrowthBook attributes and user id from an OpenFeature evaluation context.

    ``targetingKey`` is the user id and, unless the context has one, the
    ``id`` attribute (what GrowthBook experiments hash by default).

    >>> ofrep_attributes({"targetingKey": "u1", "country": "DE"})
    ({'country': 'DE', 'id': 'u1'}, 'u1')
    """
    attributes = dict(context)
    targeting_key = attributes.pop("targetingKey", None)
    if targeting_key is not None and not isinstance(targeting_key, str):
        raise _OfrepError(400, "INVALID_CONTEXT", "targetingKey must be a string")
    if targeting_key and "id" not in attributes:
        attributes["id"] = targeting_key
    return attributes, targeting_key or None


def ofrep_success(key: str, result: FeatureResult, has_rules: bool = True) -> dict[str, Any]:
    """An OFREP evaluation success; a ``null`` value is left out (use the code default).

    >>> out = ofrep_success("f", FeatureResult("blue", "force", "r1"))
    >>> out["value"], out["reason"], out["variant"], out["metadata"]
    ('blue', 'TARGETING_MATCH', 'r1', {'source': 'force', 'ruleId': 'r1'})
    """
    reason = _REASONS.get(result.source) or ("DEFAULT" if has_rules else "STATIC")
    metadata: dict[str, Any] = {"source": result.source}
    if result.rule_id:
        metadata["ruleId"] = result.rule_id
    variant: str | None = result.rule_id or result.source
    exp = result.experiment_result
    if exp is not None and result.source == "experiment":
        variant = exp.key
        metadata.update(
            experimentKey=result.experiment.key if result.experiment else None,
            variationId=exp.variation_id,
            inExperiment=exp.in_experiment,
            hashAttribute=exp.hash_attribute,
        )
    elif result.source in ("defaultValue", "prerequisite"):
        variant = "default" if result.source == "defaultValue" else None
    out: dict[str, Any] = {"key": key, "reason": reason}
    if variant:
        out["variant"] = variant
    out["metadata"] = {k: v for k, v in metadata.items() if isinstance(v, str | int | float)}
    if result.value is not None:
        out["value"] = result.value
    return out


def ofrep_failure(key: str | None, code: str, details: str) -> dict[str, Any]:
    """An OFREP evaluation failure (``key`` is left out for a bulk request failure).

    >>> ofrep_failure("f", "FLAG_NOT_FOUND", "no flag f")
    {'key': 'f', 'errorCode': 'FLAG_NOT_FOUND', 'errorDetails': 'no flag f'}
    """
    out: dict[str, Any] = {} if key is None else {"key": key}
    out.update(errorCode=code, errorDetails=details)
    return out


def _evaluate_one(service: FeatureService, key: str, context: dict[str, Any]) -> JSONResponse:
    attributes, user_id = ofrep_attributes(context)
    snapshot = service.snapshot
    if key not in snapshot.document.get("features", {}):
        return JSONResponse(ofrep_failure(key, "FLAG_NOT_FOUND", f"no flag {key!r}"), 404)
    ctx = service.context(attributes, user_id=user_id, snapshot=snapshot)
    result = snapshot.evaluator.eval_feature(key, ctx)
    if result.source == "cyclicPrerequisite":
        return JSONResponse(ofrep_failure(key, "GENERAL", "cyclic prerequisites"), 400)
    return JSONResponse(ofrep_success(key, result, _has_rules(snapshot.document, key)))


def _evaluate_bulk(service: FeatureService, context: dict[str, Any]) -> list[dict[str, Any]]:
    attributes, user_id = ofrep_attributes(context)
    snapshot = service.snapshot
    ctx = service.context(attributes, user_id=user_id, snapshot=snapshot)
    flags = []
    for key, result in snapshot.evaluator.eval_all(ctx).items():
        if result.source == "cyclicPrerequisite":
            flags.append(ofrep_failure(key, "GENERAL", "cyclic prerequisites"))
        else:
            flags.append(ofrep_success(key, result, _has_rules(snapshot.document, key)))
    return flags


def _has_rules(document: Mapping[str, Any], key: str) -> bool:
    return bool(document.get("features", {}).get(key, {}).get("rules"))


@router.post("/ofrep/v1/evaluate/flags/{key:path}", tags=["features"])
async def ofrep_evaluate(key: str, request: Request, state: Ingest) -> Response:
    """OFREP single-flag evaluation: ``{"context": {"targetingKey": ..., ...}}``."""
    try:
        context = await _ofrep_context(request)
        return await run_in_threadpool(_evaluate_one, _service(request), key, context)
    except _OfrepError as exc:
        return JSONResponse(ofrep_failure(key, exc.code, exc.details), exc.status)


@router.post("/ofrep/v1/evaluate/flags", tags=["features"])
async def ofrep_evaluate_bulk(request: Request, state: Ingest) -> Response:
    """OFREP bulk evaluation of every flag; ``If-None-Match`` with the last ``ETag`` gives 304."""
    try:
        context = await _ofrep_context(request)
        flags = await run_in_threadpool(_evaluate_bulk, _service(request), context)
    except _OfrepError as exc:
        return JSONResponse(ofrep_failure(None, exc.code, exc.details), exc.status)
    body = json.dumps({"flags": flags}).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(body, media_type=_JSON, headers={"ETag": etag})


@router.get("/ofrep/v1/configuration", tags=["features"])
def ofrep_configuration(state: Ingest) -> dict[str, Any]:
    """OFREP provider configuration: polling for bulk changes, every flag type."""
    return {
        "name": "tailorkit",
        "capabilities": {
            "cacheInvalidation": {"polling": {"enabled": True, "minPollingIntervalMs": 1000}},
            "flagEvaluation": {"supportedTypes": ["int", "float", "string", "boolean", "object"]},
        },
    }


# ------------------------------------------------------------------ admin


def _describe(service: FeatureService) -> dict[str, Any]:
    snapshot = service.snapshot
    return {
        "version": snapshot.version,
        "date_updated": snapshot.date_updated,
        "last_error": service.last_error,
        "definitions": snapshot.document,
    }


@router.get("/v1/admin/features", tags=["admin"])
def admin_get_features(request: Request, state: Admin) -> dict[str, Any]:
    """The live feature definitions, their version and the last reload error."""
    return _describe(_service(request))


@router.put("/v1/admin/features", tags=["admin"])
def admin_put_features(request: Request, state: Admin, document: dict[str, Any]) -> Response:
    """Replace ``features``/``savedGroups``/``contextualBandits`` (validated, written to
    features.yaml, live at once). Invalid definitions: 422 naming key and reason."""
    service = _service(request)
    try:
        service.replace(document)
    except ConfigError as exc:
        return _config_error(exc)
    _share(request)
    return JSONResponse(_describe(service))


@router.post("/v1/admin/features/reload", tags=["admin"])
def admin_reload_features(request: Request, state: Admin) -> Response:
    """Re-read features.yaml now; an invalid file keeps the live definitions (422)."""
    service = _service(request)
    try:
        changed = service.reload()
    except ConfigError as exc:
        return _config_error(exc)
    if changed:
        _share(request)
    return JSONResponse({"changed": changed, **_describe(service)})


def _share(request: Request) -> None:
    """Publish the accepted features to the other replicas (Redis configured)."""
    decide = getattr(request.app.state, "decide", None)  # owns the shared definitions
    if decide is not None:
        decide.share("features")


def _config_error(exc: ConfigError) -> JSONResponse:
    detail = {"file": exc.file, "path": exc.path, "message": exc.message}
    return JSONResponse({"detail": detail}, status_code=422)
