"""segments.yaml is validated: schema errors and semantic errors name file, key path and reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tailorkit.project import ConfigError, load_project
from tailorkit.segment.definitions import parse_definitions
from tests.segment.common import shop_document


def write(project_dir: Path, doc: Any) -> None:
    (project_dir / "segments.yaml").write_text(yaml.safe_dump(doc))


def test_the_shipped_example_is_valid(project_dir: Path) -> None:
    write(project_dir, shop_document())
    project = load_project(project_dir)
    definitions = parse_definitions(project.definitions["segments"])
    assert len(definitions.segments) == 20 and len(definitions.features.names) == 35


@pytest.mark.parametrize(
    ("doc", "path", "reason"),
    [
        ({"features": {"x": {"counts": {}}}}, "features.x", "'counts' was unexpected"),
        ({"features": {"x": {"count": {"window": "24hours"}}}}, "features.x.count.window",
         "does not match"),
        ({"features": {"x": {"sum": {"events": ["buy"]}}}}, "features.x.sum",
         "'property' is a required property"),
        ({"features": {"Bad-Name": {"count": {}}}}, "features", "does not match"),
        ({"features": {"x": {"first_seen": {"window": "7d"}}}}, "features.x.first_seen",
         "'window' was unexpected"),
        ({"features": {"x": {"count": {}, "sum": {"property": "a"}}}}, "features.x",
         "is valid under each of"),
        ({"features": {"x": {"score": {"weights": {"a": "high"}}}}},
         "features.x.score.weights.a", "is not of type 'number'"),
        ({"segments": {"s": {"condition": {}, "priority": "high"}}}, "segments.s.priority",
         "is not of type 'integer'"),
        ({"segments": {"s": {}}}, "segments.s", "'condition' is a required property"),
        ({"segments": {"s": {"condition": {}, "webhooks": [{"url": "ftp://x"}]}}},
         "segments.s.webhooks.0.url", "does not match"),
        ({"profiles": {"store": "mysql://x"}}, "profiles.store", "does not match"),
        ({"segment": {}}, "", "'segment' was unexpected"),
    ],
)  # fmt: skip
def test_schema_errors_name_file_key_and_reason(
    project_dir: Path, doc: Any, path: str, reason: str
) -> None:
    write(project_dir, doc)
    with pytest.raises(ConfigError) as info:
        load_project(project_dir)
    assert (info.value.file, info.value.path) == ("segments.yaml", path)
    assert reason in info.value.message


BASE = {"views": {"count": {"events": ["product_view"], "window": "24h"}}}


@pytest.mark.parametrize(
    ("doc", "path", "reason"),
    [
        ({"segments": {"s": {"condition": {"nope": 1}}}}, "segments.s.condition",
         "unknown feature 'nope'"),
        ({"features": {**BASE, "seen": {"last_seen": {}}},
          "segments": {"s": {"condition": {"seen": {"$gt": 1}}}}},
         "segments.s.condition", "timestamp"),
        ({"features": BASE, "segments": {"s": {"condition": {"views": {"$size": 2}}}}},
         "segments.s.condition.views.$size", "not supported in batch"),
        ({"features": {"r": {"ratio": ["views", "missing"]}, **BASE}}, "features.r",
         "unknown feature 'missing'"),
        ({"features": {"a": {"ratio": ["b", "views"]}, "b": {"ratio": ["a", "views"]}, **BASE}},
         "features.a", "cycle"),
        ({"features": {"d": {"recency": "views"}, **BASE}}, "features.d.recency",
         "not a timestamp"),
        ({"features": {"x": {"count": {"events": ["segment_entered"]}}}}, "features.x.count.events",
         "written by tailorkit"),
        ({"features": {"x": {"count": {"where": {"tags.0": "a"}}}}}, "features.x.count.where",
         "no indexes"),
        ({"features": {"x": {"count": {"where": {"p": {"$elemMatch": {"a": 1}}}}}}},
         "features.x.count.where.p.$elemMatch", "not supported in batch"),
        ({"features": {"segments": {"count": {}}}}, "features.segments", "reserved"),
        ({"features": {"s": {"score": {"weights": {"d": 1}}}, "seen": {"last_seen": {}},
                       "d": {"recency": "seen"}}}, "features.s", "recency changes with the clock"),
    ],
)  # fmt: skip
def test_semantic_errors_name_the_key_path(doc: Any, path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_definitions(doc)
    assert (info.value.file, info.value.path) == ("segments.yaml", path)
    assert reason in info.value.message


def test_segments_are_ordered_by_priority_and_groups_resolved() -> None:
    d = parse_definitions(
        {
            "features": BASE,
            "segments": {
                "b": {"condition": {"views": 1}, "exclusive_group": "g", "priority": 1},
                "a": {"condition": {"views": 2}, "exclusive_group": "g", "priority": 1},
                "c": {"condition": {"views": 3}, "exclusive_group": "g", "priority": 9},
            },
        }
    )
    assert [s.key for s in d.groups()["g"]] == ["c", "a", "b"]
    assert d.thresholds("views") == [1.0, 2.0, 3.0]
