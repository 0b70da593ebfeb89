"""Segment definitions: a key, a condition over profile features, priority, group, size rules.

A segment's ``condition`` is a GrowthBook-style condition whose attributes
are the profile's features (and traits). Within an ``exclusive_group`` a user
is in at most one segment: the matching one with the highest ``priority``
(ties: the smaller key). Segments smaller than ``min_users`` are flagged and
left out of targeting unless ``force: true``.

>>> d = parse_definitions({
...     "features": {"views_24h": {"count": {"events": ["product_view"], "window": "24h"}}},
...     "segments": {"browsers": {"condition": {"views_24h": {"$gte": 3}},
...                               "owner": "growth"}}})
>>> d.segments[0].key, d.segments[0].inputs
('browsers', ('views_24h',))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ibis

from tailorkit.evaluate.jsvalues import js_to_number
from tailorkit.profile.batch import condition_paths
from tailorkit.profile.definitions import FILE, FeatureSet, Recency, parse_features
from tailorkit.profile.sqlconditions import SqlValue, UnsupportedCondition, compile_sql
from tailorkit.project.loader import ConfigError

ENTERED, EXITED = "segment_entered", "segment_exited"
_SQL_TYPES = {"int": "int64", "float": "float64", "string": "string", "boolean": "boolean"}


@dataclass(frozen=True)
class Webhook:
    """Where to POST membership changes, signed with HMAC-SHA256 when a secret is set."""

    url: str
    on: tuple[str, ...] = (ENTERED, EXITED)
    secret: str = ""
    max_attempts: int = 6
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class Segment:
    """One segment definition."""

    key: str
    condition: Mapping[str, Any]
    priority: int = 0
    group: str | None = None
    min_users: int = 0
    force: bool = False
    description: str = ""
    owner: str = ""
    webhooks: tuple[Webhook, ...] = ()
    inputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Definitions:
    """Features and segments of one ``segments.yaml``; segments in evaluation order.

    >>> d = parse_definitions({"features": {"n": {"count": {}}}, "segments": {
    ...     "some": {"condition": {"n": {"$gte": 1}}, "exclusive_group": "g"},
    ...     "many": {"condition": {"n": {"$gte": 10}}, "exclusive_group": "g", "priority": 5}}})
    >>> [s.key for s in d.groups()["g"]], d.thresholds("n")
    (['many', 'some'], [1.0, 10.0])
    """

    features: FeatureSet
    segments: tuple[Segment, ...] = ()
    bits: dict[str, int] = field(default_factory=dict)

    def segment(self, key: str) -> Segment:
        """The segment called ``key``."""
        return self.segments[self.bits[key]]

    def groups(self) -> dict[str, list[Segment]]:
        """Exclusive groups, members by descending priority (ties: key)."""
        found: dict[str, list[Segment]] = {}
        for seg in self.segments:
            if seg.group:
                found.setdefault(seg.group, []).append(seg)
        for members in found.values():
            members.sort(key=lambda s: (-s.priority, s.key))
        return found

    def thresholds(self, feature: str) -> list[float]:
        """Numbers that conditions compare ``feature`` with (for clock-driven re-checks)."""
        found: list[float] = []
        for seg in self.segments:
            _collect_numbers(seg.condition, feature, found, inside=False)
        return sorted(set(found))


def _collect_numbers(node: Any, feature: str, out: list[float], inside: bool) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            _collect_numbers(value, feature, out, inside or key == feature)
    elif isinstance(node, list):
        for value in node:
            _collect_numbers(value, feature, out, inside)
    elif inside and not isinstance(node, bool) and isinstance(node, int | float | str):
        number = js_to_number(node)
        if number == number and abs(number) != float("inf"):
            out.append(number)


def _fail(path: str, message: str) -> ConfigError:
    return ConfigError(FILE, path, message)


def _secret(spec: Mapping[str, Any], path: str) -> str:
    env = spec.get("secret_env")
    if env:
        value = os.environ.get(str(env), "")
        if not value:
            raise _fail(f"{path}.secret_env", f"environment variable {env} is not set")
        return value
    return str(spec.get("secret", ""))


def _webhooks(specs: list[Mapping[str, Any]], path: str) -> tuple[Webhook, ...]:
    hooks = []
    for i, spec in enumerate(specs):
        on = tuple(f"segment_{kind}" for kind in spec.get("on", ("entered", "exited")))
        hooks.append(
            Webhook(
                url=str(spec["url"]),
                on=on,
                secret=_secret(spec, f"{path}.{i}"),
                max_attempts=int(spec.get("max_attempts", 6)),
                timeout_seconds=float(spec.get("timeout_seconds", 5.0)),
            )
        )
    return tuple(hooks)


def _check_condition(key: str, condition: Any, features: FeatureSet) -> tuple[str, ...]:
    path = f"segments.{key}.condition"
    usable = set(features.condition_names)
    inputs = []
    for name in condition_paths(condition):
        if name not in usable:
            why = "is a timestamp (compare a recency feature)" if name in features.names else ""
            raise _fail(path, f"unknown feature {name!r} {why}".strip())
        inputs.append(name)
    table = ibis.table({n: _SQL_TYPES[features.value_type(n)] for n in usable}, name="profiles")
    try:
        compile_sql(condition, lambda n: typed_value(table, n, features.value_type(n)), path)
    except UnsupportedCondition as exc:
        raise _fail(exc.path, exc.reason) from exc
    return tuple(dict.fromkeys(inputs))


def typed_value(table: ibis.Table, name: str, value_type: str) -> SqlValue:
    """A typed profile column as condition slots."""
    column = table[name]
    if value_type in ("int", "float"):
        return SqlValue(number=column)
    if value_type == "boolean":
        return SqlValue(flag=column)
    return SqlValue(text=column)


def _segment(key: str, spec: Mapping[str, Any], features: FeatureSet) -> Segment:
    condition = spec.get("condition") or {}
    return Segment(
        key=key,
        condition=condition,
        priority=int(spec.get("priority", 0)),
        group=spec.get("exclusive_group"),
        min_users=int(spec.get("min_users", 0)),
        force=bool(spec.get("force", False)),
        description=str(spec.get("description", "")),
        owner=str(spec.get("owner", "")),
        webhooks=_webhooks(spec.get("webhooks") or [], f"segments.{key}.webhooks"),
        inputs=_check_condition(key, condition, features),
    )


def parse_definitions(doc: Mapping[str, Any] | None) -> Definitions:
    """Parse a validated ``segments.yaml`` document (see :func:`parse_features`).

    Raises :class:`~tailorkit.project.ConfigError` with the key path for
    references to unknown features and conditions the batch executor cannot run.
    """
    doc = doc or {}
    features = parse_features(doc)
    parsed = [_segment(k, s, features) for k, s in (doc.get("segments") or {}).items()]
    parsed.sort(key=lambda s: (-s.priority, s.key))
    bits = {seg.key: i for i, seg in enumerate(parsed)}
    return Definitions(features, tuple(parsed), bits)


def time_dependent(definitions: Definitions, segment: Segment) -> bool:
    """Whether a segment can change with the clock alone (windows, recency)."""
    features = definitions.features
    for name in features.closure(list(segment.inputs)):
        feature = features.features.get(name)
        if isinstance(feature, Recency):
            return True
        if getattr(feature, "window", None) is not None:
            return True
    return False
