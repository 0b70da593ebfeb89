"""Profile feature definitions, parsed from ``segments.yaml``.

A feature is declared, never coded. Each entry under ``features:`` names one
kind:

* windowed aggregates over events filtered by type and property condition:
  ``count``, ``sum``, ``distinct``, ``min``, ``max`` (``window``: ``30m``,
  ``24h``, ``7d``, ``lifetime``...); ``first_seen``/``last_seen`` (lifetime
  timestamps);
* derived: ``ratio`` (of two features), ``recency`` (days since a timestamp
  feature), ``score`` (weighted sum, e.g. an engagement score);
* ``trait``: the latest value of a key sent with ``identify``;
* ``model_score``: the latest output of a model trained by ``tailorkit build``
  (``propensity_to_buy``, ``churn_risk``, ``cluster``), read from the
  warehouse table ``profile_scores`` (see ``docs/learn.md``).

An ``rfm:`` block adds ``rfm_r``, ``rfm_f``, ``rfm_m`` (quintile scores 1-5
over the user base) and ``rfm_score`` (their sum), computed in batch.

>>> fs = parse_features({"features": {
...     "views_24h": {"count": {"events": ["product_view"], "window": "24h"}},
...     "revenue_30d": {"sum": {"events": ["purchase"], "property": "revenue",
...                             "window": "30d"}}}})
>>> fs.features["views_24h"].window, fs.value_type("revenue_30d")
(1440, 'float')
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ibis

from tailorkit.collect.quality import SYSTEM_EVENT_TYPES as SYSTEM_TYPES
from tailorkit.profile.sqlconditions import (
    UnsupportedCondition,
    check_path,
    compile_sql,
    json_value,
)
from tailorkit.profile.windows import LIFETIME, parse_window
from tailorkit.project.loader import ConfigError

FILE = "segments.yaml"
AGGREGATES = ("count", "sum", "distinct", "min", "max", "first_seen", "last_seen")
DERIVED = ("ratio", "recency", "score", "trait", "model_score")
KINDS = AGGREGATES + DERIVED
NUMERIC_PROPERTY = ("sum", "min", "max")
#: Events tailorkit writes itself; they never feed profiles (nor the quality flags).
SYSTEM_EVENT_TYPES = frozenset(SYSTEM_TYPES)
RFM_FEATURES = ("rfm_r", "rfm_f", "rfm_m", "rfm_score")
TRAIT_TYPES = {"string": "string", "number": "float", "boolean": "boolean"}
#: Scores ``tailorkit build`` writes to ``profile_scores``, and their value types
#: (the schema's ``model_score`` enum lists the same names).
MODEL_SCORES = {"propensity_to_buy": "float", "churn_risk": "float", "cluster": "int"}
RESERVED = frozenset({"segments", "person_id", "user_id", "anonymous_id", *RFM_FEATURES})


@dataclass(frozen=True)
class EventFilter:
    """Which events feed an aggregate: types (empty = all) and a property condition."""

    types: tuple[str, ...] = ()
    where: Mapping[str, Any] | None = None

    @property
    def key(self) -> str:
        """Canonical text: aggregates with equal filters share online state."""
        return json.dumps([sorted(self.types), self.where], sort_keys=True)


@dataclass(frozen=True)
class Aggregate:
    """A windowed aggregate over filtered events (``kind`` in :data:`AGGREGATES`)."""

    name: str
    kind: str
    filter: EventFilter
    prop: str | None
    window: int | None  # minutes; None = lifetime
    window_text: str = LIFETIME
    description: str = ""

    @property
    def stream_key(self) -> tuple[str, int | None, str | None]:
        """Aggregates with the same key share one online stream."""
        return (self.filter.key, self.window, self.prop)


@dataclass(frozen=True)
class Ratio:
    """``numerator / denominator``; null when the denominator is 0 or null."""

    name: str
    numerator: str
    denominator: str
    description: str = ""


@dataclass(frozen=True)
class Recency:
    """Days since a timestamp feature, at one-minute resolution: ``(M - m) / 1440``."""

    name: str
    of: str
    description: str = ""


@dataclass(frozen=True)
class Score:
    """``sum(weight * f(value))`` in declaration order, nulls as 0; f: x or ln(1 + max(x, 0))."""

    name: str
    weights: tuple[tuple[str, float], ...]
    transform: str = "linear"
    description: str = ""


@dataclass(frozen=True)
class Trait:
    """Latest value of ``key`` in ``identify`` properties whose JSON type is ``type``."""

    name: str
    key: str
    type: str
    description: str = ""


@dataclass(frozen=True)
class ModelScore:
    """The latest value of model score ``score`` for the person (``profile_scores``).

    Computed in batch by ``tailorkit build``; null for persons the model did not score.
    """

    name: str
    score: str
    description: str = ""


@dataclass(frozen=True)
class Rfm:
    """RFM inputs: recency, count and sum of ``property`` over filtered events in ``window``."""

    filter: EventFilter
    prop: str
    window: int | None
    window_text: str = LIFETIME


Feature = Aggregate | Ratio | Recency | Score | Trait | ModelScore


@dataclass(frozen=True)
class ProfileSettings:
    """Online executor settings (``profiles:`` in ``segments.yaml``)."""

    store: str = "memory"
    key_prefix: str = "tailorkit:"
    max_distinct: int = 1000
    sweep_seconds: float = 10.0
    #: How long a starting server waits for the replay of stored events before it
    #: answers; the replay goes on in the background after that.
    startup_wait_seconds: float = 5.0


@dataclass(frozen=True)
class FeatureSet:
    """Parsed features in dependency order (inputs before the features using them).

    >>> fs = parse_features({"features": {
    ...     "rate": {"ratio": ["carts", "views"]},
    ...     "views": {"count": {"events": ["view"]}}, "carts": {"count": {"events": ["cart"]}}}})
    >>> list(fs.features), fs.value_type("rate"), fs.closure(["rate"])
    (['carts', 'views', 'rate'], 'float', ['carts', 'views', 'rate'])
    """

    features: dict[str, Feature]
    rfm: Rfm | None = None
    settings: ProfileSettings = field(default_factory=ProfileSettings)

    def value_type(self, name: str) -> str:
        """``int``, ``float``, ``string``, ``boolean`` or ``timestamp``."""
        if name in RFM_FEATURES:
            return "int"
        feature = self.features[name]
        if isinstance(feature, Aggregate):
            if feature.kind in ("count", "distinct"):
                return "int"
            return "timestamp" if feature.kind in ("first_seen", "last_seen") else "float"
        if isinstance(feature, Trait):
            return TRAIT_TYPES[feature.type]
        if isinstance(feature, ModelScore):
            return MODEL_SCORES[feature.score]
        return "float"

    @property
    def names(self) -> list[str]:
        """Every feature a profile has, including RFM scores when declared."""
        return [*self.features, *(RFM_FEATURES if self.rfm else ())]

    @property
    def model_scores(self) -> dict[str, str]:
        """Feature name -> model score name, for the ``model_score`` features.

        >>> parse_features({"features": {"risk": {"model_score": "churn_risk"}}}).model_scores
        {'risk': 'churn_risk'}
        """
        return {n: f.score for n, f in self.features.items() if isinstance(f, ModelScore)}

    @property
    def batch_names(self) -> list[str]:
        """Features only batch computes (RFM scores, model scores): pushed to online profiles."""
        return [*(RFM_FEATURES if self.rfm else ()), *self.model_scores]

    @property
    def condition_names(self) -> list[str]:
        """Features usable in segment conditions (timestamps are not; use recency)."""
        return [n for n in self.names if self.value_type(n) != "timestamp"]

    def inputs(self, name: str) -> tuple[str, ...]:
        """Features that ``name`` is computed from (direct inputs)."""
        feature = self.features.get(name)
        if isinstance(feature, Ratio):
            return (feature.numerator, feature.denominator)
        if isinstance(feature, Recency):
            return (feature.of,)
        if isinstance(feature, Score):
            return tuple(n for n, _ in feature.weights)
        return ()

    def closure(self, names: list[str]) -> list[str]:
        """``names`` and everything they are computed from, in dependency order."""
        wanted: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name not in wanted:
                wanted.add(name)
                stack.extend(self.inputs(name))
        return [n for n in self.names if n in wanted]


def _fail(path: str, message: str) -> ConfigError:
    return ConfigError(FILE, path, message)


def parse_settings(doc: Mapping[str, Any] | None) -> ProfileSettings:
    """``profiles:`` block (already schema-checked)."""
    doc = doc or {}
    return ProfileSettings(
        store=str(doc.get("store", "memory")),
        key_prefix=str(doc.get("key_prefix", "tailorkit:")),
        max_distinct=int(doc.get("max_distinct", 1000)),
        sweep_seconds=float(doc.get("sweep_seconds", 10.0)),
        startup_wait_seconds=float(doc.get("startup_wait_seconds", 5.0)),
    )


_CHECK_TABLE = ibis.table({"properties": "string"}, name="events")


def check_where(where: Any, path: str) -> None:
    """Refuse a property condition the batch executor cannot translate.

    >>> check_where({"price": {"$gte": 100}}, "features.x.count.where")
    >>> check_where({"tags": {"$size": 2}}, "features.x.count.where")
    Traceback (most recent call last):
    ...
    tailorkit.project.loader.ConfigError: segments.yaml: features.x.count.where.tags.$size: \
