"""The decision log: every assignment the platform makes, with its propensity.

Decisions are ordinary events (``type = "exposure"``) in the events table, so
they are deduplicated, pseudonymized, erased and retained like any other
event, and experiment analysis and off-policy evaluation read them with the
same Ibis code as behavioural events.

``properties`` of an exposure event:

``kind``            ``experiment`` | ``feature`` | ``bandit`` | ``rule`` |
                    ``recommendation`` | ``default``
``key``             experiment, bandit or placement key
``variation``       chosen variation index (experiments) or arm index (bandits)
``variation_key``   variation/arm/content key
``propensity``      probability with which this variation/arm was chosen for this user
``hash_attribute``  attribute used for hashing (experiments), e.g. ``id``
``hash_value``      its value
``feature``         feature key, when the exposure came from a feature rule
``placement``       placement key, when the decision filled a placement
``segment``         segment/context the bandit used, when any
``features``        a linear bandit's feature values by name (its context), when any
``model_version``   model or policy version, when any
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

EXPOSURE = "exposure"
KINDS = ("experiment", "feature", "bandit", "rule", "recommendation", "default")


def exposure_event(
    *,
    kind: str,
    key: str,
    variation: int,
    propensity: float,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    variation_key: str | None = None,
    timestamp: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build one exposure event in the canonical event shape.

    >>> e = exposure_event(kind="bandit", key="hero", variation=2, propensity=0.4,
    ...                    user_id="u1", segment="mobile")
    >>> e["type"], e["properties"]["propensity"], e["properties"]["segment"]
    ('exposure', 0.4, 'mobile')
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if not 0.0 <= propensity <= 1.0:
        raise ValueError(f"propensity must be in [0, 1], not {propensity}")
    properties: dict[str, Any] = {
        "kind": kind,
        "key": key,
        "variation": variation,
        "variation_key": variation_key if variation_key is not None else str(variation),
        "propensity": propensity,
    }
    properties.update({k: v for k, v in extra.items() if v is not None})
    return {
        "event_id": str(uuid.uuid4()),
        "type": EXPOSURE,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "timestamp": (timestamp or datetime.now(UTC)).isoformat(),
        "properties": properties,
    }
