"""The decision: for one user and request, the content of each placement.

:class:`DecisionEngine` is the core of ``POST /v1/decide``. It takes plain
values (the request, a profile view, the live definitions) and never raises
for a placement: every failure becomes the placement's default content with
``source: "default"`` and a ``reason``.

Order of a decision:

1. consent: an opted-out user (request, ``/v1/consent`` or profile) gets
   defaults and nothing about them is logged or learned;
2. the global holdout: a stable hashed share of users gets defaults (and is
   logged as the ``holdout`` arm so total lift can be measured);
3. flags: every feature of ``features.yaml``;
4. per placement, within the deadline: the variant held by minimum dwell, else
   the first rule (by priority) whose condition holds and whose owner picks
   a variant that is not frequency-capped, else the default; then render.

>>> from tailorkit.decide.content import TemplateChecker
>>> from tailorkit.decide.placements import compile_definitions
>>> defs = compile_definitions({"placements": {"hero": {"default": "plain",
...     "variants": {"plain": {"content": "Welcome"},
...                  "de": {"content": "Willkommen{% if user.id %}, {{ user.id }}{% endif %}"}},
...     "rules": [{"id": "german", "priority": 1, "variant": "de",
...                "condition": {"country": "DE"}}]}}}, TemplateChecker())
>>> engine = DecisionEngine(defs)
>>> out = engine.decide(DecideRequest(user_id="ada", attributes={"country": "DE"}))
>>> out["placements"]["hero"]
{'content': 'Willkommen, ada', 'variant': 'de', 'source': 'rule', 'rule': 'german'}
>>> engine.decide(DecideRequest(user_id="bob"))["placements"]["hero"]["source"]
'default'
"""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from tailorkit import metrics
from tailorkit.decide.bandit_runtime import BanditRuntime
from tailorkit.decide.log import EXPOSURE
from tailorkit.decide.memory import ConsentRegistry, UserMemory
from tailorkit.decide.placements import Placement, PlacementDefinitions, Rule, Variant
from tailorkit.evaluate import Context, Evaluator, ExposureRecord, hash
from tailorkit.evaluate.context import ExposureCallback

if TYPE_CHECKING:  # the model code (scikit-learn, implicit) loads only where a server serves it
    from tailorkit.learn.recommender import Recommender, ServedRecommender

__all__ = ["DecideRequest", "DecisionEngine", "ProfileView"]

log = logging.getLogger(__name__)


@dataclass
class DecideRequest:
    """What a caller asks for (``placements=None``: all of them)."""

    user_id: str | None = None
    anonymous_id: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)
    placements: Sequence[str] | None = None
    personalization: bool = True

    @property
    def person(self) -> str | None:
        """The id decisions are remembered under: the user id, else the anonymous id."""
        return self.user_id or self.anonymous_id


@dataclass(frozen=True)
class ProfileView:
    """What the decision reads of a profile."""

    features: Mapping[str, Any] = field(default_factory=dict)
    segments: Sequence[str] = ()
    consent: bool = True


# Its own generator: a random.seed() elsewhere cannot make ids repeat (they skip store dedup).
_random_bits = random.Random().getrandbits
# Version-4 UUID bits: ids need to be unique, not unguessable (they only deduplicate).
_UUID4_MASK = ~(0xF000 << 64 | 0xC000 << 48) & (1 << 128) - 1
_UUID4_BITS = 0x4000 << 64 | 0x8000 << 48
NO_PROFILE = ProfileView()
NO_RULE = "no rule matched"
NO_CONSENT = "no personalization consent"
ProfileLookup = Callable[[str], ProfileView]
ExposureSink = Callable[[list[dict[str, Any]]], None]
#: Gives the exposure callback of a user for flag (features.yaml) exposures
FlagExposures = Callable[[str | None, str | None], ExposureCallback]


