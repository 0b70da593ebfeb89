"""Why a profile is (not) in a segment: which parts of the condition held.

Every part is evaluated with the reference evaluator
(:func:`tailorkit.evaluate.conditions.eval_condition`) on its own, so the
explanation and the membership cannot disagree.

>>> explain({"views_24h": {"$gt": 3}, "purchases_24h": 0},
...         {"views_24h": 5, "purchases_24h": 1})["parts"][1]
{'feature': 'purchases_24h', 'condition': 0, 'value': 1, 'held': False}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tailorkit.evaluate.conditions import eval_condition

LOGICAL = ("$or", "$nor", "$and")


def explain(condition: Mapping[str, Any], attributes: Mapping[str, Any]) -> dict[str, Any]:
    """``{"held": bool, "parts": [...]}``, one part per key of the condition, recursively."""
    return {
        "held": eval_condition(attributes, condition),
        "parts": [_part(str(k), v, attributes) for k, v in condition.items()],
    }


def _part(key: str, value: Any, attributes: Mapping[str, Any]) -> dict[str, Any]:
    held = eval_condition(attributes, {key: value})
    if key in LOGICAL and isinstance(value, list):
        parts = [explain(c, attributes) if isinstance(c, Mapping) else c for c in value]
        return {"operator": key, "held": held, "parts": parts}
    if key == "$not" and isinstance(value, Mapping):
        return {"operator": key, "held": held, "parts": [explain(value, attributes)]}
    return {"feature": key, "condition": value, "value": attributes.get(key), "held": held}
