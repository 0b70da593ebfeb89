"""An honest OpenAPI document: every answer an operation can give, with its shape.

FastAPI documents the success answer of each route. The server also answers
errors that do not come from a route's signature: 401/403/429 from the key
check, 413/422 from the bounded body readers (``{"detail": "..."}``), 503
from admission control, 404 for unknown path keys, 304 for ETag
revalidation, and some routes answer another media type. :func:`install`
adds them to the generated document, so clients and the schemathesis fuzz
test (``tests/server/test_fuzz_openapi.py``) can rely on it.

It also moves nested ``$defs`` of hand-written request schemas (pydantic's
``model_json_schema()``) into ``components/schemas``, where OpenAPI
references resolve.

>>> from fastapi import FastAPI
>>> app = FastAPI()
>>> @app.get("/v1/admin/things/{key}")
... def thing(key: str) -> dict[str, str]:
...     return {}
>>> install(app)
>>> sorted(app.openapi()["paths"]["/v1/admin/things/{key}"]["get"]["responses"])
['200', '401', '403', '404', '422', '429', '503']
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from tailorkit.server.schemas import IngestAnswer

__all__ = ["ErrorAnswer", "OfrepFailure", "ReloadAnswer", "install"]


class ErrorAnswer(BaseModel):
    """Why a request was refused."""

    detail: str | list[Any] | dict[str, Any] = Field(
        description="A message; a list of field errors (422 from request validation); "
        "or {file, path, message} for refused definitions."
    )


class OfrepFailure(BaseModel):
    """An OpenFeature Remote Evaluation Protocol failure."""

    key: str | None = None
    errorCode: str
    errorDetails: str


class ReloadAnswer(BaseModel):
    """Outcome of replacing or reloading placement definitions."""

    applied: bool
    version: str | None = None
    error: dict[str, str] | None = Field(None, description="{file, key, reason} when refused")


_REF = "#/components/schemas/{model}"
_KEYED_PREFIXES = ("/v1/", "/ofrep/")
_ADMITTED_PREFIXES = ("/v1/", "/ofrep/", "/api/")  # see tailorkit.server.admission
_NOT_MODIFIED = {("get", "/api/features/{client_key}"), ("post", "/ofrep/v1/evaluate/flags")}
_NOT_MODIFIED |= {("get", "/sdk.js")}
_INGEST_ROUTES = ("/v1/events", "/v1/segment/")
_RELOAD_ROUTES = {("put", "/v1/admin/placements"), ("post", "/v1/admin/placements/reload")}
_MEDIA_TYPES = {
    ("get", "/metrics"): {"text/plain": {"schema": {"type": "string"}}},
    ("get", "/sdk.js"): {"application/javascript": {"schema": {"type": "string"}}},
    ("get", "/v1/admin/experiments/{key}/results"): {
        "application/json": {"schema": {"type": "object"}},
        "text/html": {"schema": {"type": "string"}},
    },
}
_DESCRIPTIONS = {
    "304": "Not modified (If-None-Match matched the ETag)",
    "400": "Malformed body (OFREP: invalid evaluation context)",
    "401": "Missing or unknown API key",
    "403": "The key's scope does not allow this",
    "404": "Not found",
    "413": "Request body or batch too large",
    "422": "Invalid request",
    "429": "Rate limit of this key reached (see Retry-After)",
    "503": "Overloaded: retry later (see Retry-After)",
}


def _content(*models: type[BaseModel]) -> dict[str, Any]:
    refs = [{"$ref": _REF.format(model=m.__name__)} for m in models]
    schema = refs[0] if len(refs) == 1 else {"anyOf": refs}
    return {"application/json": {"schema": schema}}


def _hoist_defs(node: Any, components: dict[str, Any]) -> Any:
    """Move nested ``$defs`` into ``components`` and point their references there."""
    if isinstance(node, dict):
        for name, schema in (node.pop("$defs", None) or {}).items():
            components.setdefault(name, _hoist_defs(schema, components))
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
        for value in node.values():
            _hoist_defs(value, components)
    elif isinstance(node, list):
        for value in node:
            _hoist_defs(value, components)
    return node


def _answers(method: str, path: str, operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The statuses this operation may answer besides what FastAPI documented, with bodies."""
    error = _content(ErrorAnswer)
    out: dict[str, dict[str, Any]] = {}
    keyed = path.startswith(_KEYED_PREFIXES) or path == "/api/features/{client_key}"
    if keyed:
        out.update({"401": error, "403": error})
    if path.startswith(_KEYED_PREFIXES):
        out["429"] = error
    if path.startswith(_ADMITTED_PREFIXES):
        out["503"] = error
    if "{" in path:
        out["404"] = error
    if method in ("post", "put"):
        out["400"] = error  # a body FastAPI parses (pydantic models) that is not JSON
        out["413"] = error
    if keyed and (method in ("post", "put", "delete") or operation.get("parameters")):
        out["422"] = error
    if path.startswith(_INGEST_ROUTES):
        out["422"] = _content(IngestAnswer, ErrorAnswer)  # all rejected, or unreadable
    if (method, path) in _RELOAD_ROUTES:
        out["422"] = _content(ReloadAnswer)
    if path.startswith("/ofrep/v1/evaluate/"):
        out["400"] = _content(OfrepFailure)
        out["404"] = _content(OfrepFailure, ErrorAnswer)
    if (method, path) in _NOT_MODIFIED:
        out["304"] = {}
    return out


def document(doc: dict[str, Any]) -> dict[str, Any]:
    """Add the extra answers (and hoist nested ``$defs``) in a generated document."""
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorAnswer, OfrepFailure, ReloadAnswer, IngestAnswer):
        schema = model.model_json_schema(ref_template=_REF)
        components.setdefault(model.__name__, _hoist_defs(schema, components))
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            _hoist_defs(operation, components)
            responses = operation.setdefault("responses", {})
            for status, content in _answers(method, path, operation).items():
                answer: dict[str, Any] = {"description": _DESCRIPTIONS[status]}
                if content:
                    answer["content"] = content
                responses[status] = answer  # replaces FastAPI's list-only 422 model
            if (method, path) in _MEDIA_TYPES:
                responses["200"]["content"] = _MEDIA_TYPES[(method, path)]
    return doc


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) return the completed document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
