"""Placement definitions: ``placements.yaml`` compiled into immutable, checked objects.

A placement has content variants, a default variant that is always valid,
and either ordered rules (condition → owner) or one owner for the whole
placement. An *owner* chooses the variant: a fixed ``variant``, an inline
GrowthBook-compatible ``experiment``, a ``feature`` of ``features.yaml``
whose value is a variant key, or a ``bandit``. A rule with
``recommendations`` hands a ranked list to its variant's template.

:func:`compile_definitions` checks everything a decision relies on (variant
references, bandit arms, unique priorities, templates, that the default
renders with no user data) and raises :class:`ConfigError` with the file,
the key path and the reason, so a reload can refuse a bad change and keep
the live definitions.

>>> from tailorkit.decide.content import TemplateChecker
>>> defs = compile_definitions({"placements": {"hero": {
...     "default": "plain",
...     "variants": {"plain": {"content": "<h1>Welcome</h1>"},
...                  "vip": {"content": "<h1>Welcome back</h1>"}},
...     "rules": [{"id": "vips", "priority": 10, "variant": "vip",
...                "condition": {"segments": "vip"}}]}}}, TemplateChecker())
>>> defs.placements["hero"].rules[0].owner.variant
'vip'
>>> compile_definitions({"placements": {"hero": {"default": "nope",
...     "variants": {"plain": {"content": "x"}}}}}, TemplateChecker())  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tailorkit.project.loader.ConfigError: placements.yaml: placements.hero.default: no variant ...
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from tailorkit.decide.content import Template, TemplateChecker, TemplateError
from tailorkit.evaluate import CompiledExperiment, compile_condition, compile_experiment
from tailorkit.project.loader import ConfigError, schema, validate_document

__all__ = [
    "BanditSpec",
    "Cap",
    "DecideSettings",
    "Holdout",
    "Owner",
    "Placement",
    "PlacementDefinitions",
    "Rule",
    "Variant",
    "compile_definitions",
    "empty_variables",
    "parse_duration",
    "validate_placements",
]

FILE = "placements.yaml"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30s``, ``10m``, ``24h`` or ``7d``.

    >>> parse_duration("10m"), parse_duration("1d")
    (600.0, 86400.0)
    """
    return float(int(text[:-1]) * _UNITS[text[-1]])


@dataclass(frozen=True)
class DecideSettings:
    """``settings:`` of ``placements.yaml``."""

    deadline_ms: float = 50.0
    reload_seconds: float = 2.0
    cache_size: int = 10_000
    exposure_dedup_seconds: float = 1800.0
    users_in_memory: int = 100_000


@dataclass(frozen=True)
class Holdout:
    """The global holdout: ``share`` of users (by hash) always get default content."""

    share: float = 0.0
    seed: str = "global-holdout"
    hash_attribute: str = "id"


@dataclass(frozen=True)
class Cap:
    """At most ``max`` showings of a variant to one user per ``window`` seconds."""

    max: int
    window: float


@dataclass(frozen=True)
class Variant:
    """One content variant; ``fallback`` is its rendering with no user data, if any."""

    key: str
    index: int
    template: Template
    data: Mapping[str, Any] | None
    cap: Cap | None
    fallback: str | None


@dataclass(frozen=True)
class Recommend:
    """A rule's recommendation slot: ``count`` items of list ``source``."""

    source: str
    count: int


@dataclass(frozen=True)
class Owner:
    """Who chooses the variant of a rule or placement (exactly one field is set)."""

    variant: str | None = None
    experiment: CompiledExperiment | None = None
    feature: str | None = None
    bandit: str | None = None
    recommend: Recommend | None = None

    @property
    def kind(self) -> str:
        """``variant``, ``experiment``, ``feature`` or ``bandit``."""
        if self.experiment is not None:
            return "experiment"
        if self.feature is not None:
            return "feature"
        if self.bandit is not None:
            return "bandit"
        return "variant"


@dataclass(frozen=True)
class Rule:
    """A placement rule: when ``condition`` holds, ``owner`` picks the variant."""

    id: str
    priority: int
    condition: Callable[[Any], bool] | None
    owner: Owner
    #: The variant of a rule that always shows the same one (no recommendations)
    fixed: Variant | None = None


@dataclass(frozen=True)
class Placement:
    """A compiled placement."""

    key: str
    default: Variant
    variants: Mapping[str, Variant]
    rules: tuple[Rule, ...]
    min_dwell: float = 0.0
    #: True when every variant renders the same for every request (cache the whole answer).
    constant: bool = False


@dataclass(frozen=True)
class BanditSpec:
    """A bandit of ``placements.yaml``; ``fingerprint`` changes when its policy does."""

    key: str
    policy: str
    arms: tuple[str, ...]
    floor: float
    by_segment: tuple[str, ...]
    features: tuple[str, ...]
    options: Mapping[str, Any]
    reward_event: str | None
    reward_window: float
    same_placement: bool
    fingerprint: str


