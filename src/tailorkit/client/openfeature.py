"""An OpenFeature provider that evaluates flags on a tailorkit server (OFREP).

Register it with the official OpenFeature Python SDK (``openfeature-sdk``);
every evaluation is one ``POST /ofrep/v1/evaluate/flags/{key}`` with the
evaluation context (``targeting_key`` becomes ``targetingKey``, which the
server uses as the user id and GrowthBook's ``id`` attribute).  The server
merges the user's profile and segments into the context and logs exposures.

>>> from openfeature import api
>>> from openfeature.evaluation_context import EvaluationContext
>>> api.set_provider_and_wait(TailorkitProvider("http://127.0.0.1:9", "tk_x", timeout=0.2))
>>> client = api.get_client()
>>> details = client.get_boolean_details("new-checkout", False, EvaluationContext("u1"))
>>> details.value, details.error_code
(False, <ErrorCode.GENERAL: 'GENERAL'>)
>>> api.shutdown()

Errors never raise into the application: the OpenFeature SDK answers the
code default with the error code (``FLAG_NOT_FOUND``, ``TYPE_MISMATCH``,
``INVALID_CONTEXT``, ``GENERAL`` for network errors, 401/403 and 429, after
which calls are skipped until ``Retry-After``).  A flag whose value is
``null`` on the server (no rule and no default) also answers the code
default, without an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode, ProviderFatalError
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

__all__ = ["TailorkitProvider", "ofrep_context"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_MISSING = object()
ObjectValue = Sequence[FlagValueType] | Mapping[str, FlagValueType]


def ofrep_context(context: EvaluationContext | None) -> dict[str, Any]:
    """The OFREP ``context`` object of an OpenFeature evaluation context.

    >>> ofrep_context(EvaluationContext("u1", {"country": "DE", "at": datetime(2026, 1, 2)}))
    {'country': 'DE', 'at': '2026-01-02T00:00:00', 'targetingKey': 'u1'}
    """
    if context is None:
        return {}
    out = {key: _json_value(value) for key, value in context.attributes.items()}
    if context.targeting_key:
        out["targetingKey"] = context.targeting_key
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


def _typed(value: Any, expected: type) -> Any:
    """The value as the requested flag type, or ``_MISSING`` when it is another type.

    JSON has one number type: integral floats serve integer flags and
    integers serve float flags.

    >>> _typed(3, float), _typed(2.0, int), _typed(True, int) is _MISSING
    (3.0, 2, True)
    """
    if expected is bool:
        return value if isinstance(value, bool) else _MISSING
    if expected is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISSING
    if expected is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return _MISSING
    if expected is str:
        return value if isinstance(value, str) else _MISSING
    return value if isinstance(value, dict | list) else _MISSING


def _error(default: T, code: ErrorCode, message: str) -> FlagResolutionDetails[T]:
    return FlagResolutionDetails(
        default, error_code=code, error_message=message, reason=Reason.ERROR
    )


class TailorkitProvider(AbstractProvider):
    """OpenFeature provider for a tailorkit server (OFREP over HTTP).

    ``api_key`` is an ingest key (evaluations log exposures, which are
    events).  Thread-safe: one ``httpx.Client`` with keep-alive connections.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 2.0,
        headers: Mapping[str, str] | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout)
        self._headers = {"Authorization": f"Bearer {api_key}", **(headers or {})}
        self._retry_at = 0.0  # monotonic time before which calls are skipped (429)

    def get_metadata(self) -> Metadata:
        """The provider's name."""
        return Metadata(name="tailorkit")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Check the key against the server (a refused key is fatal; an unreachable
        server is not: evaluations answer defaults until it is back)."""
        try:
            response = self._client.get(
                f"{self.base_url}/ofrep/v1/configuration", headers=self._headers
            )
        except httpx.HTTPError as exc:
            log.warning("tailorkit server not reachable yet: %s", exc)
            return
        if response.status_code in (401, 403):
            raise ProviderFatalError(f"tailorkit refused the key (HTTP {response.status_code})")

    def shutdown(self) -> None:
        """Close the HTTP connections (when the provider created the client)."""
        if self._owns_client:
            self._client.close()

    # -------------------------------------------------------------- resolvers

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        """Evaluate a boolean flag."""
        return self._resolve(flag_key, default_value, evaluation_context, bool)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        """Evaluate a string flag."""
        return self._resolve(flag_key, default_value, evaluation_context, str)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        """Evaluate an integer flag."""
        return self._resolve(flag_key, default_value, evaluation_context, int)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        """Evaluate a float flag."""
        return self._resolve(flag_key, default_value, evaluation_context, float)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: ObjectValue,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[ObjectValue]:
        """Evaluate an object (JSON object or array) flag."""
        return self._resolve(flag_key, default_value, evaluation_context, dict)

    def _resolve(
        self, key: str, default: T, context: EvaluationContext | None, expected: type
    ) -> FlagResolutionDetails[T]:
        if time.monotonic() < self._retry_at:
            return _error(default, ErrorCode.GENERAL, "rate limited by the server; retrying later")
        try:
            response = self._client.post(
                f"{self.base_url}/ofrep/v1/evaluate/flags/{quote(key, safe='')}",
                json={"context": ofrep_context(context)},
                headers=self._headers,
            )
        except httpx.HTTPError as exc:
            return _error(default, ErrorCode.GENERAL, f"tailorkit server unreachable: {exc}")
        if response.status_code == 200:
            return self._success(key, default, response, expected)
        return self._failure(default, response)

    def _success(
        self, key: str, default: T, response: httpx.Response, expected: type
    ) -> FlagResolutionDetails[T]:
        try:
            body = response.json()
        except ValueError:
            return _error(default, ErrorCode.PARSE_ERROR, "the server's answer is not JSON")
        details = {
            "reason": body.get("reason"),
            "variant": body.get("variant"),
            "flag_metadata": body.get("metadata") or {},
        }
        if "value" not in body or body["value"] is None:
            return FlagResolutionDetails(default, **details)  # no value: the code default
        value = _typed(body["value"], expected)
        if value is _MISSING:
            kind = type(body["value"]).__name__
            return _error(default, ErrorCode.TYPE_MISMATCH, f"{key} is a {kind} flag")
        result: FlagResolutionDetails[T] = FlagResolutionDetails(value, **details)
        return result

    def _failure(self, default: T, response: httpx.Response) -> FlagResolutionDetails[T]:
        status = response.status_code
        if status == 429:
            self._retry_at = time.monotonic() + _retry_after(response.headers.get("retry-after"))
        try:
            body = response.json()
        except ValueError:
            body = {}
        code = body.get("errorCode") if isinstance(body, dict) else None
        message = (body.get("errorDetails") if isinstance(body, dict) else None) or f"HTTP {status}"
        try:
            error_code = ErrorCode(code) if code else ErrorCode.GENERAL
        except ValueError:
            error_code = ErrorCode.GENERAL
        return _error(default, error_code, message)


def _retry_after(header: str | None) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date; default 1).

    >>> _retry_after("5"), _retry_after(None)
    (5.0, 1.0)
    """
    if not header:
        return 1.0
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(header).timestamp() - time.time())
    except (TypeError, ValueError):
        return 1.0
