"""Experiment definitions for analysis: ``experiments:`` in ``features.yaml``.

The JSON Schema (``definitions.schema.json``) checks each field; this module
checks what a schema cannot (metric keys referenced by ``primary_metric`` and
``guardrails``, known segments, weights matching variations) and fills
defaults from the experiment's GrowthBook feature rule: its ``weights`` (for
the sample-ratio check) and ``meta`` names. Errors are
:class:`~tailorkit.project.ConfigError` naming file, key path and reason.

>>> spec = parse_experiment({"experiments": {"checkout": {"metrics": {
...     "purchase": {"type": "binomial", "event": "purchase", "window_hours": 72}}}}},
...     "checkout")
>>> spec.primary.key, spec.primary.window_hours, spec.weights
('purchase', 72.0, None)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from tailorkit.measure.stats import Alternative, BetaPrior, Correction, GaussianPrior, MetricType
from tailorkit.project import ConfigError

FILE = "features.yaml"
DEFAULT_PRE_PERIOD_DAYS = 14.0
Scalar = str | float | bool
Role = Literal["primary", "secondary", "guardrail"]
#: ``one``: variations × metrics × segments (overall included) corrected as one family;
#: ``separate``: the overall comparisons and the segment breakdown as two families
Family = Literal["one", "separate"]
#: covariates for regression adjustment, taken at the first exposure: the dotted path
#: in the exposure event's ``context`` (``None``: derived from the exposure time)
COVARIATES: dict[str, str | None] = {
    "device": "device.type",
    "utm_source": "utm.source",
    "utm_medium": "utm.medium",
    "utm_campaign": "utm.campaign",
    "weekday": None,
}


@dataclass(frozen=True)
class EventAggregate:
    """Per user: the sum of property ``value`` (or the count) over events of one type."""

    event: str
    value: str | None = None
    where: tuple[tuple[str, Scalar], ...] = ()


@dataclass(frozen=True)
class Cuped:
    """Pre-exposure covariate: ``covariate`` summed over ``pre_period_days`` before exposure."""

    pre_period_days: float
    covariate: EventAggregate


@dataclass(frozen=True)
class MetricSpec:
    """One metric of an experiment.

    ``numerator`` is the event of a binomial/mean metric (``x``); ratio
    metrics also have a ``denominator`` (``y``). A binomial metric counts a
    user as converted when ``numerator`` occurred at least once in the window.
    """

    key: str
    type: MetricType
    numerator: EventAggregate
    denominator: EventAggregate | None = None
    window_hours: float | None = None
    higher_is_better: bool = True
    winsorize_percentile: float | None = None
    winsorize_ignore_zeros: bool = False
    cuped: Cuped | None = None
    role: Role = "secondary"
    #: Bayesian prior: Beta on the rate (binomial), Normal on the lift (mean, ratio)
    prior: BetaPrior | GaussianPrior | None = None

    @property
    def paired(self) -> bool:
        """Whether SQL must also aggregate ``y`` (ratio denominator or CUPED covariate)."""
        return self.denominator is not None or self.cuped is not None


@dataclass(frozen=True)
class ExperimentSpec:
    """Everything the analysis needs to know about one experiment."""

    key: str
    metrics: tuple[MetricSpec, ...]
    name: str = ""
    feature: str | None = None
    variations: tuple[str, ...] | None = None
    weights: tuple[float, ...] | None = None
    control: int = 0
    start: datetime | None = None
    end: datetime | None = None
    guardrail_margin: float = 0.0
    segments: tuple[str, ...] = ()
    alpha: float = 0.05
    alternative: Alternative = "two-sided"
    correction: Correction = "holm"
    correction_family: Family = "one"
    sequential: bool = False
    sequential_tuning: float = 5000.0
    planned_per_variation: int | None = None
    min_users: int = 100
    #: factorial design: (factor, levels) pairs (:mod:`tailorkit.measure.analysis.factorial`)
    factors: tuple[tuple[str, int], ...] = ()
    #: regression adjustment for these :data:`COVARIATES` (empty: none)
    adjust_for: tuple[str, ...] = ()

    @property
    def primary(self) -> MetricSpec:
        """The metric that decides the recommendation."""
        return next(m for m in self.metrics if m.role == "primary")


def _aggregate(doc: Mapping[str, Any]) -> EventAggregate:
    where = tuple(sorted((str(k), v) for k, v in (doc.get("where") or {}).items()))
    return EventAggregate(doc["event"], doc.get("value"), where)


def _cuped(doc: Any, own: EventAggregate, metric_type: str) -> Cuped | None:
    if doc is None or doc is False:
        return None
    options = doc if isinstance(doc, Mapping) else {}
    covariate = _aggregate(options["covariate"]) if "covariate" in options else own
    days = float(options.get("pre_period_days", DEFAULT_PRE_PERIOD_DAYS))
    return Cuped(days, covariate)


def _prior(doc: Mapping[str, Any] | None, kind: str) -> BetaPrior | GaussianPrior | None:
    """``{alpha, beta}`` for binomial metrics, ``{mean, sd, scale}`` (on the lift) otherwise.

    >>> _prior({"alpha": 2, "beta": 8}, "binomial")
    BetaPrior(alpha=2.0, beta=8.0)
    >>> _prior({"sd": 0.1}, "mean").variance
    0.010000000000000002
    """
    if not doc:
        return None
    if kind == "binomial":
        return BetaPrior(float(doc.get("alpha", 1.0)), float(doc.get("beta", 1.0)))
    sd = float(doc.get("sd", math.inf))
    return GaussianPrior(float(doc.get("mean", 0.0)), sd * sd, doc.get("scale", "relative"))


def _metric(key: str, doc: Mapping[str, Any], role: Role) -> MetricSpec:
    kind: MetricType = doc["type"]
    if kind == "ratio":
        numerator, denominator = _aggregate(doc["numerator"]), _aggregate(doc["denominator"])
    else:
        numerator, denominator = _aggregate(doc), None
    window = doc.get("window_hours")
    pct = doc.get("winsorize_percentile")
    return MetricSpec(
        key=key,
        type=kind,
        numerator=numerator,
        denominator=denominator,
        window_hours=float(window) if window is not None else None,
        higher_is_better=bool(doc.get("higher_is_better", True)),
        winsorize_percentile=float(pct) if pct is not None else None,
        winsorize_ignore_zeros=bool(doc.get("winsorize_ignore_zeros", False)),
        cuped=_cuped(doc.get("cuped"), numerator, kind),
        role=role,
        prior=_prior(doc.get("prior"), kind),
    )


def _instant(value: Any, path: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(FILE, path, f"not an ISO-8601 instant: {value!r}") from exc
    if moment.tzinfo is None:
        raise ConfigError(FILE, path, "needs a UTC offset (e.g. 2026-03-02T00:00:00Z)")
    return moment


def _roles(doc: Mapping[str, Any], path: str) -> dict[str, Role]:
    keys = list(doc["metrics"])
    primary = doc.get("primary_metric", keys[0])
    if primary not in keys:
        raise ConfigError(FILE, f"{path}.primary_metric", f"unknown metric {primary!r}")
    roles: dict[str, Role] = dict.fromkeys(keys, "secondary")
    for i, key in enumerate(doc.get("guardrails", [])):
        if key not in keys:
            raise ConfigError(FILE, f"{path}.guardrails.{i}", f"unknown metric {key!r}")
        if key == primary:
            raise ConfigError(FILE, f"{path}.guardrails.{i}", "the primary metric is no guardrail")
        roles[key] = "guardrail"
    roles[primary] = "primary"
    return roles


def find_rule(features: Mapping[str, Any], key: str, feature: str | None) -> dict[str, Any] | None:
    """The GrowthBook experiment rule whose key (default: its feature's key) is ``key``.

    >>> find_rule({"btn": {"rules": [{"variations": ["a", "b"], "weights": [0.2, 0.8]}]}},
    ...           "btn", None)["weights"]
    [0.2, 0.8]
    """
    for fkey, fdoc in features.items():
        if feature is not None and fkey != feature:
            continue
        for rule in (fdoc or {}).get("rules", []) or []:
            if "variations" in rule and rule.get("key", fkey) == key:
                return dict(rule)
    return None


def _from_rule(
    rule: Mapping[str, Any] | None,
) -> tuple[tuple[str, ...] | None, tuple[float, ...] | None]:
    """Variation names and weights of a GrowthBook experiment rule (equal when absent)."""
    if rule is None:
        return None, None
    count = len(rule["variations"])
    weights = tuple(float(w) for w in rule.get("weights") or [1.0 / count] * count)
    meta = rule.get("meta") or []
    names = tuple(str(m.get("name") or m.get("key") or i) for i, m in enumerate(meta))
    return (names if len(names) == count else None), weights


def _check_variations(spec: ExperimentSpec, path: str) -> None:
    counts = {len(x) for x in (spec.variations, spec.weights) if x is not None}
    if len(counts) > 1:
        raise ConfigError(FILE, f"{path}.weights", "one weight per variation is needed")
    if spec.factors:
        if any(n < 2 for _, n in spec.factors):
            raise ConfigError(FILE, f"{path}.factors", "every factor needs at least 2 levels")
        cells = math.prod(n for _, n in spec.factors)
        if counts and counts != {cells}:
            raise ConfigError(FILE, f"{path}.factors", f"{cells} cells need {cells} variations")
        counts = {cells}
    if spec.weights is not None and sum(spec.weights) <= 0:
        raise ConfigError(FILE, f"{path}.weights", "weights must not all be zero")
    if counts and spec.control >= counts.pop():
        raise ConfigError(FILE, f"{path}.control", "no such variation")


def parse_experiment(
    features_doc: Mapping[str, Any], key: str, known_segments: set[str] | None = None
) -> ExperimentSpec:
    """The :class:`ExperimentSpec` of ``key`` from a validated ``features.yaml`` document.

    ``known_segments`` (the keys of ``segments.yaml``) lets unknown segment
    names fail here rather than silently produce empty breakdowns.

    >>> doc = {"experiments": {"x": {"metrics": {"m": {"type": "binomial", "event": "e"}}}}}
    >>> parse_experiment(doc, "x").alpha, parse_experiment(doc, "x").correction
    (0.05, 'holm')
    """
    experiments = features_doc.get("experiments") or {}
    if key not in experiments:
        known = ", ".join(sorted(experiments)) or "none defined"
        raise ConfigError(FILE, f"experiments.{key}", f"no such experiment ({known})")
    doc, path = experiments[key], f"experiments.{key}"
    roles = _roles(doc, path)
    metrics = tuple(_metric(k, m, roles[k]) for k, m in doc["metrics"].items())
    segments = tuple(doc.get("segments", []))
    for i, seg in enumerate(segments):
        if known_segments is not None and seg not in known_segments:
            raise ConfigError(FILE, f"{path}.segments.{i}", f"unknown segment {seg!r}")
    adjust_for = tuple(doc.get("adjust_for", []))
    for i, name in enumerate(adjust_for):
        if name not in COVARIATES:
            known = ", ".join(COVARIATES)
            raise ConfigError(
                FILE, f"{path}.adjust_for.{i}", f"unknown covariate {name!r} ({known})"
            )
    names, weights = _from_rule(
        find_rule(features_doc.get("features") or {}, key, doc.get("feature"))
    )
    spec = ExperimentSpec(
        key=key,
        metrics=metrics,
        name=doc.get("name", key),
        feature=doc.get("feature"),
        variations=tuple(doc["variations"]) if "variations" in doc else names,
        weights=tuple(float(w) for w in doc["weights"]) if "weights" in doc else weights,
        control=int(doc.get("control", 0)),
        start=_instant(doc.get("start"), f"{path}.start"),
        end=_instant(doc.get("end"), f"{path}.end"),
        guardrail_margin=float(doc.get("guardrail_margin", 0.0)),
        segments=segments,
        alpha=float(doc.get("alpha", 0.05)),
        alternative=doc.get("alternative", "two-sided"),
        correction=doc.get("correction", "holm"),
        correction_family=doc.get("correction_family", "one"),
        sequential=bool(doc.get("sequential", False)),
        sequential_tuning=float(doc.get("sequential_tuning", 5000.0)),
        planned_per_variation=doc.get("planned_users_per_variation"),
        min_users=int(doc.get("min_users", 100)),
        factors=tuple((str(k), int(v)) for k, v in (doc.get("factors") or {}).items()),
        adjust_for=adjust_for,
    )
    _check_variations(spec, path)
    return spec
