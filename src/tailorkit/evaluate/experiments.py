"""Experiment assignment (GrowthBook's ``run``), compiled once per definition.

:func:`compile_experiment` turns an experiment definition (an inline
experiment, or the experiment built from a feature rule) into a
:class:`CompiledExperiment`; :meth:`CompiledExperiment.run` assigns one
user.  The steps and their order follow the JavaScript SDK: invalid or
disabled → URL query-string override → forced variation → inactive → hash
attribute → sticky bucket → targeting (condition, filters or namespace,
prerequisites) → URL → hash and bucket ranges → blocked sticky version →
coverage → forced index → QA mode → stopped → result, sticky write and
exposure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tailorkit.evaluate.conditions import Predicate, compile_condition
from tailorkit.evaluate.context import Context, hash_attribute_value, hash_string
from tailorkit.evaluate.hashing import (
    SeedHasher,
    get_bucket_ranges,
    get_query_string_override,
    in_namespace,
)
from tailorkit.evaluate.jsvalues import js_to_number, js_truthy
from tailorkit.evaluate.results import ExperimentResult, ExposureRecord
from tailorkit.evaluate.urls import is_url_targeted, url_matches_regex

if TYPE_CHECKING:
    from tailorkit.evaluate.results import FeatureResult

__all__ = [
    "BLOCKED",
    "MISS",
    "CompiledExperiment",
    "ParentCheck",
    "compile_experiment",
    "compile_filters",
    "compile_parents",
]

log = logging.getLogger(__name__)
Range = tuple[float, float]
#: (feature id, condition on ``{"value": ...}``, gate)
ParentCheck = tuple[str, Predicate, bool]
#: Evaluates a prerequisite feature: (feature id, context, stack) → result
ParentEvaluator = Callable[[str, Context, frozenset[str]], "FeatureResult"]


class _Outcome:
    """A non-result outcome of an assignment (not in the experiment)."""

    __slots__ = ("name", "sticky_bucket_used")

    def __init__(self, name: str, sticky_bucket_used: bool) -> None:
        self.name = name
        self.sticky_bucket_used = sticky_bucket_used

    def __repr__(self) -> str:
        return self.name


#: Not in the experiment.
MISS = _Outcome("MISS", False)
#: Not in the experiment because a sticky bucket's version is blocked.
BLOCKED = _Outcome("BLOCKED", True)


class _Filter:
    """A hash filter: users whose hash falls in none of ``ranges`` are out."""

    __slots__ = ("attribute", "hasher", "ranges")

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.attribute: str = spec.get("attribute") or "id"
        self.hasher = SeedHasher(str(spec.get("seed", "")), spec.get("hashVersion") or 2)
        self.ranges: list[Range] = [(float(r[0]), float(r[1])) for r in spec.get("ranges") or []]

    def excludes(self, ctx: Context) -> bool:
        text = ctx.attributes.get(self.attribute)
        if type(text) is not str or not text:
            _, value = hash_attribute_value(ctx.attributes, self.attribute, None)
            if not js_truthy(value):
                return True
            text = hash_string(value)
        n = self.hasher.hash(text, ctx.prefix_cache)
        if n is None:
            return True
        return not any(low <= n < high for low, high in self.ranges)


def compile_filters(specs: Any) -> tuple[_Filter, ...] | None:
    """Compile a rule's or experiment's ``filters`` (``None`` if absent).

    >>> (only,) = compile_filters([{"seed": "s", "ranges": [[0, 0.5]]}])
    >>> only.excludes(Context({"id": "4"})), only.excludes(Context({}))
    (False, True)
    """
    if not isinstance(specs, Sequence) or isinstance(specs, str):
        return None
    return tuple(_Filter(spec) for spec in specs if isinstance(spec, Mapping))


def compile_parents(specs: Any, saved_groups: Mapping[str, Any]) -> tuple[ParentCheck, ...]:
    """Compile ``parentConditions`` (prerequisite features).

    >>> ((parent, condition, gate),) = compile_parents(
    ...     [{"id": "f", "condition": {"value": True}, "gate": True}], {})
    >>> parent, condition({"value": True}), gate
    ('f', True, True)
    """
    if not isinstance(specs, Sequence):
        return ()
    return tuple(
        (
            str(p["id"]),
            compile_condition(p.get("condition") or {}, saved_groups),
            bool(p.get("gate")),
        )
        for p in specs
        if isinstance(p, Mapping) and p.get("id") is not None
    )


class _VariationMeta:
    __slots__ = ("key", "name", "passthrough")

    def __init__(self, index: int, meta: Any) -> None:
        meta = meta if isinstance(meta, Mapping) else {}
        self.key: str = str(meta.get("key") or index)
        self.name: str | None = meta.get("name") or None
        self.passthrough = bool(js_truthy(meta.get("passthrough")))


class CompiledExperiment:
    """An experiment ready to assign users (see :func:`compile_experiment`)."""

    __slots__ = (
        "_bandit_spec",
        "_range_lengths",
        "_spec",
        "active",
        "bandit",
        "condition",
        "disable_sticky",
        "enrollment_probability",
        "fallback_attribute",
        "filters",
        "force",
        "has_force",
        "hash_attribute",
        "hasher",
        "key",
        "meta",
        "meta_index",
        "min_bucket_version",
        "namespace",
        "num_variations",
        "parents",
        "ranges",
        "sticky_key",
        "stopped",
        "targeting",
        "url_pattern",
        "url_patterns",
        "variations",
    )

    _bandit_spec: dict[str, Any] | None
    _range_lengths: list[float]
    _spec: dict[str, Any]
    active: bool
    bandit: dict[str, Any] | None
    condition: Predicate | None
    disable_sticky: bool
    enrollment_probability: float
    fallback_attribute: str | None
    filters: tuple[_Filter, ...] | None
    force: Any
    has_force: bool
    hash_attribute: str
    hasher: SeedHasher
    key: str
    meta: list[_VariationMeta]
    meta_index: dict[str, int]
    min_bucket_version: int
    namespace: list[Any] | None
    num_variations: int
    parents: tuple[ParentCheck, ...]
    ranges: list[Range]
    sticky_key: str
    stopped: bool
    targeting: bool
    url_pattern: str | None
    url_patterns: list[Any] | None
    variations: list[Any]

    def to_dict(self, include_bandit: bool = True) -> dict[str, Any]:
        """The experiment definition as GrowthBook reports it in results.

        >>> compile_experiment({"key": "e", "variations": [0, 1]}).to_dict()
        {'key': 'e', 'variations': [0, 1]}
        """
        if include_bandit and self._bandit_spec is not None:
            return {**self._spec, "contextualBandit": dict(self._bandit_spec)}
        return dict(self._spec)

    def run(
        self,
        ctx: Context,
        feature_id: str | None = None,
        evaluate_parent: ParentEvaluator | None = None,
        stack: frozenset[str] = frozenset(),
    ) -> ExperimentResult:
        """Assign one user; always returns a result (``in_experiment`` may be false).

        >>> exp = compile_experiment({"key": "e", "variations": [0, 1], "coverage": 0})
        >>> exp.run(Context({"id": "1"})).in_experiment
        False
        """
        outcome = self.assign(ctx, feature_id, evaluate_parent, stack)
        if isinstance(outcome, _Outcome):
            return self.result(ctx, -1, False, feature_id, None, outcome.sticky_bucket_used)
        return outcome

    def assign(
        self,
        ctx: Context,
        feature_id: str | None,
        evaluate_parent: ParentEvaluator | None,
        stack: frozenset[str],
    ) -> ExperimentResult | _Outcome:
        """Assign one user; :data:`MISS`/:data:`BLOCKED` when not in the experiment."""
        if self.num_variations < 2 or not ctx.enabled:
            return MISS
        if self.url_patterns is not None and not is_url_targeted(ctx.url, self.url_patterns):
            return MISS
        if ctx.url or ctx.forced_variations:
            forced = self._forced_variation(ctx)
            if forced is not None:
                return self.result(ctx, forced, False, feature_id)
        if not self.active:
            return MISS
        if ctx.sticky_service is not None and not self.disable_sticky:
            return self._assign_sticky(ctx, feature_id, evaluate_parent, stack)
        # The common case, inlined: a non-empty string id, no sticky bucketing
        attribute = self.hash_attribute
        value = ctx.attributes.get(attribute)
        if type(value) is str and value:
            text = value
        else:
            attribute, value = hash_attribute_value(ctx.attributes, attribute, None)
            if not js_truthy(value):
                return MISS
            text = hash_string(value)
        if self.targeting and not self._targeted(ctx, text, evaluate_parent, stack):
            return MISS
        if self.url_pattern is not None and not url_matches_regex(ctx.url, self.url_pattern):
            return MISS
        n = self.hasher.hash(text, ctx.prefix_cache)
        if n is None:
            return MISS
        index = 0
        for low, high in self.ranges:
            if low <= n < high:
                break
            index += 1
        else:
            return MISS
        if self.has_force:
            return self.result(ctx, self.force, False, feature_id)
        if ctx.qa_mode or self.stopped:
            return MISS
        meta = self.meta[index]
        result = ExperimentResult(
            self.variations[index],
            index,
            True,
            True,
            attribute,
            value,
            feature_id,
            meta.key,
            meta.name,
            n,
            meta.passthrough,
        )
        if self.bandit is not None:
            self._add_bandit(result)
        if ctx.on_exposure is not None:
            self._expose(ctx, result)
        return result

    def _assign_sticky(
        self,
        ctx: Context,
        feature_id: str | None,
        evaluate_parent: ParentEvaluator | None,
        stack: frozenset[str],
    ) -> ExperimentResult | _Outcome:
        """Assignment with sticky bucketing (hash attribute may fall back)."""
        attribute, value = hash_attribute_value(
            ctx.attributes, self.hash_attribute, self.fallback_attribute
        )
        if not js_truthy(value):
            return MISS
        return self._bucket(ctx, feature_id, evaluate_parent, stack, True, attribute, value)

    def _forced_variation(self, ctx: Context) -> Any:
        if ctx.url:
            override = get_query_string_override(self.key, ctx.url, self.num_variations)
            if override is not None:
                return override
        forced = ctx.forced_variations
        if forced and self.key in forced:
            return forced[self.key]
        return None

    def _bucket(
        self,
        ctx: Context,
        feature_id: str | None,
        evaluate_parent: ParentEvaluator | None,
        stack: frozenset[str],
        sticky: bool,
        attribute: str,
        value: Any,
    ) -> ExperimentResult | _Outcome:
        text = value if type(value) is str else hash_string(value)
        assigned, blocked = self._sticky_variation(ctx) if sticky else (-1, False)
        found_sticky = assigned >= 0
        if not found_sticky and not self._targeted(ctx, text, evaluate_parent, stack):
            return MISS
        if self.url_pattern is not None and not url_matches_regex(ctx.url, self.url_pattern):
            return MISS
        n = self.hasher.hash(text, ctx.prefix_cache)
        if n is None:
            return MISS
        if not found_sticky:
            assigned = -1
            for index, (low, high) in enumerate(self.ranges):
                if low <= n < high:
                    assigned = index
                    break
        if blocked:
            return BLOCKED
        if assigned < 0:
            return MISS
        if self.has_force:
            return self.result(ctx, self.force, False, feature_id)
        if ctx.qa_mode or self.stopped:
            return MISS
        result = self.result(ctx, assigned, True, feature_id, n, found_sticky, attribute, value)
        if sticky:
            ctx.save_sticky_assignment(attribute, value, self.sticky_key, result.key)
        if ctx.on_exposure is not None:
            self._expose(ctx, result)
        return result

    def _targeted(
        self,
        ctx: Context,
        hash_text: str,
        evaluate_parent: ParentEvaluator | None,
        stack: frozenset[str],
    ) -> bool:
        """Condition, filters or namespace, and prerequisites (pure checks first)."""
        if self.condition is not None and not self.condition(ctx.attributes):
            return False
        if self.filters is not None:
            if any(f.excludes(ctx) for f in self.filters):
                return False
        elif self.namespace is not None and not in_namespace(hash_text, self.namespace):
            return False
        if self.parents and evaluate_parent is not None:
            for parent_id, condition, _ in self.parents:
                parent = evaluate_parent(parent_id, ctx, stack)
                if parent.source == "cyclicPrerequisite" or not condition({"value": parent.value}):
                    return False
        return True

    def _sticky_variation(self, ctx: Context) -> tuple[int, bool]:
        """(variation index or -1, whether the user's stored version is blocked)."""
        assignments = ctx.sticky_assignments(self.hash_attribute, self.fallback_attribute)
        for version in range(self.min_bucket_version):
            if f"{self.key}__{version}" in assignments:
                return -1, True
        variation_key = assignments.get(self.sticky_key)
        if variation_key is None:
            return -1, False
        return self.meta_index.get(variation_key, -1), False

    def result(
        self,
        ctx: Context,
        variation: Any,
        hash_used: bool,
        feature_id: str | None,
        bucket: float | None = None,
        sticky_used: bool = False,
        attribute: str | None = None,
        value: Any = None,
    ) -> ExperimentResult:
        """Build the result for a variation index (out of range: not in experiment)."""
        index = _as_index(variation, self.num_variations)
        in_experiment = index >= 0
        index = max(index, 0)
        if attribute is None:
            sticky = ctx.sticky_service is not None and not self.disable_sticky
            attribute, value = hash_attribute_value(
                ctx.attributes, self.hash_attribute, self.fallback_attribute if sticky else None
            )
        meta = self.meta[index] if index < len(self.meta) else _VariationMeta(index, None)
        result = ExperimentResult(
            self.variations[index] if self.variations else None,
            index,
            in_experiment,
            hash_used,
            attribute,
            value,
            feature_id,
            meta.key,
            meta.name,
            bucket,
            meta.passthrough,
            sticky_used,
        )
        if self.bandit is not None and hash_used and in_experiment:
            self._add_bandit(result)
        return result

    def _add_bandit(self, result: ExperimentResult) -> None:
        """Contextual-bandit metadata of a hashed assignment."""
        bandit = self.bandit
        assert bandit is not None
        result.leaf_id = bandit["leafId"]
        result.variation_weights = bandit["variationWeights"]
        result.bandit_version = bandit.get("banditVersion")

    def _expose(self, ctx: Context, result: ExperimentResult) -> None:
        """Report an exposure once per context (see :class:`ExposureRecord`).

        A failing callback is logged, never raised: reporting must not change
        what the user sees (the JavaScript SDK swallows tracking errors too).
        """
        callback = ctx.on_exposure
        dedupe = (self.key, result.key, result.hash_attribute, hash_string(result.hash_value))
        if callback is None or not ctx.first_exposure(dedupe):
            return
        index = result.variation_id
        lengths = self._range_lengths
        record = ExposureRecord(
            experiment_key=self.key,
            variation_id=index,
            variation_key=result.key,
            hash_attribute=result.hash_attribute,
            hash_value=result.hash_value,
            feature_key=result.feature_id,
            propensity=lengths[index] if index < len(lengths) else 0.0,
            enrollment_probability=self.enrollment_probability,
            bucket=result.bucket,
            sticky_bucket_used=result.sticky_bucket_used,
            leaf_id=result.leaf_id,
            bandit_version=result.bandit_version,
        )
        try:
            callback(record)
        except Exception:
            log.exception("exposure callback failed for experiment %s", self.key)


def _as_index(variation: Any, count: int) -> int:
    """A variation index in range, or -1 (JavaScript compares loosely)."""
    if isinstance(variation, bool) or not isinstance(variation, (int, float)):
        return -1
    if variation != variation or int(variation) != variation:
        return -1
    index = int(variation)
    return index if 0 <= index < count else -1


def _ranges(exp: Mapping[str, Any], count: int) -> list[Range]:
    explicit = exp.get("ranges")
    if explicit is not None:
        return [(float(r[0]), float(r[1])) for r in explicit]
    # A present-but-null coverage is 0 in JavaScript arithmetic
    coverage = js_to_number(exp["coverage"]) if "coverage" in exp else 1.0
    return get_bucket_ranges(count, coverage, exp.get("weights"))


def _meta(exp: Mapping[str, Any], count: int) -> list[_VariationMeta]:
    raw = exp.get("meta")
    metas = list(raw) if isinstance(raw, Sequence) and not isinstance(raw, str) else []
    return [_VariationMeta(i, metas[i] if i < len(metas) else None) for i in range(count)]


def compile_experiment(
    exp: Mapping[str, Any],
    saved_groups: Mapping[str, Any] | None = None,
    *,
    spec: Mapping[str, Any] | None = None,
    bandit: Mapping[str, Any] | None = None,
    check_filters: bool = True,
) -> CompiledExperiment:
    """Compile an experiment definition (GrowthBook's ``Experiment`` JSON).

    ``spec`` is what :meth:`CompiledExperiment.to_dict` reports (default: the
    definition); ``bandit`` is contextual-bandit metadata; ``check_filters``
    is false when the caller already applied the filters.

    >>> from tailorkit.evaluate.context import Context
    >>> exp = compile_experiment({"key": "my-test", "variations": [0, 1]})
    >>> exp.run(Context({"id": "1"})).value
    1
    """
    groups = saved_groups or {}
    variations = list(exp.get("variations") or [])
    compiled = CompiledExperiment()
    compiled.key = str(exp.get("key", ""))
    compiled.variations = variations
    compiled.num_variations = len(variations)
    compiled.meta = _meta(exp, len(variations))
    compiled.meta_index = _meta_index(exp.get("meta"))
    _compile_hashing(compiled, exp)
    _compile_targeting(compiled, exp, groups, check_filters)
    compiled.ranges = _ranges(exp, len(variations))
    compiled._range_lengths = [max(high - low, 0.0) for low, high in compiled.ranges]
    compiled.enrollment_probability = sum(compiled._range_lengths)
    compiled.has_force = "force" in exp and exp.get("force") is not None
    compiled.force = exp.get("force")
    compiled.active = exp.get("active") is not False and exp.get("status") != "draft"
    compiled.stopped = exp.get("status") == "stopped"
    compiled._spec = dict(spec if spec is not None else exp)
    compiled.bandit = dict(bandit) if bandit is not None else None
    compiled._bandit_spec = compiled.bandit
    return compiled


def _meta_index(raw: Any) -> dict[str, int]:
    index: dict[str, int] = {}
    if isinstance(raw, Sequence) and not isinstance(raw, str):
        for i, meta in enumerate(raw):
            if isinstance(meta, Mapping) and isinstance(meta.get("key"), str):
                index.setdefault(meta["key"], i)
    return index


def _compile_hashing(compiled: CompiledExperiment, exp: Mapping[str, Any]) -> None:
    compiled.hash_attribute = exp.get("hashAttribute") or "id"
    compiled.disable_sticky = bool(js_truthy(exp.get("disableStickyBucketing")))
    compiled.fallback_attribute = exp.get("fallbackAttribute") or None
    compiled.hasher = SeedHasher(str(exp.get("seed") or compiled.key), exp.get("hashVersion") or 1)
    bucket_version = exp.get("bucketVersion") or 0
    compiled.min_bucket_version = int(exp.get("minBucketVersion") or 0)
    compiled.sticky_key = f"{compiled.key}__{bucket_version}"


def _compile_targeting(
    compiled: CompiledExperiment,
    exp: Mapping[str, Any],
    groups: Mapping[str, Any],
    check_filters: bool,
) -> None:
    condition = exp.get("condition")
    compiled.condition = compile_condition(condition, groups) if condition is not None else None
    filters = compile_filters(exp.get("filters"))
    compiled.filters = filters if check_filters else None
    namespace = exp.get("namespace")
    # Filters replace the namespace, even when the caller checks them itself
    compiled.namespace = list(namespace) if namespace and filters is None else None
    compiled.parents = compile_parents(exp.get("parentConditions"), groups)
    url = exp.get("url")
    compiled.url_pattern = url if isinstance(url, str) and url else None
    patterns = exp.get("urlPatterns")
    compiled.url_patterns = list(patterns) if isinstance(patterns, Sequence) and patterns else None
    compiled.targeting = bool(
        compiled.condition is not None
        or compiled.filters is not None
        or compiled.namespace is not None
        or compiled.parents
    )
