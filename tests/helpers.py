"""Small builders for test events."""

from __future__ import annotations

import uuid
from typing import Any


def event(**overrides: Any) -> dict[str, Any]:
    """A valid page_view event; keyword arguments replace fields (None removes one)."""
    base: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": "page_view",
        "user_id": "u1",
        "timestamp": "2026-11-20T10:00:00Z",
        "properties": {"url": "https://shop.example/"},
        "context": {"user_agent": "Mozilla/5.0"},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}
