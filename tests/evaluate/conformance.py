"""Loading GrowthBook's cross-SDK suite (``shared/conformance/growthbook-cases.json``)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from tailorkit.evaluate import Evaluator, InMemoryStickyBucketService
from tests.shared_data import shared_dir

_DEFAULT = shared_dir() / "conformance" / "growthbook-cases.json"
CASES_PATH = Path(os.environ.get("TAILORKIT_GROWTHBOOK_CASES", str(_DEFAULT)))


@lru_cache(maxsize=1)
def load_cases() -> dict[str, Any]:
    """The suite, keyed by section."""
    with CASES_PATH.open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def section(name: str) -> list[Any]:
    """The cases of one section (empty if the file is missing, see ``test_suite_present``)."""
    if not CASES_PATH.exists():
        return []
    cases: list[Any] = load_cases()[name]
    return cases


def evaluator_for(context: dict[str, Any], **options: Any) -> Evaluator:
    """An evaluator for a suite context (features, saved groups, bandits, options)."""
    return Evaluator(
        context.get("features") or {},
        saved_groups=context.get("savedGroups"),
        contextual_bandits=context.get("contextualBandits"),
        qa_mode=bool(context.get("qaMode", False)),
        enabled=context.get("enabled", True) is not False,
        **options,
    )


def sticky_service(docs: list[dict[str, Any]]) -> InMemoryStickyBucketService:
    """A sticky-bucket service seeded with the suite's initial documents."""
    service = InMemoryStickyBucketService()
    for doc in docs:
        service.save_assignments(doc)  # type: ignore[arg-type]
    return service
