"""Feature evaluation: GrowthBook feature definitions compiled once.

:class:`Evaluator` compiles a payload's ``features`` (with ``savedGroups``
and ``contextualBandits``) into closures; :meth:`Evaluator.context` makes a
cheap per-request :class:`~tailorkit.evaluate.context.Context`;
:meth:`Evaluator.eval_feature` walks the feature's rules in order:

* ``parentConditions`` (prerequisites) first: a failing gate blocks the
  feature (``prerequisite``), a failing non-gate skips the rule, a cycle
  gives ``cyclicPrerequisite``;
* ``filters`` (hash ranges) skip the rule when the user falls outside;
* a rule with ``force`` applies its condition, then its percentage rollout
  (``range`` or ``coverage`` on ``hash(seed or feature key)``);
* a rule with ``variations`` (or ``contextualVariations`` +
  ``contextualBanditRef``) runs an experiment and returns its value when the
  user is in it and the variation is not a passthrough;
* otherwise the ``defaultValue``.

Compiling a malformed rule (for example ranges that are not numbers) skips
that rule instead of failing the whole payload.

Not evaluated here: a force rule's ``tracks`` (pre-evaluated exposures from
GrowthBook's remote-evaluation proxy), the deprecated ``groups``,
``include`` and context ``overrides`` of inline experiments, and URL
redirects of auto-experiments (browser navigation).  Prerequisite
conditions see the saved groups (the JavaScript SDK passes none; GrowthBook
never puts ``$inGroup`` there).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tailorkit.evaluate.bandits import BanditRouter, compile_bandit_rule
from tailorkit.evaluate.conditions import compile_condition
from tailorkit.evaluate.context import Context, ExposureCallback, hash_attribute_value, hash_string
from tailorkit.evaluate.encryption import decrypt_payload
from tailorkit.evaluate.experiments import (
    CompiledExperiment,
    ParentCheck,
    _Outcome,
    compile_experiment,
    compile_filters,
    compile_parents,
)
from tailorkit.evaluate.hashing import SeedHasher
from tailorkit.evaluate.jsvalues import js_to_number, js_truthy
from tailorkit.evaluate.results import ExperimentResult, ExposureRecord, FeatureResult
from tailorkit.evaluate.sticky import StickyBucketService

__all__ = ["Evaluator"]

log = logging.getLogger(__name__)

Stack = frozenset[str]
#: A compiled rule: a result to return, or ``None`` to go on to the next rule.
Rule = Callable[[Context, Stack], "FeatureResult | None"]
FeatureFn = Callable[[Context, Stack], FeatureResult]
_EMPTY: Stack = frozenset()
_UNKNOWN = FeatureResult(None, "unknownFeature")
_CYCLIC = FeatureResult(None, "cyclicPrerequisite")
_BLOCKED = FeatureResult(None, "prerequisite")
# Keys copied from a rule into its experiment when present (JavaScript rules)
_TRUTHY_KEYS = (
    "weights", "hashAttribute", "fallbackAttribute", "disableStickyBucketing", "namespace",
    "meta", "ranges", "name", "phase", "seed", "hashVersion", "filters", "condition",
)  # fmt: skip
_COMPILE_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError)
#: Users whose feature values :meth:`Evaluator.values` keeps (per evaluator)
VALUES_CACHE_SIZE = 4096
_MISSING = object()
_SCALARS = (int, float, bool, type(None))
#: Dedupe key of an exposure (see ``CompiledExperiment._expose``) and its record's fields,
#: in order: a tuple of strings and numbers, which the garbage collector stops tracking
#: (the cache holds thousands of users' records; as objects they made every full
#: collection scan them: ~50,000 objects, ~60 ms, at the cache's size)
_Replay = tuple[tuple[str, str, str, str], tuple[Any, ...]]
#: A cache entry of :meth:`Evaluator.values`: the values as (key, value) pairs (a dict
#: would keep the entry tracked) and the exposures to replay
_Values = tuple[tuple[tuple[str, Any], ...], tuple[_Replay, ...]]


class Evaluator:
    """Compiled features of one payload, ready to evaluate many users.

    An evaluator does not change after construction, so threads may share
    it; build a new one when the definitions change.  Per-request state
    lives in the :class:`~tailorkit.evaluate.context.Context`.

    >>> ev = Evaluator({"banner": {"defaultValue": "off", "rules": [
    ...     {"condition": {"country": "DE"}, "force": "on"}]}})
    >>> ev.eval_feature("banner", ev.context({"id": "u1", "country": "DE"})).value
    'on'
    >>> ev.evaluate("banner", {"country": "FR"}).source
    'defaultValue'
    """

    def __init__(
        self,
        features: Mapping[str, Any] | None = None,
        *,
        saved_groups: Mapping[str, Any] | None = None,
        contextual_bandits: Mapping[str, Any] | None = None,
        on_exposure: ExposureCallback | None = None,
        sticky_bucket_service: StickyBucketService | None = None,
        qa_mode: bool = False,
        enabled: bool = True,
    ) -> None:
        self.saved_groups: Mapping[str, Any] = saved_groups or {}
        self.contextual_bandits: Mapping[str, Any] = contextual_bandits or {}
        self.on_exposure = on_exposure
        self.sticky_bucket_service = sticky_bucket_service
        self.qa_mode = qa_mode
        self.enabled = enabled
        self._features: dict[str, FeatureFn] = {}
        #: Attributes that experiments hash on (for preloading sticky documents)
        self.sticky_attributes: tuple[str, ...] = _identifier_attributes(features or {})
        for key, definition in (features or {}).items():
            self._features[key] = self._compile_feature(key, definition)
        #: Attributes the features read (``None``: not known, so values are not cached)
        self.reads: tuple[str, ...] | None = _attributes_read(features or {})
        self._values: dict[tuple[Any, ...], _Values] = {}

    @classmethod
    def from_payload(
        cls, payload: Mapping[str, Any], *, decryption_key: str | None = None, **options: Any
    ) -> Evaluator:
        """Build from a GrowthBook SDK payload (decrypting ``encrypted*`` sections).

        >>> Evaluator.from_payload({"features": {"f": {"defaultValue": 1}}}).evaluate("f").value
        1
        """
        data = dict(payload)
        if decryption_key is not None:
            data = decrypt_payload(data, decryption_key)
        return cls(
            data.get("features") or {},
            saved_groups=data.get("savedGroups"),
            contextual_bandits=data.get("contextualBandits"),
            **options,
        )

    @property
    def feature_keys(self) -> list[str]:
        """The keys of all compiled features.

        >>> Evaluator({"a": {}, "b": {}}).feature_keys
        ['a', 'b']
        """
        return list(self._features)

    # ------------------------------------------------------------------ usage

    def context(
        self,
        attributes: Mapping[str, Any] | None = None,
        *,
        url: str = "",
        forced_variations: Mapping[str, int] | None = None,
        forced_features: Mapping[str, Any] | None = None,
        qa_mode: bool | None = None,
        enabled: bool | None = None,
        on_exposure: ExposureCallback | None = None,
    ) -> Context:
        """A per-request context; options default to the evaluator's.

        >>> Evaluator().context({"id": "u1"}, url="https://shop.example/?x=1").url
        'https://shop.example/?x=1'

        ``forced_variations`` (experiment key → index) and the ``url``'s
        ``?<experiment>=<index>`` force variations without hashing (not
        exposures); ``forced_features`` (key → value) override features.
        """
        return Context(
            attributes,
            url,
            forced_variations,
            forced_features,
            self.qa_mode if qa_mode is None else qa_mode,
            self.enabled if enabled is None else enabled,
            self.sticky_bucket_service,
            self.on_exposure if on_exposure is None else on_exposure,
            self,
        )

    def eval_feature(self, key: str, ctx: Context) -> FeatureResult:
        """Evaluate one feature for the context's user.

        >>> ev = Evaluator({"limit": {"defaultValue": 20}})
        >>> ev.eval_feature("limit", ev.context({"id": "u1"})).to_dict()["source"]
        'defaultValue'
        """
        forced = ctx.forced_features
        if forced is not None and key in forced:
            return FeatureResult(forced[key], "override")
        feature = self._features.get(key)
        if feature is None:
            return _UNKNOWN
        return feature(ctx, _EMPTY)

    def evaluate(self, key: str, attributes: Mapping[str, Any] | None = None) -> FeatureResult:
        """Evaluate one feature for a bare attribute document.

        >>> Evaluator({"f": {"defaultValue": True}}).evaluate("f", {"id": "u1"}).on
        True
        """
        return self.eval_feature(key, self.context(attributes))

    def eval_all(self, ctx: Context) -> dict[str, FeatureResult]:
        """Evaluate every feature for one user.

        >>> ev = Evaluator({"a": {"defaultValue": 1}, "b": {"defaultValue": 2}})
        >>> {k: r.value for k, r in ev.eval_all(ev.context({})).items()}
        {'a': 1, 'b': 2}
        """
        return {key: self.eval_feature(key, ctx) for key in self._features}

    def values(self, ctx: Context) -> dict[str, Any]:
        """Every feature's value for one user (a new dict), as :meth:`eval_all` finds them.

        The answer depends only on the attributes the features read (:attr:`reads`), so
        it is kept per combination of their values (when all are scalars) and the same
        exposures are reported again, through ``ctx.on_exposure`` and deduplicated by
        the context, when it is reused.

        >>> ev = Evaluator({"t": {"rules": [{"key": "t", "variations": [0, 1]}]}})
        >>> seen = []
        >>> [ev.values(ev.context({"id": "1"}, on_exposure=seen.append)) for _ in "ab"]
        [{'t': 1}, {'t': 1}]
        >>> [(r.experiment_key, r.variation_id) for r in seen]
        [('t', 1), ('t', 1)]
        """
        key = self._values_key(ctx)
        if key is None:
            return {k: r.value for k, r in self.eval_all(ctx).items()}
        cached = self._values.get(key)
        if cached is None:
            cached = self._values_computed(ctx)
            self._remember_values(key, cached)
        else:
            _replay(ctx, cached[1])
        return dict(cached[0])

    def _values_key(self, ctx: Context) -> tuple[Any, ...] | None:
        """The cache key of a context's feature values; ``None`` when they are not cached."""
        reads = self.reads
        attributes = ctx.attributes
        if (
            reads is None
            or type(attributes) is not dict
            or ctx.url
            or ctx.forced_variations
            or ctx.forced_features is not None
            or ctx.sticky_service is not None
            or ctx._tracked
        ):
            return None
        key: list[Any] = [ctx.qa_mode, ctx.enabled]
        for name in reads:
            value = attributes.get(name, _MISSING)
            kind = type(value)
            if kind is str:
                key.append(value)
            elif isinstance(value, _SCALARS) or value is _MISSING:
                key.append((kind, value))  # 1, 1.0 and True compare equal in Python
            else:
                return None
        return tuple(key)

    def _values_computed(self, ctx: Context) -> _Values:
        """Evaluate every feature, noting the exposures reported on the way."""
        seen: list[ExposureRecord] = []
        callback = ctx.on_exposure

        def note(record: ExposureRecord) -> None:
            seen.append(record)
            if callback is not None:
                callback(record)

        ctx.on_exposure = note
        try:
            values = {k: r.value for k, r in self.eval_all(ctx).items()}
        finally:
            ctx.on_exposure = callback
        replays = tuple((_dedupe_key(r), r.as_tuple()) for r in seen)
        return tuple(values.items()), replays

    def _remember_values(self, key: tuple[Any, ...], entry: _Values) -> None:
        cache = self._values
        cache[key] = entry
        if len(cache) > VALUES_CACHE_SIZE:
            # the oldest out; another thread may be changing the dict meanwhile
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del cache[next(iter(cache))]

    def get_feature_value(self, key: str, ctx: Context, fallback: Any = None) -> Any:
        """The feature's value, or ``fallback`` when it is ``None``.

        >>> ev = Evaluator()
        >>> ev.get_feature_value("missing", ev.context({}), "blue")
        'blue'
        """
        value = self.eval_feature(key, ctx).value
        return fallback if value is None else value

    def is_on(self, key: str, ctx: Context) -> bool:
        """Whether the feature's value is truthy.

        >>> ev = Evaluator({"f": {"defaultValue": 0}})
        >>> ev.is_on("f", ev.context({}))
        False
        """
        return self.eval_feature(key, ctx).on

    def run(
        self, experiment: Mapping[str, Any] | CompiledExperiment, ctx: Context
    ) -> ExperimentResult:
        """Run an inline experiment (a definition or a compiled one).

        >>> ev = Evaluator()
        >>> ev.run({"key": "my-test", "variations": [0, 1]}, ev.context({"id": "1"})).value
        1
        """
        if not isinstance(experiment, CompiledExperiment):
            experiment = compile_experiment(experiment, self.saved_groups)
        return experiment.run(ctx, None, self._eval_in_stack, _EMPTY)

    # ------------------------------------------------------------- internals

    def _eval_in_stack(self, key: str, ctx: Context, stack: Stack) -> FeatureResult:
        """Evaluate a prerequisite; ``stack`` holds the features being evaluated."""
        if key in stack:
            return _CYCLIC
        forced = ctx.forced_features
        if forced is not None and key in forced:
            return FeatureResult(forced[key], "override")
        feature = self._features.get(key)
        if feature is None:
            return _UNKNOWN
        return feature(ctx, stack)

    def _compile_feature(self, key: str, definition: Any) -> FeatureFn:
        definition = definition if isinstance(definition, Mapping) else {}
        default = FeatureResult(definition.get("defaultValue"), "defaultValue")
        rules: list[Rule] = []
        for index, rule in enumerate(definition.get("rules") or []):
            if not isinstance(rule, Mapping):
                continue
            try:
                compiled = self._compile_rule(key, rule)
            except _COMPILE_ERRORS:
                log.warning("feature %s: skipping malformed rule %d", key, index)
                continue
            if compiled is not None:
                rules.append(compiled)
        return _feature_fn(tuple(rules), default)

    def _compile_rule(self, key: str, rule: Mapping[str, Any]) -> Rule | None:
        parents = compile_parents(rule.get("parentConditions"), self.saved_groups)
        filters = compile_filters(rule.get("filters"))
        body: Rule | None
        if "force" in rule:
            body = self._force_rule(key, rule)
        elif rule.get("contextualVariations") is not None or rule.get("variations") is not None:
            body = self._experiment_rule(key, rule)
        else:
            body = None  # an invalid rule may still gate through its prerequisites
        if filters is not None:
            body = _with_filters(filters, body)
        if parents:
            return _with_parents(key, parents, body, self._eval_in_stack)
        return body

    def _force_rule(self, key: str, rule: Mapping[str, Any]) -> Rule:
        result = FeatureResult(rule.get("force"), "force", rule.get("id") or "")
        raw_condition = rule.get("condition")
        condition = compile_condition(raw_condition, self.saved_groups) if raw_condition else None
        rollout = _rollout(key, rule, self.sticky_bucket_service is not None)

        def force(ctx: Context, stack: Stack) -> FeatureResult | None:
            if condition is not None and not condition(ctx.attributes):
                return None
            if rollout is not None and not rollout(ctx):
                return None
            return result

        return force

    def _experiment_rule(self, key: str, rule: Mapping[str, Any]) -> Rule:
        exp, spec = _experiment_from_rule(key, rule)
        ref = rule.get("contextualBanditRef")
        target: CompiledExperiment | BanditRouter
        if ref is not None:
            definition = self.contextual_bandits.get(ref) if isinstance(ref, str) else None
            target = compile_bandit_rule(exp, spec, definition, self.saved_groups)
        else:
            target = compile_experiment(exp, self.saved_groups, spec=spec, check_filters=False)
        rule_id = rule.get("id") or ""
        evaluate_parent = self._eval_in_stack
        # Rule experiments carry no parentConditions (the rule checked them)
        if isinstance(target, BanditRouter):
            router = target

            def bandit(ctx: Context, stack: Stack) -> FeatureResult | None:
                chosen = router.select(ctx)
                outcome = chosen.assign(ctx, key, evaluate_parent, stack)
                if (
                    isinstance(outcome, _Outcome)
                    or not outcome.in_experiment
                    or outcome.passthrough
                ):
                    return None
                return FeatureResult(outcome.value, "experiment", rule_id, chosen, outcome)

            return bandit
        single = target

        def experiment(ctx: Context, stack: Stack) -> FeatureResult | None:
            outcome = single.assign(ctx, key, evaluate_parent, stack)
            if isinstance(outcome, _Outcome) or not outcome.in_experiment or outcome.passthrough:
                return None
            return FeatureResult(outcome.value, "experiment", rule_id, single, outcome)

        return experiment