@dataclass(frozen=True)
class PlacementDefinitions:
    """Everything ``placements.yaml`` defines, compiled; replaced whole on reload."""

    placements: Mapping[str, Placement] = field(default_factory=dict)
    bandits: Mapping[str, BanditSpec] = field(default_factory=dict)
    recommendations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    holdout: Holdout = field(default_factory=Holdout)
    settings: DecideSettings = field(default_factory=DecideSettings)
    version: str = "empty"
    document: Mapping[str, Any] = field(default_factory=dict)


def validate_placements(document: Any) -> None:
    """Check a ``placements.yaml`` document against the published schema.

    >>> validate_placements({"placements": {"x": {"default": "a"}}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tailorkit.project.loader.ConfigError: placements.yaml: placements.x: 'variants' is ...
    """
    _check_owners(document)
    defs = schema("definitions")
    validate_document(FILE, document, {"$defs": defs["$defs"], **defs["$defs"]["placements"]})


_OWNERS = ("variant", "experiment", "feature", "bandit")


def _check_owners(document: Any) -> None:
    """Say plainly when a rule or placement has no owner or several (the schema's
    ``oneOf`` would only say "not valid under any of the given schemas")."""
    placements = document.get("placements") if isinstance(document, dict) else None
    if not isinstance(placements, dict):
        return
    for key, placement in placements.items():
        if not isinstance(placement, dict):
            continue
        owners = [o for o in _OWNERS[1:] if o in placement]
        if len(owners) > 1 or (owners and "rules" in placement):
            found = ", ".join(owners + (["rules"] if "rules" in placement else []))
            raise ConfigError(
                FILE,
                f"placements.{key}",
                f"use rules or one owner (experiment, feature, bandit), not {found}",
            )
        rules = placement.get("rules")
        for i, rule in enumerate(rules if isinstance(rules, list) else ()):
            found_in_rule = [o for o in _OWNERS if isinstance(rule, dict) and o in rule]
            if isinstance(rule, dict) and len(found_in_rule) != 1:
                what = ", ".join(found_in_rule) or "none"
                needs = "a rule needs exactly one of variant, experiment, feature, bandit"
                raise ConfigError(FILE, f"placements.{key}.rules.{i}", f"{needs} (found {what})")


def empty_variables(placement: str, variant: str, features: Collection[str]) -> dict[str, Any]:
    """The template variables of a request that knows nothing about the user.

    >>> empty_variables("hero", "plain", ["orders"])["profile"]
    {'orders': None}
    """
    return {
        "profile": dict.fromkeys(features),
        "segments": [],
        "attributes": {},
        "context": {},
        "user": {"id": None, "user_id": None, "anonymous_id": None},
        "flags": {},
        "recommendations": [],
        "placement": placement,
        "variant": variant,
    }


def bandit_specs(document: Mapping[str, Any]) -> dict[str, BanditSpec]:
    """The bandits of a validated ``placements.yaml`` document (no templates needed).

    >>> doc = {"bandits": {"b": {"arms": ["x", "y"], "reward": {"event": "click"}}}}
    >>> spec = bandit_specs(doc)["b"]
    >>> spec.policy, spec.arms, spec.reward_window
    ('thompson', ('x', 'y'), 3600.0)
    """
    out = {}
    for key, raw in (document.get("bandits") or {}).items():
        reward = raw.get("reward") or {}
        options = dict(raw.get("options") or {})
        policy = raw.get("policy", "thompson")
        shape = {k: raw.get(k) for k in ("policy", "arms", "floor", "by_segment", "features")}
        digest = orjson.dumps({**shape, "options": options}, option=orjson.OPT_SORT_KEYS)
        out[key] = BanditSpec(
            key=key,
            policy=policy,
            arms=tuple(raw["arms"]),
            floor=float(raw.get("floor", 0.0)),
            by_segment=tuple(raw.get("by_segment") or ()),
            features=tuple(raw.get("features") or ()),
            options=options,
            reward_event=reward.get("event"),
            reward_window=parse_duration(reward.get("window", "1h")),
            same_placement=bool(reward.get("same_placement", True)),
            fingerprint=hashlib.sha256(digest).hexdigest()[:16],
        )
    return out


