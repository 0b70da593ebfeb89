"""API keys and scopes.

Ingest keys are browser-safe: they may only send events and ask for decisions.
Admin keys may do everything, including reading profiles and erasing users.
Keys are compared in constant time.
"""

from __future__ import annotations

import base64
import hmac
from enum import StrEnum

from fastapi import HTTPException, Request


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


def _matches(key: str, candidates: tuple[str, ...]) -> bool:
    found = False
    for candidate in candidates:
        found |= hmac.compare_digest(key.encode(), candidate.encode())
    return found


class KeyChecker:
    """FastAPI dependency factory: ``Depends(keys.require(Scope.ADMIN))``."""

    def __init__(self, ingest_keys: tuple[str, ...], admin_keys: tuple[str, ...]) -> None:
        self.ingest_keys = ingest_keys
        self.admin_keys = admin_keys

    def scope_of(self, request: Request) -> Scope | None:
        """The scope of the key presented with ``request``, or ``None``."""
        return self.scope_of_key(_presented_key(request))

    def scope_of_key(self, key: str | None) -> Scope | None:
        """The scope of ``key`` (dashboard login form), or ``None``."""
        if not key:
            return None
        if _matches(key, self.admin_keys):
            return Scope.ADMIN
        if _matches(key, self.ingest_keys):
            return Scope.INGEST
        return None

    def check(self, request: Request, needed: Scope) -> Scope:
        """Raise 401 without a valid key and 403 when the key's scope is too small."""
        scope = self.scope_of(request)
        if scope is None:
            raise HTTPException(
                401, "missing or unknown API key", headers={"WWW-Authenticate": "Bearer"}
            )
        if needed is Scope.ADMIN and scope is not Scope.ADMIN:
            raise HTTPException(403, "this endpoint needs an admin key")
        return scope