def _feature_fn(rules: tuple[Rule, ...], default: FeatureResult) -> FeatureFn:
    """The rule loop, specialized for the common small cases."""
    if not rules:
        return lambda ctx, stack: default
    if len(rules) == 1:
        (only,) = rules

        def one_rule(ctx: Context, stack: Stack) -> FeatureResult:
            result = only(ctx, stack)
            return default if result is None else result

        return one_rule

    def many_rules(ctx: Context, stack: Stack) -> FeatureResult:
        for rule in rules:
            result = rule(ctx, stack)
            if result is not None:
                return result
        return default

    return many_rules


def _with_filters(filters: tuple[Any, ...], body: Rule | None) -> Rule:
    def filtered(ctx: Context, stack: Stack) -> FeatureResult | None:
        for hash_filter in filters:
            if hash_filter.excludes(ctx):
                return None
        return body(ctx, stack) if body is not None else None

    return filtered


def _with_parents(
    key: str,
    parents: tuple[ParentCheck, ...],
    body: Rule | None,
    evaluate: Callable[[str, Context, Stack], FeatureResult],
) -> Rule:
    def gated(ctx: Context, stack: Stack) -> FeatureResult | None:
        inner = stack | {key}
        for parent_id, condition, gate in parents:
            parent = evaluate(parent_id, ctx, inner)
            if parent.source == "cyclicPrerequisite":
                return _CYCLIC
            if not condition({"value": parent.value}):
                return _BLOCKED if gate else None
        return body(ctx, stack) if body is not None else None

    return gated


