"""Where the shared test material (``shared/conformance``, ``shared/data``) lives.

``$TAILORKIT_SHARED`` wins; otherwise the ``shared`` folder beside the
checkout, then the workplace's ``/work/shared`` (a CI clone may live elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path

_CANDIDATES = [
    Path(os.environ["TAILORKIT_SHARED"]) if os.environ.get("TAILORKIT_SHARED") else None,
    Path(__file__).resolve().parents[2] / "shared",
    Path("/work/shared"),
]


def shared_dir() -> Path:
    """The first existing shared folder (the sibling path when none exists)."""
    for candidate in _CANDIDATES:
        if candidate is not None and candidate.is_dir():
            return candidate
    return Path(__file__).resolve().parents[2] / "shared"
