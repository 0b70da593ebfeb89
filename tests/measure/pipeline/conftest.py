"""A project with four simulated experiments stored through the Collector."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tailorkit.collect.jsonlines import raw_from_items
from tailorkit.collect.pipeline import Collector
from tailorkit.project import Project, load_project
from tailorkit.project.init import write_project
from tailorkit.store.warehouse import Warehouse
from tests.measure.pipeline.simulate import Design, simulate

METRICS = {
    "signup": {"type": "binomial", "event": "signup", "window_hours": 72},
    "revenue": {"type": "mean", "event": "purchase", "value": "revenue",
                "cuped": {"pre_period_days": 14}},
    "revenue_raw": {"type": "mean", "event": "purchase", "value": "revenue"},
    "revenue_capped": {"type": "mean", "event": "purchase", "value": "revenue",
                       "winsorize_percentile": 95},
    "ctr": {"type": "ratio", "numerator": {"event": "click"},
            "denominator": {"event": "impression"}},
}  # fmt: skip
DESIGNS = {
    # +4 points of signups and +15% purchases in the treatment
    "signup_flow": Design("signup_flow", 5000, signup=(0.10, 0.14), purchase_rate=(1.0, 1.15),
                          seed=1),
    "aa": Design("aa", 3000, seed=2),
    # assigned 55/45 although configured 50/50
    "srm": Design("srm", 3000, weights=(0.55, 0.45), signup=(0.10, 0.14), seed=3),
    # better on mobile, worse on desktop
    "hetero": Design("hetero", 5000, segment_signup={"mobile": (0.08, 0.16),
                                                     "desktop": (0.16, 0.08)}, seed=4),
}  # fmt: skip
SEGMENTS_YAML = {
    "features": {"views": {"count": {"events": ["page_view"]}}},
    "segments": {
        "mobile": {"condition": {"views": {"$gte": 1}}},
        "desktop": {"condition": {"views": {"$gte": 2}}},
        "vip": {"condition": {"views": {"$gte": 3}}},
    },
}
FEATURES_YAML = {
    "features": {
        "signup-flow": {
            "defaultValue": False,
            "rules": [{
                "key": "signup_flow", "variations": [False, True], "weights": [0.5, 0.5],
                "meta": [{"key": "control", "name": "Control"},
                         {"key": "new", "name": "New flow"}],
            }],
        }
    },
    "experiments": {
        "signup_flow": {"name": "New signup flow", "segments": ["mobile", "desktop", "vip"],
                        "guardrails": ["ctr"], "metrics": METRICS},
        "aa": {"segments": ["mobile", "desktop"], "metrics": METRICS},
        "srm": {"weights": [0.5, 0.5], "metrics": METRICS},
        "hetero": {"segments": ["mobile", "desktop"], "metrics": METRICS},
    },
}  # fmt: skip


@dataclass
class Stored:
    """A project folder, its loaded definitions and the events it holds."""

    root: Path
    project: Project
    events: list[dict[str, Any]]


def write_definitions(root: Path) -> Project:
    """The test experiments' ``features.yaml`` and ``segments.yaml``."""
    (root / "features.yaml").write_text(yaml.safe_dump(FEATURES_YAML, sort_keys=False))
    (root / "segments.yaml").write_text(yaml.safe_dump(SEGMENTS_YAML, sort_keys=False))
    return load_project(root)


def store(warehouse: Warehouse, project: Project, events: list[dict[str, Any]]) -> None:
    """Ingest through the Collector (validation, dedup, identities), checking all are accepted."""
    collector = Collector(warehouse, project.settings)
    for i in range(0, len(events), 50_000):
        result = collector.ingest(
            raw_from_items(events[i : i + 50_000], project.settings.limits), "test"
        )
        assert result.count("accepted") == len(events[i : i + 50_000]), result.errors[:3]


@pytest.fixture(scope="package")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Stored:
    """All four experiments in one DuckDB project."""
    root = write_project(tmp_path_factory.mktemp("experiments") / "shop")
    project = write_definitions(root)
    events = [e for d in DESIGNS.values() for e in simulate(d)]
    warehouse = Warehouse(project.settings.store_url)
    try:
        store(warehouse, project, events)
    finally:
        warehouse.close()
    return Stored(root, project, events)