def _rollout(key: str, rule: Mapping[str, Any], sticky: bool) -> Callable[[Context], bool] | None:
    """A force rule's percentage rollout (``None`` when it has none)."""
    bucket = rule.get("range") if js_truthy(rule.get("range")) else None
    if not bucket and "coverage" not in rule:
        return None
    coverage = js_to_number(rule.get("coverage"))
    if not bucket and coverage == 0:
        return lambda ctx: False
    attribute = rule.get("hashAttribute")
    use_fallback = sticky and not js_truthy(rule.get("disableStickyBucketing"))
    fallback = rule.get("fallbackAttribute") if use_fallback else None
    hasher = SeedHasher(str(rule.get("seed") or key), rule.get("hashVersion") or 1)
    low, high = (float(bucket[0]), float(bucket[1])) if bucket else (0.0, 0.0)

    name = attribute or "id"
    hash_fn = hasher.hash

    def included(ctx: Context) -> bool:
        text = ctx.attributes.get(name)
        if type(text) is not str or not text:
            _, value = hash_attribute_value(ctx.attributes, attribute, fallback)
            if not js_truthy(value):
                return False
            text = hash_string(value)
        n = hash_fn(text, ctx.prefix_cache)
        if n is None:
            return False
        if bucket:
            return low <= n < high
        return n <= coverage

    return included


