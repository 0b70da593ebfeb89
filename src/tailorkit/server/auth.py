"""API keys and scopes.

Ingest keys are browser-safe: they may only send events and ask for decisions.
Admin keys may do everything, including reading profiles and erasing users.
Keys are compared in constant time. Every request with a known key takes a
token from that key's bucket (:mod:`tailorkit.server.ratelimit`), even one the
key's scope does not allow, so a leaked ingest key cannot hammer admin
endpoints for free: 401 (no or unknown key), then 429, then 403.
"""

from __future__ import annotations

import base64
import hmac
import math
from enum import StrEnum

from fastapi import HTTPException, Request

from tailorkit import metrics
from tailorkit.project.loader import RateLimits
from tailorkit.server.ratelimit import KeyLimits, RateLimiter


class Scope(StrEnum):
    """What a key may do."""

    INGEST = "ingest"
    ADMIN = "admin"


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        # Segment's SDKs send the write key as the Basic-auth user name.
        try:
            decoded = base64.b64decode(value).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.split(":", 1)[0]
    # X-API-Key is how OpenFeature's OFREP providers send a key
    return (
        request.headers.get("x-tailorkit-key")
        or request.headers.get("x-api-key")
        or request.query_params.get("key")
    )


def key_in(key: str, candidates: tuple[str, ...]) -> bool:
    """Constant-time membership (no early exit that would leak which key matched)."""
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(key.encode(), candidate.encode())
    return found


class KeyChecker:
    """FastAPI dependency factory: ``Depends(keys.require(Scope.ADMIN))``."""

    def __init__(
        self,
        ingest_keys: tuple[str, ...],
        admin_keys: tuple[str, ...],
        limiter: RateLimiter | None = None,
        limits: RateLimits | None = None,
        sdk_keys: tuple[str, ...] = (),
    ) -> None:
        self.ingest_keys = ingest_keys
        self.admin_keys = admin_keys
        self.limiter = limiter
        self.limits = KeyLimits(limits or RateLimits(), ingest_keys, admin_keys, sdk_keys)

    def scope_of(self, request: Request) -> Scope | None:
        """The scope of the key presented with ``request``, or ``None``."""
        return self.scope_of_key(_presented_key(request))

    def scope_of_key(self, key: str | None) -> Scope | None:
        """The scope of ``key`` (dashboard login form), or ``None``."""
        if not key:
            return None
        if key_in(key, self.admin_keys):
            return Scope.ADMIN
        if key_in(key, self.ingest_keys):
            return Scope.INGEST
        return None

    def throttle(self, key: str, label: str) -> None:
        """Raise 429 with ``Retry-After`` when the known ``key`` is past its rate."""
        if self.limiter is None:
            return
        wait = self.limiter.acquire(*self.limits.of(key))
        if wait > 0:
            metrics.RATE_LIMITED.labels(label).inc()
            raise HTTPException(
                429,
                "rate limit of this API key exceeded",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    def check(self, request: Request, needed: Scope) -> Scope:
        """Raise 401 without a valid key, 429 past its rate, 403 when its scope is too small."""
        key = _presented_key(request)
        scope = self.scope_of_key(key)
        if scope is None or key is None:
            raise HTTPException(
                401, "missing or unknown API key", headers={"WWW-Authenticate": "Bearer"}
            )
        self.throttle(key, scope.value)
        if needed is Scope.ADMIN and scope is not Scope.ADMIN:
            raise HTTPException(403, "this endpoint needs an admin key")
        return scope