operator $size is not supported in batch
    """

    def resolve(prop: str) -> Any:
        check_path(prop, path)
        return json_value(_CHECK_TABLE.properties, prop)

    try:
        compile_sql(where, resolve)
    except UnsupportedCondition as exc:
        where_path = f"{path}.{exc.path}" if exc.path and exc.path != path else path
        raise _fail(where_path, exc.reason) from exc


def _filter(spec: Mapping[str, Any], path: str) -> EventFilter:
    types = tuple(spec.get("events", ()))
    system = sorted(SYSTEM_EVENT_TYPES.intersection(types))
    if system:
        raise _fail(f"{path}.events", f"{system[0]} is written by tailorkit and never profiled")
    where = spec.get("where")
    if where is not None:
        check_where(where, f"{path}.where")
    return EventFilter(types, where)


def _window(spec: Mapping[str, Any], path: str) -> tuple[int | None, str]:
    text = str(spec.get("window", LIFETIME))
    try:
        return parse_window(text), text
    except ValueError as exc:
        raise _fail(f"{path}.window", str(exc)) from exc


def _aggregate(name: str, kind: str, spec: Mapping[str, Any], path: str, desc: str) -> Aggregate:
    prop = spec.get("property")
    if kind in (*NUMERIC_PROPERTY, "distinct") and not prop:
        raise _fail(path, f"'{kind}' needs a 'property'")
    if prop is not None:
        try:
            check_path(prop, f"{path}.property")
        except UnsupportedCondition as exc:
            raise _fail(exc.path, exc.reason) from exc
    window, text = _window(spec, path)
    if kind in ("first_seen", "last_seen") and window is not None:
        raise _fail(f"{path}.window", f"'{kind}' is a lifetime timestamp (no window)")
    return Aggregate(name, kind, _filter(spec, path), prop, window, text, desc)


def _derived(name: str, kind: str, spec: Any, path: str, desc: str) -> Feature:
    if kind == "ratio":
        return Ratio(name, str(spec[0]), str(spec[1]), desc)
    if kind == "recency":
        return Recency(name, str(spec), desc)
    if kind == "score":
        weights = tuple((str(k), float(w)) for k, w in spec["weights"].items())
        return Score(name, weights, str(spec.get("transform", "linear")), desc)
    if kind == "model_score":
        # the schema says so too, but parse_features may run on an unchecked document
        if not isinstance(spec, str) or spec not in MODEL_SCORES:
            known = ", ".join(MODEL_SCORES)
            raise _fail(path, f"unknown model score {spec!r} (tailorkit build writes {known})")
        return ModelScore(name, str(spec), desc)
    return Trait(name, str(spec["key"]), str(spec.get("type", "string")), desc)


def _feature(name: str, spec: Mapping[str, Any]) -> Feature:
    path = f"features.{name}"
    kinds = [k for k in spec if k in KINDS]
    if len(kinds) != 1:
        raise _fail(path, f"exactly one of {', '.join(KINDS)} is required")
    kind = kinds[0]
    desc = str(spec.get("description", ""))
    if kind in AGGREGATES:
        return _aggregate(name, kind, spec[kind] or {}, f"{path}.{kind}", desc)
    return _derived(name, kind, spec[kind], f"{path}.{kind}", desc)


def _check_references(features: dict[str, Feature], types: FeatureSet) -> None:
    for name, feature in features.items():
        for ref in types.inputs(name):
            if ref not in features and ref not in RFM_FEATURES:
                raise _fail(f"features.{name}", f"unknown feature {ref!r}")
        if isinstance(feature, Recency) and types.value_type(feature.of) != "timestamp":
            raise _fail(f"features.{name}.recency", f"{feature.of!r} is not a timestamp feature")
        if isinstance(feature, Ratio | Score):
            for ref in types.inputs(name):
                kind = features.get(ref)
                if isinstance(kind, Recency) or types.value_type(ref) not in ("int", "float"):
                    raise _fail(
                        f"features.{name}",
                        f"{ref!r} must be a numeric aggregate (recency changes with the clock)",
                    )


def _ordered(features: dict[str, Feature], types: FeatureSet) -> dict[str, Feature]:
    """Dependency order; refuses cycles."""
    done: dict[str, Feature] = {}
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in done or name not in features:
            return
        if name in visiting:
            raise _fail(f"features.{name}", "features refer to each other in a cycle")
        visiting.add(name)
        for ref in types.inputs(name):
            visit(ref)
        visiting.discard(name)
        done[name] = features[name]

    for name in features:
        visit(name)
    return done


def _rfm(spec: Mapping[str, Any] | None) -> Rfm | None:
    if spec is None:
        return None
    window, text = _window(spec, "rfm")
    return Rfm(_filter(spec, "rfm"), str(spec["property"]), window, text)


def parse_features(doc: Mapping[str, Any]) -> FeatureSet:
    """Parse the ``features``/``rfm``/``profiles`` parts of a ``segments.yaml`` document.

    The document should already have passed the JSON Schema
    (:func:`tailorkit.project.load_project`); this adds the checks a schema
    cannot express (references, cycles, translatable conditions) and raises
    :class:`~tailorkit.project.ConfigError` naming the key path.
    """
    raw: dict[str, Feature] = {}
    for name, spec in (doc.get("features") or {}).items():
        if name in RESERVED:
            raise _fail(f"features.{name}", f"{name!r} is a reserved name")
        raw[name] = _feature(name, spec)
    rfm = _rfm(doc.get("rfm"))
    draft = FeatureSet(raw, rfm)
    _check_references(raw, draft)
    return FeatureSet(_ordered(raw, draft), rfm, parse_settings(doc.get("profiles")))