def _experiment_from_rule(
    key: str, rule: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The experiment a rule runs, and the definition results report.

    JavaScript copies only present (truthy) keys; contextual-bandit rules
    carry their variations under ``contextualVariations``.
    """
    variations = rule.get("contextualVariations")
    if variations is None:
        variations = rule.get("variations")
    spec: dict[str, Any] = {"variations": variations, "key": rule.get("key") or key}
    if "coverage" in rule:
        spec["coverage"] = rule["coverage"]
    for name in _TRUTHY_KEYS:
        if js_truthy(rule.get(name)):
            spec[name] = rule[name]
    for name in ("bucketVersion", "minBucketVersion"):
        if name in rule:
            spec[name] = rule[name]
    return dict(spec), spec


def _dedupe_key(record: ExposureRecord) -> tuple[str, str, str, str]:
    """The key ``CompiledExperiment._expose`` deduplicates a record's exposure with."""
    return (
        record.experiment_key,
        record.variation_key,
        record.hash_attribute,
        hash_string(record.hash_value),
    )


def _replay(ctx: Context, replays: Iterable[_Replay]) -> None:
    """Report remembered exposures as ``CompiledExperiment._expose`` reported them."""
    callback = ctx.on_exposure
    if callback is None:
        return
    for dedupe, fields_ in replays:
        if not ctx.first_exposure(dedupe):
            continue
        try:
            callback(ExposureRecord(*fields_))
        except Exception:
            log.exception("exposure callback failed for experiment %s", fields_[0])


def _attributes_read(features: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Every attribute the features' rules may read, or ``None`` when that is not known.

    Generous on purpose (every key inside a condition counts): reading one
    attribute too many only makes the cache of :meth:`Evaluator.values` finer.
    Contextual bandits (their routers read attributes of their own) and
    conditions that are not objects are not analysed.
    """
    names: dict[str, None] = {}
    for definition in features.values():
        if not isinstance(definition, Mapping):
            continue
        for rule in definition.get("rules") or []:
            if not isinstance(rule, Mapping):
                continue
            if rule.get("contextualBanditRef") is not None:
                return None
            if "condition" in rule and not _condition_keys(rule["condition"], names):
                return None
            for attribute in (rule.get("hashAttribute"), rule.get("fallbackAttribute")):
                _add_path(names, attribute if isinstance(attribute, str) and attribute else "id")
            filters = rule.get("filters")
            for spec in filters if isinstance(filters, list) else ():
                attribute = spec.get("attribute") if isinstance(spec, Mapping) else None
                _add_path(names, attribute if isinstance(attribute, str) and attribute else "id")
    return tuple(names)


def _condition_keys(condition: Any, names: dict[str, None]) -> bool:
    """Add every key of a condition (nested ones too); False when it is not an object."""
    if condition is None or condition == {}:
        return True
    if not isinstance(condition, Mapping):
        return False
    for key, value in condition.items():
        if not isinstance(key, str):
            return False
        if key in ("$or", "$nor", "$and"):
            if not isinstance(value, list) or not all(_condition_keys(c, names) for c in value):
                return False
        elif key == "$not":
            if not _condition_keys(value, names):
                return False
        elif not key.startswith("$"):
            _add_path(names, key)
            _value_keys(value, names)
    return True


def _value_keys(value: Any, names: dict[str, None]) -> None:
    """Keys inside a value condition (``$elemMatch`` and the like): more than needed."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if isinstance(key, str) and not key.startswith("$"):
                _add_path(names, key)
            _value_keys(inner, names)
    elif isinstance(value, list):
        for inner in value:
            _value_keys(inner, names)


def _add_path(names: dict[str, None], path: str) -> None:
    """A path is read as a literal key and through its first dotted part."""
    names[path] = None
    names[path.split(".", 1)[0]] = None


def _identifier_attributes(features: Mapping[str, Any]) -> tuple[str, ...]:
    """Hash and fallback attributes of all experiment rules, in first-seen order."""
    names: dict[str, None] = {}
    for definition in features.values():
        rules = definition.get("rules") if isinstance(definition, Mapping) else None
        for rule in rules or []:
            if not isinstance(rule, Mapping) or "force" in rule:
                continue
            if rule.get("variations") is None and rule.get("contextualVariations") is None:
                continue
            names[rule.get("hashAttribute") or "id"] = None
            if rule.get("fallbackAttribute"):
                names[rule["fallbackAttribute"]] = None
    return tuple(names)