@dataclass(slots=True)
class Choice:
    """The outcome of one placement before it is turned into JSON."""

    variant: Variant
    source: str
    content: str = ""
    rule: str | None = None
    experiment: str | None = None
    bandit: str | None = None
    reason: str | None = None
    propensity: float = 1.0
    segment: str | None = None
    held: bool = False
    recommendations: list[Any] | None = None
    exposure: dict[str, Any] | None = None
    model_version: str | None = None
    #: Which static list the recommendations are (``None``: a model ranked them)
    items_key: tuple[str, str | None, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "content": self.content,
            "variant": self.variant.key,
            "source": self.source,
        }
        # one test per field: this runs for every placement of every request
        if self.rule is not None:
            out["rule"] = self.rule
        if self.experiment is not None:
            out["experiment"] = self.experiment
        if self.bandit is not None:
            out["bandit"] = self.bandit
        if self.reason is not None:
            out["reason"] = self.reason
        if self.model_version is not None:
            out["model_version"] = self.model_version
        if self.recommendations is not None:
            out["items"] = _item_ids(self.recommendations)
        if self.held:
            out["held"] = True
        data = self.variant.data
        if data is not None:
            out["data"] = data
        return out


#: Key of a cached rendering: placement, variant, context, static recommendation list
_CacheKey = tuple[str, str, bytes, tuple[str, str | None, int] | None]


