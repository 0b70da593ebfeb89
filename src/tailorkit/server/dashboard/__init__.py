"""The web dashboard (``/`` and ``/dashboard/*``) and the demo shop page (``/demo/shop``).

Server-rendered Jinja2 pages with inline SVG charts: no CDN, works offline.
Log in with an admin key; the session is an opaque server-side token.
"""

from tailorkit.server.dashboard.routes import router

__all__ = ["router"]