class _Compiler:
    """Compiles one validated document; each method raises ConfigError with its path."""

    def __init__(
        self,
        doc: Mapping[str, Any],
        checker: TemplateChecker,
        feature_keys: Collection[str] | None,
        saved_groups: Mapping[str, Any] | None,
    ) -> None:
        self.doc = doc
        self.checker = checker
        self.feature_keys = feature_keys
        self.saved_groups = saved_groups or {}
        # one predicate per distinct condition: a request evaluates each once (see the engine)
        self._conditions: dict[bytes, Callable[[Any], bool]] = {}

    def condition(self, condition: Any) -> Callable[[Any], bool]:
        """The compiled ``condition``, shared by rules with the same condition."""
        try:
            key = orjson.dumps(condition, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            return compile_condition(condition, self.saved_groups)
        predicate = self._conditions.get(key)
        if predicate is None:
            predicate = self._conditions[key] = compile_condition(condition, self.saved_groups)
        return predicate

    def settings(self) -> DecideSettings:
        raw = self.doc.get("settings") or {}
        dedup = raw.get("exposure_dedup")
        return DecideSettings(
            deadline_ms=float(raw.get("deadline_ms", 50.0)),
            reload_seconds=float(raw.get("reload_seconds", 2.0)),
            cache_size=int(raw.get("cache_size", 10_000)),
            exposure_dedup_seconds=parse_duration(dedup) if dedup else 1800.0,
            users_in_memory=int(raw.get("users_in_memory", 100_000)),
        )

    def holdout(self) -> Holdout:
        raw = self.doc.get("holdout") or {}
        return Holdout(
            share=float(raw.get("percent", 0.0)) / 100.0,
            seed=str(raw.get("seed", "global-holdout")),
            hash_attribute=str(raw.get("hash_attribute", "id")),
        )

    def bandits(self) -> dict[str, BanditSpec]:
        return bandit_specs(self.doc)

    def placement(
        self, key: str, raw: Mapping[str, Any], bandits: Mapping[str, BanditSpec]
    ) -> Placement:
        path = f"placements.{key}"
        variants = self.variants(key, raw)
        default_key = raw["default"]
        if default_key not in variants:
            names = ", ".join(variants)
            raise ConfigError(
                FILE, f"{path}.default", f"no variant {default_key!r} (variants: {names})"
            )
        default = variants[default_key]
        if default.fallback is None:
            raise ConfigError(
                FILE,
                f"{path}.variants.{default_key}",
                "the default variant must render without user data (use | default(...))",
            )
        rules = self.rules(key, raw, variants, bandits)
        dwell = raw.get("min_dwell")
        constant = all(v.template.constant for v in variants.values())
        return Placement(
            key=key,
            default=default,
            variants=variants,
            rules=rules,
            min_dwell=parse_duration(dwell) if dwell else 0.0,
            constant=constant and not rules and self._owner_keys(raw) == (),
        )

    @staticmethod
    def _owner_keys(raw: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(k for k in ("experiment", "feature", "bandit") if k in raw)

    def variants(self, placement: str, raw: Mapping[str, Any]) -> dict[str, Variant]:
        out = {}
        placement_cap = _cap(raw.get("frequency_cap"))
        for index, (key, spec) in enumerate(raw["variants"].items()):
            path = f"placements.{placement}.variants.{key}"
            template = self.template(path, spec)
            variables = empty_variables(placement, key, self.checker.profile_features)
            try:
                fallback: str | None = template.render(variables)
            except Exception:
                fallback = None  # needs user data: fine, except for the default
            out[key] = Variant(
                key=key,
                index=index,
                template=template,
                data=spec.get("data"),
                cap=_cap(spec.get("frequency_cap")) or placement_cap,
                fallback=fallback,
            )
        return out

    def template(self, path: str, spec: Mapping[str, Any]) -> Template:
        try:
            if "template" in spec:
                return self.checker.load(path, spec["template"])
            return self.checker.compile(path, spec["content"])
        except TemplateError as exc:
            where = f"templates/{spec['template']}" if "template" in spec else FILE
            detail = f"{exc} (in {FILE} {path})" if "template" in spec else str(exc)
            key = "" if "template" in spec else path
            raise ConfigError(where, key, detail) from exc

    def rules(
        self,
        placement: str,
        raw: Mapping[str, Any],
        variants: Mapping[str, Variant],
        bandits: Mapping[str, BanditSpec],
    ) -> tuple[Rule, ...]:
        path = f"placements.{placement}"
        if self._owner_keys(raw):
            owner = self.owner(path, raw, variants, bandits)
            return (Rule(id=placement, priority=0, condition=None, owner=owner),)
        seen_ids: dict[str, int] = {}
        seen_priorities: dict[int, str] = {}
        rules = []
        for i, spec in enumerate(raw.get("rules") or ()):
            rule_path = f"{path}.rules.{i}"
            if spec["id"] in seen_ids:
                raise ConfigError(FILE, f"{rule_path}.id", f"rule id {spec['id']!r} is used twice")
            if spec["priority"] in seen_priorities:
                other = seen_priorities[spec["priority"]]
                raise ConfigError(
                    FILE,
                    f"{rule_path}.priority",
                    f"priority {spec['priority']} is also rule {other!r}'s",
                )
            seen_ids[spec["id"]] = i
            seen_priorities[spec["priority"]] = spec["id"]
            condition = spec.get("condition")
            predicate = self.condition(condition) if condition else None
            owner = self.owner(rule_path, spec, variants, bandits)
            fixed = None
            if owner.variant is not None and owner.recommend is None:
                fixed = variants[owner.variant]
            rules.append(Rule(spec["id"], spec["priority"], predicate, owner, fixed))
        rules.sort(key=lambda r: -r.priority)
        return tuple(rules)

    def owner(
        self,
        path: str,
        spec: Mapping[str, Any],
        variants: Mapping[str, Variant],
        bandits: Mapping[str, BanditSpec],
    ) -> Owner:
        names = ", ".join(variants)
        if "variant" in spec:
            if spec["variant"] not in variants:
                raise ConfigError(
                    FILE, f"{path}.variant", f"no variant {spec['variant']!r} (variants: {names})"
                )
            return Owner(variant=spec["variant"], recommend=self.recommend(path, spec))
        if "experiment" in spec:
            return Owner(
                experiment=self.experiment(f"{path}.experiment", spec["experiment"], variants)
            )
        if "bandit" in spec:
            self.check_bandit(path, spec["bandit"], variants, bandits)
            return Owner(bandit=spec["bandit"])
        feature = spec["feature"]
        if self.feature_keys is not None and feature not in self.feature_keys:
            raise ConfigError(FILE, f"{path}.feature", f"no feature {feature!r} in features.yaml")
        return Owner(feature=feature)

    def recommend(self, path: str, spec: Mapping[str, Any]) -> Recommend | None:
        raw = spec.get("recommendations")
        if raw is None:
            return None
        lists = self.doc.get("recommendations") or {}
        if raw["from"] not in lists:
            raise ConfigError(
                FILE, f"{path}.recommendations.from", f"no recommendation list {raw['from']!r}"
            )
        return Recommend(raw["from"], int(raw.get("count", 4)))

    def experiment(
        self, path: str, raw: Mapping[str, Any], variants: Mapping[str, Variant]
    ) -> CompiledExperiment:
        for i, name in enumerate(raw["variations"]):
            if name not in variants:
                raise ConfigError(FILE, f"{path}.variations.{i}", f"no variant {name!r}")
        weights = raw.get("weights")
        if weights is not None and len(weights) != len(raw["variations"]):
            raise ConfigError(FILE, f"{path}.weights", "needs one weight per variation")
        exp: dict[str, Any] = {"key": raw["key"], "variations": list(raw["variations"])}
        renames = {"hash_attribute": "hashAttribute", "hash_version": "hashVersion"}
        for name in ("weights", "coverage", "hash_attribute", "hash_version", "seed", "condition"):
            if name in raw:
                exp[renames.get(name, name)] = raw[name]
        exp.setdefault("hashVersion", 2)
        return compile_experiment(exp, self.saved_groups)

    @staticmethod
    def check_bandit(
        path: str, key: str, variants: Mapping[str, Variant], bandits: Mapping[str, BanditSpec]
    ) -> None:
        if key not in bandits:
            raise ConfigError(FILE, f"{path}.bandit", f"no bandit {key!r} under bandits:")
        missing = [arm for arm in bandits[key].arms if arm not in variants]
        if missing:
            raise ConfigError(
                FILE, f"bandits.{key}.arms", f"arm {missing[0]!r} is not a variant of {path}"
            )


def _cap(raw: Mapping[str, Any] | None) -> Cap | None:
    return None if raw is None else Cap(int(raw["max"]), parse_duration(raw["window"]))


def compile_definitions(
    document: Mapping[str, Any],
    checker: TemplateChecker,
    feature_keys: Collection[str] | None = None,
    saved_groups: Mapping[str, Any] | None = None,
) -> PlacementDefinitions:
    """Validate and compile a ``placements.yaml`` document.

    ``feature_keys`` (the keys of ``features.yaml``) lets ``feature:`` owners
    be checked; ``None`` skips that check. Raises :class:`ConfigError`.
    """
    validate_placements(document)
    compiler = _Compiler(document, checker, feature_keys, saved_groups)
    bandits = compiler.bandits()
    placements = {
        key: compiler.placement(key, raw, bandits)
        for key, raw in (document.get("placements") or {}).items()
    }
    version = hashlib.sha256(
        orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
        + "".join(
            v.template.source for p in placements.values() for v in p.variants.values()
        ).encode()
    ).hexdigest()[:12]
    return PlacementDefinitions(
        placements=placements,
        bandits=bandits,
        recommendations=dict(document.get("recommendations") or {}),
        holdout=compiler.holdout(),
        settings=compiler.settings(),
        version=version,
        document=document,
    )