class _RenderCache:
    """Rendered contents of templates that read no user-specific field (LRU)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[_CacheKey, str] = OrderedDict()

    def get(self, key: _CacheKey) -> str | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: _CacheKey, value: str) -> None:
        if self.size <= 0:
            return
        self._items[key] = value
        if len(self._items) > self.size:
            self._items.popitem(last=False)


class _Request:
    """Per-request working state shared by the placement steps."""

    __slots__ = (
        "attributes",
        "conditions",
        "context_key",
        "counts",
        "ctx",
        "deadline",
        "evaluator",
        "exposures",
        "flags",
        "missed",
        "now",
        "person",
        "profile",
        "records",
        "req",
        "timestamp",
        "variables",
    )

    def __init__(self, req: DecideRequest, deadline: float, now: float) -> None:
        self.req = req
        self.person = req.person
        self.deadline = deadline
        self.now = now
        self.profile = NO_PROFILE
        self.attributes: dict[str, Any] = {}
        self.flags: dict[str, Any] = {}
        self.records: list[ExposureRecord] = []
        self.exposures: list[dict[str, Any]] = []
        self.variables: dict[str, Any] | None = None  # made when a template renders
        self.ctx: Context | None = None
        self.evaluator: Evaluator | None = None
        self.timestamp: str | None = None
        self.missed: str | None = None  # why a recommendation rule had nothing to show
        # rule conditions already evaluated: placements share them (compiled once each)
        self.conditions: dict[Callable[[Any], bool], bool] = {}
        self.context_key: bytes | None = None  # of the render cache, made once
        # decisions by source, counted in the metrics once per request
        self.counts: dict[str, int] = {}


class DecisionEngine:
    """Decides placements for requests against one set of live definitions."""

    def __init__(
        self,
        definitions: PlacementDefinitions,
        evaluator: Evaluator | Callable[[], Evaluator] | None = None,
        *,
        profiles: ProfileLookup | None = None,
        bandits: BanditRuntime | None = None,
        memory: UserMemory | None = None,
        consent: ConsentRegistry | None = None,
        exposures: ExposureSink | None = None,
        flag_exposures: FlagExposures | None = None,
        profile_features: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
        recommender: ServedRecommender | None = None,
    ) -> None:
        self.definitions = definitions
        # A callable is asked once per request: the features service swaps its evaluator
        # on its own reloads, and a request must use one evaluator throughout.
        self.evaluator = evaluator if evaluator is not None else Evaluator()
        self.flag_exposures = flag_exposures
        self.profiles = profiles
        self.bandits = BanditRuntime() if bandits is None else bandits
        self.bandits.sync(definitions.bandits)
        # "is None", not "or": an empty memory or registry is falsy (they have __len__)
        self.memory = UserMemory(definitions.settings.users_in_memory) if memory is None else memory
        self.consent = ConsentRegistry() if consent is None else consent
        self.exposures = exposures
        self.profile_features = tuple(profile_features)
        self.clock = clock
        # The served recommendation model (lists with ``model:``); read, never loaded, here.
        self.recommender = recommender
        self.cache = _RenderCache(definitions.settings.cache_size)
        self.memory_ttl = _memory_ttl(definitions)

    def with_definitions(
        self,
        definitions: PlacementDefinitions,
        evaluator: Evaluator | Callable[[], Evaluator] | None = None,
    ) -> DecisionEngine:
        """A new engine on new definitions sharing memory, consent and bandits (hot reload)."""
        return DecisionEngine(
            definitions,
            evaluator or self.evaluator,
            profiles=self.profiles,
            bandits=self.bandits,
            memory=self.memory,
            consent=self.consent,
            exposures=self.exposures,
            flag_exposures=self.flag_exposures,
            profile_features=self.profile_features,
            clock=self.clock,
            recommender=self.recommender,
        )

    def _evaluator(self) -> Evaluator:
        source = self.evaluator
        return source if isinstance(source, Evaluator) else source()

    # -- the request -------------------------------------------------------------

    def decide(self, req: DecideRequest, started: float | None = None) -> dict[str, Any]:
        """Answer one request; never raises (failures give defaults with a reason)."""
        started = time.perf_counter() if started is None else started
        deadline = started + self.definitions.settings.deadline_ms / 1000.0
        work = _Request(req, deadline, self.clock())
        keys = self._requested(req)
        try:
            out = self._decide(work, keys)
        except Exception as exc:  # never fail the page
            log.exception("decision failed; answering defaults")
            metrics.ERRORS.labels("decide").inc()
            out = self._all_default(work, keys, f"internal error: {type(exc).__name__}")
        for source, count in work.counts.items():
            _counter(source).inc(count)
        if req.person is not None:
            self.memory.save(req.person, self.memory_ttl)  # shared with replicas (Redis)
        if work.exposures and self.exposures is not None:
            self.exposures(work.exposures)
        return out

    def _requested(self, req: DecideRequest) -> list[str]:
        placements = self.definitions.placements
        if req.placements is None:
            return list(placements)
        return [key for key in req.placements if key in placements]

    def _decide(self, work: _Request, keys: list[str]) -> dict[str, Any]:
        req = work.req
        if not req.personalization or self.consent.opted_out(req.user_id, req.anonymous_id):
            return self._without_consent(work, keys)
        if req.person is not None and self.profiles is not None:
            work.profile = self.profiles(req.person)
            if not work.profile.consent:
                return self._without_consent(work, keys)
        if req.person is not None:
            self.memory.load(req.person)  # what other replicas remember (Redis); never raises
        self._prepare(work)
        holdout = self._in_holdout(work)
        if holdout:
            placements = {k: self._fallback(work, k, "holdout").to_dict() for k in keys}
        else:
            placements = {k: self._placement(work, k) for k in keys}
        return self._answer(work, placements, holdout)

    def defaults(self, reason: str | None = None) -> dict[str, dict[str, Any]]:
        """Every placement's default content (what clients show when the server is down or
        overloaded), with ``reason`` when one is given; needs no request."""
        out = {}
        for key, placement in self.definitions.placements.items():
            default = placement.default
            shown = {"content": default.fallback or "", "variant": default.key, "source": "default"}
            if reason is not None:
                shown["reason"] = reason
            out[key] = shown
        return out

    def _answer(self, work: _Request, placements: dict[str, Any], holdout: bool) -> dict[str, Any]:
        req = work.req
        return {
            "user_id": req.user_id,
            "anonymous_id": req.anonymous_id,
            "segments": list(work.profile.segments),
            "flags": work.flags,
            "experiments": [_experiment_json(r) for r in work.records],
            "holdout": holdout,
            "placements": placements,
        }

    def _without_consent(self, work: _Request, keys: list[str]) -> dict[str, Any]:
        """Defaults, and flags from the request alone; nothing is logged or remembered."""
        placements = {k: self._fallback(work, k, NO_CONSENT, False).to_dict() for k in keys}
        req = work.req
        attributes = {**req.context, **req.attributes, "id": req.person}
        attributes.update(user_id=req.user_id, anonymous_id=req.anonymous_id, segments=[])
        evaluator = self._evaluator()
        ctx = evaluator.context(attributes, on_exposure=_ignore)
        work.flags = {k: r.value for k, r in evaluator.eval_all(ctx).items()}
        work.profile = NO_PROFILE
        return self._answer(work, placements, False)

    def _all_default(self, work: _Request, keys: list[str], reason: str) -> dict[str, Any]:
        placements = {k: self._fallback(work, k, reason).to_dict() for k in keys}
        work.flags, work.records = {}, []
        work.profile = NO_PROFILE
        return self._answer(work, placements, False)

    # -- context ---------------------------------------------------------------------

    def _prepare(self, work: _Request) -> None:
        """Attributes for conditions, flags and template variables."""
        req, profile = work.req, work.profile
        attributes: dict[str, Any] = dict(profile.features)
        attributes.update(req.context)
        now = datetime.fromtimestamp(work.now, UTC)
        attributes.setdefault("hour", now.hour)
        attributes.setdefault("weekday", now.isoweekday())
        attributes.update(req.attributes)
        attributes["id"] = req.person
        attributes["user_id"] = req.user_id
        attributes["anonymous_id"] = req.anonymous_id
        attributes["segments"] = list(profile.segments)
        work.attributes = attributes
        evaluator = work.evaluator = self._evaluator()
        work.ctx = evaluator.context(attributes, on_exposure=work.records.append)
        work.flags = evaluator.values(work.ctx)
        self._log_flag_records(work, work.records)

    def _variables(self, work: _Request) -> dict[str, Any]:
        """Template variables (see :mod:`tailorkit.decide.content`), made once per request."""
        if work.variables is None:
            req, profile = work.req, work.profile
            features = dict.fromkeys(self.profile_features)
            features.update(profile.features)
            user = {"id": req.person, "user_id": req.user_id, "anonymous_id": req.anonymous_id}
            work.variables = {
                "profile": features,
                "segments": list(profile.segments),
                "attributes": work.attributes,
                "context": dict(req.context),
                "user": user,
                "flags": work.flags,
                "recommendations": [],
            }
        return work.variables

    def _in_holdout(self, work: _Request) -> bool:
        holdout = self.definitions.holdout
        if holdout.share <= 0.0:
            return False
        value = work.attributes.get(holdout.hash_attribute)
        if value is None or value == "":
            return False
        bucket = hash(holdout.seed, str(value), 2)
        inside = bucket is not None and bucket < holdout.share
        person = work.person
        if person is not None and self.memory.first_log(
            person, "", holdout.seed, self.definitions.settings.exposure_dedup_seconds, work.now
        ):
            work.exposures.append(
                self._event(
                    work,
                    kind="experiment",
                    key=holdout.seed,
                    variation=0 if inside else 1,
                    variation_key="holdout" if inside else "personalized",
                    propensity=holdout.share if inside else 1.0 - holdout.share,
                    hash_attribute=holdout.hash_attribute,
                    hash_value=str(value),
                )
            )
        return inside

    # -- one placement -----------------------------------------------------------------

    def _placement(self, work: _Request, key: str) -> dict[str, Any]:
        if time.perf_counter() > work.deadline:
            metrics.DECIDE_FALLBACKS.labels("deadline").inc()
            return self._fallback(work, key, "deadline exceeded").to_dict()
        placement = self.definitions.placements[key]
        try:
            choice = self._choose(work, placement)
        except Exception as exc:
            log.exception("placement %s failed; serving its default", key)
            metrics.DECIDE_FALLBACKS.labels("error").inc()
            return self._fallback(work, key, f"internal error: {type(exc).__name__}").to_dict()
        self._after(work, placement, choice)
        return choice.to_dict()

    def _choose(self, work: _Request, placement: Placement) -> Choice:
        if placement.min_dwell and work.person is not None:
            held = self._held(work, placement)
            if held is not None:
                return held
        conditions = work.conditions
        for rule in placement.rules:
            condition = rule.condition
            if condition is not None:
                holds = conditions.get(condition)
                if holds is None:
                    holds = conditions[condition] = bool(condition(work.attributes))
                if not holds:
                    continue
            fixed = rule.fixed
            choice = Choice(fixed, "rule", rule=rule.id) if fixed is not None else None
            if choice is None:
                choice = self._owner(work, placement, rule)
            if choice is None or (
                choice.variant.cap is not None and self._capped(work, placement, choice.variant)
            ):
                continue
            if self._render(work, placement, choice):
                return choice
            metrics.DECIDE_FALLBACKS.labels("render").inc()
            return _default(placement, choice.reason or "render error")
        reason = NO_RULE if work.missed is None else f"{NO_RULE} ({work.missed})"
        work.missed = None
        choice = Choice(placement.default, "default", reason=reason)
        if not self._render(work, placement, choice):
            choice.content = placement.default.fallback or ""
        return choice

    def _held(self, work: _Request, placement: Placement) -> Choice | None:
        person = work.person
        if not placement.min_dwell or person is None:  # checked by the caller too
            return None
        shown = self.memory.held(person, placement.key, placement.min_dwell, work.now)
        if shown is None or shown.variant not in placement.variants:
            return None
        variant = placement.variants[shown.variant]
        if self._capped(work, placement, variant):
            return None  # a cap is a hard limit: it ends the dwell
        choice = Choice(variant, shown.source, rule=shown.rule, held=True)
        return choice if self._render(work, placement, choice) else None

    def _owner(self, work: _Request, placement: Placement, rule: Rule) -> Choice | None:
        owner = rule.owner
        if owner.experiment is not None:
            assert work.ctx is not None
            before = len(work.records)
            assert work.evaluator is not None
            result = work.evaluator.run(owner.experiment, work.ctx)
            if not result.in_experiment or result.value not in placement.variants:
                return None
            choice = Choice(
                placement.variants[result.value], "experiment", rule=rule.id,
                experiment=owner.experiment.key,
            )  # fmt: skip
            self._log_records(work, work.records[before:], placement.key, rule.id)
            return choice
        if owner.feature is not None:
            return self._feature(work, placement, rule, owner.feature)
        if owner.bandit is not None:
            return self._bandit(work, placement, rule, owner.bandit)
        assert owner.variant is not None
        variant = placement.variants[owner.variant]
        if owner.recommend is None:
            return Choice(variant, "rule", rule=rule.id)
        found = self._recommendations(work, owner.recommend.source, owner.recommend.count)
        if not found.items:
            work.missed = found.reason or "no recommendations"
            return None
        return Choice(
            variant, "recommendation", rule=rule.id, recommendations=found.items,
            reason=found.reason, model_version=found.model_version, items_key=found.key,
        )  # fmt: skip

    def _feature(
        self, work: _Request, placement: Placement, rule: Rule, feature: str
    ) -> Choice | None:
        assert work.ctx is not None and work.evaluator is not None
        before = len(work.records)
        result = work.evaluator.eval_feature(feature, work.ctx)
        self._log_flag_records(work, work.records[before:])
        if not isinstance(result.value, str) or result.value not in placement.variants:
            return None
        variant = placement.variants[result.value]
        if result.source == "experiment" and result.experiment is not None:
            key = result.experiment.key
            return Choice(variant, "experiment", rule=rule.id, experiment=key)
        return Choice(variant, "rule", rule=rule.id)

    def _bandit(self, work: _Request, placement: Placement, rule: Rule, key: str) -> Choice:
        spec = self.definitions.bandits[key]
        pick = self.bandits.choose(
            spec, work.person, work.profile.segments, work.attributes, placement.key, work.now
        )
        choice = Choice(
            placement.variants[pick.arm_key], "bandit", rule=rule.id, bandit=key,
            propensity=pick.propensity, segment=pick.segment,
        )  # fmt: skip
        choice.exposure = self._event(
            work,
            kind="bandit",
            key=key,
            variation=pick.arm,
            variation_key=pick.arm_key,
            propensity=pick.propensity,
            placement=placement.key,
            rule=rule.id,
            segment=pick.segment,
            # a linear bandit's context, so that off-policy evaluation can replay it
            features=dict(zip(spec.features, pick.context, strict=True)) if spec.features else None,
        )
        return choice

    def _recommendations(self, work: _Request, source: str, count: int) -> Recommendations:
        """Items of list ``source``: from the served model, else the list's static items."""
        spec = self.definitions.recommendations.get(source) or {}
        reason = None
        if "model" in spec:
            served = self.recommender.current() if self.recommender is not None else None
            if served is not None:
                found = _from_model(served, spec, work.req, count)
                if found.items:
                    return found
                reason = found.reason or "no product passed the filters"
            elif self.recommender is not None:
                reason = self.recommender.problem or "no recommendation model"
            else:
                reason = "no recommendation model"
        items = list((spec.get("items") or [])[:count])
        by_segment = spec.get("by_segment") or {}
        chosen = None
        for segment in work.profile.segments:
            if segment in by_segment:
                items = list(by_segment[segment][:count])
                chosen = segment
                break
        if items and reason is not None:
            reason = f"{reason}; static list served"
        return Recommendations(items, reason, key=(source, chosen, count))

    def _capped(self, work: _Request, placement: Placement, variant: Variant) -> bool:
        cap, person = variant.cap, work.person
        if cap is None or person is None or variant is placement.default:
            return False
        return self.memory.capped(person, placement.key, variant.key, cap.max, cap.window, work.now)

    # -- rendering -------------------------------------------------------------------

    def _render(self, work: _Request, placement: Placement, choice: Choice) -> bool:
        """Fill ``choice.content``; False (with the reason noted) when the template fails."""
        template = choice.variant.template
        if template.constant and choice.variant.fallback is not None:
            choice.content = choice.variant.fallback
            return True
        cache_key = self._cache_key(work, placement, choice)
        if cache_key is not None:
            cached = self.cache.get(cache_key)
            if cached is not None:
                choice.content = cached
                return True
        variables = dict(self._variables(work))
        variables["placement"] = placement.key
        variables["variant"] = choice.variant.key
        if choice.recommendations is not None:
            variables["recommendations"] = choice.recommendations
        try:
            choice.content = template.render(variables)
        except Exception as exc:
            choice.reason = f"render error in {choice.variant.key}: {type(exc).__name__}: {exc}"[
                :300
            ]
            return False
        if cache_key is not None:
            self.cache.put(cache_key, choice.content)
        return True

    def _cache_key(self, work: _Request, placement: Placement, choice: Choice) -> _CacheKey | None:
        """Where a rendering is cached: by the values the template reads (``None``: not cached).

        Recommendations count only as a static list; user fields by their JSON,
        types that JSON would blur (dates, subclasses) leave the rendering uncached.
        """
        template = choice.variant.template
        items_key = choice.items_key
        names = template.names
        if not template.user_specific or (items_key is not None and names <= _STATIC_LIST_NAMES):
            context_key = b""  # a template that does not read the context is cached once
            if "context" in names:
                if work.context_key is None:
                    work.context_key = _context_key(work.req.context)
                context_key = work.context_key
            return (placement.key, choice.variant.key, context_key, items_key)
        if not template.deterministic or ("recommendations" in names and items_key is None):
            return None
        variables = self._variables(work)
        read = {name: variables[name] for name in template.user_names}
        try:
            values = orjson.dumps(read, option=_STRICT_JSON)
        except TypeError:
            return None
        return (placement.key, choice.variant.key, values, items_key)

    def _fallback(self, work: _Request, key: str, reason: str, log_it: bool = True) -> Choice:
        """The default content of ``key`` without touching user data (always succeeds)."""
        placement = self.definitions.placements[key]
        choice = _default(placement, reason)
        work.counts["default"] = work.counts.get("default", 0) + 1
        if log_it:
            self._log_deterministic(work, placement, choice)
        return choice

    # -- after a decision --------------------------------------------------------------

    def _after(self, work: _Request, placement: Placement, choice: Choice) -> None:
        source = choice.source
        counts = work.counts
        counts[source] = counts.get(source, 0) + 1
        person = work.person
        real = source != "default" or (choice.reason or "").startswith(NO_RULE)
        logged = choice.exposure is not None and not choice.held
        deterministic = not logged and (source != "experiment" or choice.held)
        if person is not None and real and deterministic:
            # remember, then log: one memory call (this is most placements)
            period = self.definitions.settings.exposure_dedup_seconds
            if self.memory.remember_and_log(
                person, placement.key, choice.variant.key, source, choice.rule, work.now,
                _logged_as(choice), period,
            ):  # fmt: skip
                self._append_deterministic(work, placement, choice)
            return
        if person is not None and real:
            # Same variant again keeps its dwell clock; every showing counts for caps.
            self.memory.remember(
                person, placement.key, choice.variant.key, source, choice.rule, work.now
            )
        if logged:
            assert choice.exposure is not None
            work.exposures.append(choice.exposure)
        elif deterministic:
            self._log_deterministic(work, placement, choice)

    def _log_deterministic(self, work: _Request, placement: Placement, choice: Choice) -> None:
        """Log a propensity-1 decision once per user, placement and variant per dedup period."""
        person = work.person
        if person is None:
            return
        period = self.definitions.settings.exposure_dedup_seconds
        if self.memory.first_log(person, placement.key, _logged_as(choice), period, work.now):
            self._append_deterministic(work, placement, choice)

    def _append_deterministic(self, work: _Request, placement: Placement, choice: Choice) -> None:
        """The exposure event of a propensity-1 decision."""
        # built field by field (what _event would give): one per placement and user
        properties = {
            "kind": choice.source,
            "key": placement.key,
            "variation": choice.variant.index,
            "variation_key": choice.variant.key,
            "propensity": 1.0,
            "placement": placement.key,
        }
        if choice.rule is not None:
            properties["rule"] = choice.rule
        if choice.reason is not None:
            properties["reason"] = choice.reason
        if choice.held:
            properties["held"] = True
        if choice.model_version is not None:
            properties["model_version"] = choice.model_version
        if choice.recommendations is not None:
            properties["items"] = _item_ids(choice.recommendations)
        work.exposures.append(self._envelope(work, properties))

    def _log_flag_records(self, work: _Request, records: Sequence[ExposureRecord]) -> None:
        """Flag exposures go to the features service's log when there is one (one log)."""
        if not records:
            return
        if self.flag_exposures is None:
            self._log_records(work, records, None, None)
            return
        callback = self.flag_exposures(work.req.user_id, work.req.anonymous_id)
        for record in records:
            callback(record)

    def _log_records(
        self,
        work: _Request,
        records: Sequence[ExposureRecord],
        placement: str | None,
        rule: str | None,
    ) -> None:
        person = work.person
        if person is None:
            return
        period = self.definitions.settings.exposure_dedup_seconds
        # an assignment is deterministic: logged once per user per dedup period, like rules
        names = [f"{record.experiment_key}\x1f{record.variation_key}" for record in records]
        firsts = self.memory.first_logs(person, placement or "", names, period, work.now)
        for record, first in zip(records, firsts, strict=True):
            if not first:
                continue
            properties = {
                "kind": "experiment",
                "key": record.experiment_key,
                "variation": record.variation_id,
                "variation_key": str(record.variation_key),
                "propensity": min(1.0, max(0.0, record.propensity)),
                "hash_attribute": record.hash_attribute,
                "hash_value": str(record.hash_value),
            }
            if record.feature_key is not None:
                properties["feature"] = record.feature_key
            if placement is not None:
                properties["placement"] = placement
            if rule is not None:
                properties["rule"] = rule
            work.exposures.append(self._envelope(work, properties))

    def _event(self, work: _Request, **fields: Any) -> dict[str, Any]:
        """An exposure event, shaped as :func:`tailorkit.decide.log.exposure_event` builds it.

        Built here without its checks (the values are right by construction) and
        with a cheaper id, because a request logs up to one per placement.
        """
        return self._envelope(work, {k: v for k, v in fields.items() if v is not None})

    def _envelope(self, work: _Request, properties: dict[str, Any]) -> dict[str, Any]:
        """The exposure event around ``properties`` (none of them ``None``)."""
        if work.timestamp is None:
            work.timestamp = datetime.fromtimestamp(work.now, UTC).isoformat()
        req = work.req
        return {
            "event_id": _event_id(),
            "type": EXPOSURE,
            "user_id": req.user_id,
            "anonymous_id": req.anonymous_id,
            "timestamp": work.timestamp,
            "properties": properties,
        }


