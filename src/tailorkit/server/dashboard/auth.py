"""Dashboard sessions: log in with an admin key, then an opaque server-side token.

The cookie holds a random token, never the key; tokens live in memory (a
restart logs everybody out) and expire after ``SESSION_SECONDS``. The cookie
is HttpOnly and SameSite=Strict, so page scripts cannot read it and other
sites cannot make the browser send it (no cross-site form posts).
"""

from __future__ import annotations

import secrets
import threading
import time

from fastapi import HTTPException, Request

COOKIE = "tk_session"
SESSION_SECONDS = 12 * 3600


class Sessions:
    """Opaque tokens to expiry times."""

    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    def open(self) -> str:
        """A new session token."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            # forget expired sessions so that the table stays small
            self._tokens = {t: e for t, e in self._tokens.items() if e > now}
            self._tokens[token] = now + SESSION_SECONDS
        return token

    def valid(self, token: str | None) -> bool:
        """Whether ``token`` is a live session."""
        if not token:
            return False
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.monotonic()

    def close(self, token: str | None) -> None:
        """End a session (logout)."""
        with self._lock:
            self._tokens.pop(token or "", None)


def sessions_of(request: Request) -> Sessions:
    """The app's session table (created on first use)."""
    found: Sessions | None = getattr(request.app.state, "dashboard_sessions", None)
    if found is None:
        found = Sessions()
        request.app.state.dashboard_sessions = found
    return found


def require_login(request: Request) -> None:
    """Dependency: redirect to the login page without a valid session."""
    if not sessions_of(request).valid(request.cookies.get(COOKIE)):
        raise HTTPException(303, "log in first", headers={"Location": "/login"})
