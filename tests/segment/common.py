"""Helpers shared by the profile and segment tests: demo data, both executors, comparisons."""

from __future__ import annotations

import math
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from tailorkit.profile.batch import profile_table
from tailorkit.profile.windows import to_us
from tailorkit.segment.batch import with_segments
from tailorkit.segment.definitions import Definitions, parse_definitions
from tailorkit.segment.online import SegmentEngine
from tailorkit.store.warehouse import EVENT_ARROW_SCHEMA

SYSTEM = ("segment_entered", "segment_exited")


@cache
def shop_document() -> dict[str, Any]:
    """The example ``segments.yaml`` shipped for the demo shop."""
    text = resources.files("tailorkit.segment").joinpath("examples/shop.yaml").read_text()
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def shop_definitions() -> Definitions:
    """Parsed example definitions (31 features + RFM, 20 segments)."""
    return parse_definitions(shop_document())


def stored_events(demo_events: pa.Table) -> pa.Table:
    """Demo events as the collector stores them (for feeding the engine directly)."""
    n = demo_events.num_rows
    refused = pc.match_substring(demo_events["consent"], '"personalization":false')
    return pa.table(
        {
            "event_id": demo_events["event_id"],
            "type": demo_events["type"],
            "user_id": demo_events["user_id"],
            "anonymous_id": demo_events["anonymous_id"],
            "timestamp": demo_events["timestamp"],
            "received_at": demo_events["timestamp"],
            "clock_skew_ms": pa.nulls(n, pa.int64()),
            "source": pa.array(["demo"] * n),
            "properties": demo_events["properties"],
            "context": demo_events["context"],
            "personalization": pc.invert(refused),
        }
    ).cast(EVENT_ARROW_SCHEMA)


def batch_rows(definitions: Definitions, events: Any, at: datetime) -> dict[str, dict[str, Any]]:
    """Batch executor: features and segment flags per person as of ``at``."""
    table = with_segments(definitions, profile_table(definitions.features, events, at))
    return {row["person_id"]: row for row in table.to_pyarrow().to_pylist()}


def online_rows(engine: SegmentEngine) -> dict[str, dict[str, Any]]:
    """Online executor: features and memberships of every profiled person, now."""
    out = {}
    for person in engine.store.persons():
        values = engine.features(person)
        if values is not None:
            members = set(engine.members(person))
            values.update({s.key: s.key in members for s in engine.definitions.segments})
            out[person] = values
    return out


def same_value(a: Any, b: Any) -> bool:
    """Equal, floats within tolerance, timestamps compared as epoch microseconds."""
    if isinstance(a, datetime):
        a = to_us(a)
    if isinstance(b, datetime):
        b = to_us(b)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def differences(
    definitions: Definitions, left: dict[str, dict[str, Any]], right: dict[str, dict[str, Any]]
) -> dict[str, list[Any]]:
    """Mismatches by column (``persons`` for persons present on one side only)."""
    found: dict[str, list[Any]] = {}
    only = sorted(set(left) ^ set(right))
    if only:
        found["persons"] = only
    columns = [*definitions.features.names, *(s.key for s in definitions.segments)]
    for person in sorted(set(left) & set(right)):
        for column in columns:
            a, b = left[person][column], right[person][column]
            if not same_value(a, b):
                found.setdefault(column, []).append((person, a, b))
    return found