_COUNTERS: dict[str, Any] = {}
#: What a template may read and still be cached when its recommendations are a static list
_STATIC_LIST_NAMES = frozenset({"recommendations", "context", "placement", "variant"})
#: Values that JSON would not tell apart from others (dates, subclasses) raise TypeError
_STRICT_JSON = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _event_id() -> str:
    """A random version-4 UUID as text (what ``str(uuid.UUID(int=...))`` gives, faster)."""
    h = "%032x" % (_random_bits(128) & _UUID4_MASK | _UUID4_BITS)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _counter(source: str) -> Any:
    """The decisions counter of ``source`` (label lookups are not free on the hot path)."""
    counter = _COUNTERS.get(source)
    if counter is None:
        counter = _COUNTERS[source] = metrics.DECISIONS.labels(source)
    return counter


def _logged_as(choice: Choice) -> str:
    """What a propensity-1 decision is deduplicated as: a new model version is a new
    decision, logged again within the dedup period."""
    if choice.model_version is not None:
        return f"{choice.variant.key}@{choice.model_version}"
    return choice.variant.key


def _ignore(_: ExposureRecord) -> None:
    """Exposure callback of users without consent: nothing about them is logged."""


def _memory_ttl(definitions: PlacementDefinitions) -> float:
    """How long a user's decision memory matters: the longest dwell, cap window or dedup."""
    longest = definitions.settings.exposure_dedup_seconds
    for placement in definitions.placements.values():
        longest = max(longest, placement.min_dwell)
        for variant in placement.variants.values():
            if variant.cap is not None:
                longest = max(longest, variant.cap.window)
    return longest


def _default(placement: Placement, reason: str) -> Choice:
    """The default variant with its load-time rendering (needs no user data)."""
    return Choice(placement.default, "default", placement.default.fallback or "", reason=reason)


@dataclass(slots=True)
class Recommendations:
    """A recommendation list for one request: items, the model that ranked them, any reason."""

    items: list[Any]
    reason: str | None = None
    model_version: str | None = None
    #: A static list's (list, segment, count), which alone decide its items
    key: tuple[str, str | None, int] | None = None


def _ids(value: Any) -> list[str]:
    """Product ids from a context value: one id or a list of ids (others ignored)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _model_filters(spec: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any] | None:
    """The list's static ``filters`` and, from the request context, ``context_filters``."""
    static = spec.get("filters") or {}
    dynamic = {
        attribute: context[key]
        for attribute, key in (spec.get("context_filters") or {}).items()
        if isinstance(context.get(key), str | int | float | bool)
    }
    if static and dynamic:
        return {"$and": [static, dynamic]}
    return dict(static or dynamic) or None


def _from_model(
    rec: Recommender, spec: Mapping[str, Any], req: DecideRequest, count: int
) -> Recommendations:
    """Rank with the served model; if the chosen model fails, popularity (with the reason).

    The person is the user id when the model knows it, else the anonymous id
    (history from before login); unknown visitors get the cold-start ranking
    from ``context_history`` (recently viewed products), else popularity.
    """
    known = [p for p in (req.user_id, req.anonymous_id) if rec.knows(p)]
    person = known[0] if known else req.person
    context = req.context
    history_key, exclude_key = spec.get("context_history"), spec.get("context_exclude")
    options: dict[str, Any] = {
        "exclude_purchased": bool(spec.get("exclude_purchased", True)),
        "filters": _model_filters(spec, context),
        "exclude": _ids(context.get(exclude_key)) if exclude_key else [],
    }
    history = _ids(context.get(history_key)) if history_key else []
    model = str(spec.get("model", "hybrid"))
    reason = None
    try:
        ranked = rec.recommend(person, count, history=history or None, model=model, **options)
    except Exception as exc:  # a broken model must not break the page: popularity instead
        log.exception("recommendations with %s failed; serving popularity", model)
        metrics.DECIDE_FALLBACKS.labels("recommendation").inc()
        ranked = rec.recommend(person, count, model="popularity", **options)
        reason = f"{model} failed ({type(exc).__name__}); popularity served"
    items = [{**rec.item(p), "id": p, "score": score} for p, score in ranked]
    return Recommendations(items, reason, rec.model_version)


def _item_ids(items: Sequence[Any]) -> list[Any]:
    return [item.get("id") if isinstance(item, Mapping) else item for item in items]


def _context_key(context: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(context, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return repr(sorted(context.items())).encode()


def _experiment_json(record: ExposureRecord) -> dict[str, Any]:
    return {
        "key": record.experiment_key,
        "variation": record.variation_id,
        "variation_key": record.variation_key,
        "feature": record.feature_key,
    }
