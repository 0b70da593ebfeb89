"""Differential test: tailorkit's core vs the official ``growthbook`` Python SDK.

Hypothesis generates conditions, attribute documents and feature definitions;
both implementations evaluate them and must agree, except on the inputs of a
named departure class (see ``tests/evaluate/departures.py`` for each class and
why the Python SDK differs from GrowthBook's suite there).  Excluded examples
are reported as hypothesis events (``pytest --hypothesis-show-statistics``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
from growthbook import Experiment, GrowthBook
from growthbook.core import evalCondition
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tailorkit.evaluate import Evaluator, eval_condition, hash
from tailorkit.evaluate.context import hash_attribute_value, hash_string
from tailorkit.evaluate.jsvalues import js_truthy
from tests.evaluate.departures import CLASSES, condition_classes

logging.getLogger("growthbook").setLevel(logging.CRITICAL)

# TAILORKIT_DIFFERENTIAL_SCALE=10 runs ten times as many examples (slow)
SCALE = int(os.environ.get("TAILORKIT_DIFFERENTIAL_SCALE", "1"))
SETTINGS = settings(
    max_examples=400 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ----------------------------------------------------------------- values

TEXT = st.text(alphabet="abAB01 .-", max_size=4)
VERSIONS = st.sampled_from(["1.2.3", "v1.10.0", "1.2.3-alpha", "2.0.0", "1-2-3", "0.9", "10"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 12),
    st.sampled_from([0.5, 1.5, -2.25, 1e21]),
    TEXT,
    VERSIONS,
    st.sampled_from(["10", "8", " 5 ", "0x10", "null", "true", "1e3"]),
)
TYPE_NAMES = st.sampled_from(
    ["string", "number", "boolean", "null", "array", "object", "undefined"]
)
PATTERNS = st.sampled_from(
    ["^a", "b$", "a.b", "[ab]+", "A|1", "^$", "-", "\\.", "a*", "^n", "[0-9]"]
)
PATHS = st.sampled_from(
    ["a", "b", "c", "tags", "items", "n.x", "n.y", "tags.0", "tags.length", "x.y"]
)
GROUPS = {"g1": [1, "a", None, True], "g2": ["b", 2.5]}


def attribute_documents() -> st.SearchStrategy[dict[str, Any]]:
    item = st.fixed_dictionaries({"k": SCALARS}, optional={"m": SCALARS})
    return st.fixed_dictionaries(
        {},
        optional={
            "a": SCALARS,
            "b": SCALARS,
            "c": SCALARS,
            "tags": st.lists(SCALARS, max_size=4),
            "items": st.lists(item, max_size=3),
            "n": st.fixed_dictionaries(
                {}, optional={"x": SCALARS, "y": st.lists(SCALARS, max_size=3)}
            ),
        },
    )


def operator_objects(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    scalar_list = st.lists(SCALARS, max_size=4)
    options = [
        st.tuples(st.sampled_from(["$eq", "$ne", "$lt", "$lte", "$gt", "$gte"]), SCALARS),
        st.tuples(st.sampled_from(["$in", "$nin", "$ini", "$nini", "$all", "$alli"]), scalar_list),
        st.tuples(st.sampled_from(["$veq", "$vne", "$vgt", "$vgte", "$vlt", "$vlte"]), VERSIONS),
        st.tuples(st.just("$size"), st.one_of(st.integers(0, 3), st.just({"$gt": 1}))),
        st.tuples(st.just("$exists"), st.booleans()),
        st.tuples(st.just("$type"), TYPE_NAMES),
        st.tuples(st.sampled_from(["$regex", "$regexi"]), PATTERNS),
        st.tuples(
            st.sampled_from(["$inGroup", "$notInGroup"]), st.sampled_from(["g1", "g2", "g3"])
        ),
        st.tuples(st.just("$regx"), SCALARS),
    ]
    if depth > 0:
        options.append(st.tuples(st.just("$not"), value_conditions(depth - 1)))
        options.append(
            st.tuples(
                st.just("$elemMatch"),
                st.one_of(operator_objects(depth - 1), conditions(depth - 1)),
            )
        )
    return st.lists(st.one_of(*options), min_size=1, max_size=2).map(dict)


def value_conditions(depth: int) -> st.SearchStrategy[Any]:
    common = st.one_of(
        SCALARS,
        operator_objects(depth),
        st.lists(SCALARS, max_size=2),
        st.fixed_dictionaries({"k": SCALARS}),
    )
    # Now and then an empty object (the empty-object-value class)
    return st.integers(0, 199).flatmap(lambda i: st.just({}) if i == 0 else common)


def conditions(depth: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.tuples(PATHS, value_conditions(depth))
    entries = [leaf]
    if depth > 0:
        sub = st.lists(conditions(depth - 1), max_size=3)
        entries.append(st.tuples(st.sampled_from(["$or", "$and", "$nor"]), sub))
        entries.append(st.tuples(st.just("$not"), conditions(depth - 1)))
    return st.lists(st.one_of(*entries), max_size=3).map(dict)


def excluded(condition: Any, attributes: Any) -> str | None:
    classes = sorted(set(condition_classes(condition, attributes)))
    return classes[0] if classes else None


@SETTINGS
@given(condition=conditions(), attributes=attribute_documents())
def test_conditions_agree(condition: dict[str, Any], attributes: dict[str, Any]) -> None:
    departure = excluded(condition, attributes)
    if departure is not None:
        event(f"excluded: {departure}")
        return
    event("compared")
    ours = eval_condition(attributes, condition, GROUPS)
    theirs = evalCondition(attributes, condition, GROUPS)
    assert ours == theirs, (condition, attributes)


# --------------------------------------------------------------- features

IDS = st.one_of(
    st.text(alphabet="abc0123456789-", min_size=1, max_size=8),
    st.integers(1, 10**6),
    st.just(""),
)
VALUES = st.sampled_from(["x", "y", "z", "w"])
PARENT_CONDITIONS = st.sampled_from(
    [
        {"value": "x"},
        {"value": {"$ne": "y"}},
        {"value": {"$exists": True}},
        {"value": {"$in": ["x", "z"]}},
    ]
)
COVERAGES = st.sampled_from([0, 0.3, 0.5, 0.50005, 0.99, 1])
WEIGHTS = {2: [[0.5, 0.5], [0.1, 0.9], [1, 0]], 3: [[0.34, 0.33, 0.33], [0.5, 0.25, 0.25]]}


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    if draw(st.booleans()):
        rule["id"] = draw(st.sampled_from(["r1", "r2"]))
    if draw(st.integers(0, 3)) == 0:
        rule["condition"] = draw(conditions(1))
    if draw(st.integers(0, 4)) == 0:
        rule["parentConditions"] = [
            {
                "id": draw(st.sampled_from(["f0", "f1", "f2", "nope"])),
                "condition": draw(PARENT_CONDITIONS),
                "gate": draw(st.booleans()),
            }
        ]
    for key, strategy in (
        ("hashVersion", st.sampled_from([1, 2])),
        ("seed", st.sampled_from(["s1", "seed-two"])),
        ("hashAttribute", st.sampled_from(["id", "uid"])),
    ):
        if draw(st.booleans()):
            rule[key] = draw(strategy)
    if draw(st.integers(0, 4)) == 0:
        rule["filters"] = [{"seed": "flt", "ranges": [[0, draw(st.sampled_from([0.3, 0.7]))]]}]
    if draw(st.booleans()):
        return _force_rule(draw, rule)
    return _experiment_rule(draw, rule)


def _force_rule(draw: st.DrawFn, rule: dict[str, Any]) -> dict[str, Any]:
    rule["force"] = draw(VALUES)
    choice = draw(st.integers(0, 2))
    if choice == 1:
        rule["coverage"] = draw(COVERAGES)
    elif choice == 2:
        rule["range"] = draw(st.sampled_from([[0, 0.5], [0.25, 0.75], [0.9, 1]]))
    return rule


def _experiment_rule(draw: st.DrawFn, rule: dict[str, Any]) -> dict[str, Any]:
    count = draw(st.sampled_from([1, 2, 3]))
    rule["variations"] = draw(st.lists(VALUES, min_size=count, max_size=count))
    if count > 1 and draw(st.booleans()):
        rule["weights"] = draw(st.sampled_from(WEIGHTS[count]))
    if draw(st.booleans()):
        rule["coverage"] = draw(COVERAGES)
    if draw(st.booleans()):
        rule["key"] = draw(st.sampled_from(["exp-a", "exp-b"]))
    if draw(st.integers(0, 3)) == 0:
        rule["namespace"] = ["ns", 0, draw(st.sampled_from([0.4, 1]))]
    if draw(st.booleans()):
        rule["meta"] = [{"key": f"v{i}"} for i in range(count)]
    return rule


FEATURES = st.dictionaries(
    st.sampled_from(["f0", "f1", "f2"]),
    st.fixed_dictionaries(
        {"rules": st.lists(rules(), max_size=3)}, optional={"defaultValue": VALUES}
    ),
    min_size=1,
    max_size=3,
)
USERS = st.fixed_dictionaries(
    {"id": IDS},
    optional={"uid": IDS, "a": SCALARS, "b": SCALARS, "tags": st.lists(SCALARS, max_size=3)},
)


def _rollout_boundary(key: str, rule: dict[str, Any], attributes: dict[str, Any]) -> bool:
    """The user's rollout hash equals the coverage exactly."""
    if "force" not in rule or "coverage" not in rule or rule.get("range"):
        return False
    _, value = hash_attribute_value(attributes, rule.get("hashAttribute"), None)
    if not js_truthy(value):
        return False
    n = hash(rule.get("seed") or key, hash_string(value), rule.get("hashVersion") or 1)
    return n == rule["coverage"]


def feature_departure(features: dict[str, Any], attributes: dict[str, Any]) -> str | None:
    for key, definition in features.items():
        for rule in definition["rules"]:
            departure = excluded(rule.get("condition") or {}, attributes)
            if departure is not None:
                return departure
            if _rollout_boundary(key, rule, attributes):
                return "rollout-boundary"
    return None


def summarize(result: Any) -> tuple[Any, ...]:
    exp = getattr(result, "experiment_result", None) or getattr(result, "experimentResult", None)
    rule_id = getattr(result, "rule_id", None) or getattr(result, "ruleId", None) or ""
    head = (result.value, result.source, rule_id)
    if exp is None:
        return head
    if hasattr(exp, "variation_id"):
        fields = (exp.variation_id, exp.in_experiment, exp.hash_used, exp.key, exp.bucket)
        return (*head, *fields, exp.hash_attribute, exp.hash_value)
    fields = (exp.variationId, exp.inExperiment, exp.hashUsed, exp.key, exp.bucket)
    return (*head, *fields, exp.hashAttribute, exp.hashValue)


@settings(SETTINGS, max_examples=300 * SCALE)
@given(features=FEATURES, attributes=USERS)
def test_features_agree(features: dict[str, Any], attributes: dict[str, Any]) -> None:
    departure = feature_departure(features, attributes)
    if departure is not None:
        event(f"excluded: {departure}")
        return
    event("compared")
    ev = Evaluator(features, saved_groups=GROUPS)
    ctx = ev.context(attributes)
    gb = GrowthBook(attributes=attributes, features=features, saved_groups=GROUPS)
    for key in [*features, "unknown"]:
        ours, theirs = summarize(ev.eval_feature(key, ctx)), summarize(gb.eval_feature(key))
        assert ours == theirs, (key, features, attributes)


@settings(SETTINGS, max_examples=150 * SCALE)
@given(
    attributes=USERS,
    count=st.sampled_from([2, 3]),
    coverage=COVERAGES,
    version=st.sampled_from([1, 2]),
)
def test_inline_experiments_agree(
    attributes: dict[str, Any], count: int, coverage: float, version: int
) -> None:
    experiment = {
        "key": "inline",
        "variations": list(range(count)),
        "coverage": coverage,
        "hashVersion": version,
    }
    ev = Evaluator()
    ours = ev.run(experiment, ev.context(attributes))
    theirs = GrowthBook(attributes=attributes).run(Experiment(**experiment))  # type: ignore[arg-type]
    assert (ours.value, ours.in_experiment, ours.hash_used, ours.bucket) == (
        theirs.value,
        theirs.inExperiment,
        theirs.hashUsed,
        theirs.bucket,
    )


# ------------------------------------------------------ contextual bandits

LEAF_CONDITIONS = st.sampled_from(
    [{}, {"plan": "pro"}, {"plan": {"$in": ["pro", "free"]}}, {"cart": {"$gte": 100}}]
)


@st.composite
def bandit_cases(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    count = draw(st.sampled_from([2, 3]))
    rule: dict[str, Any] = {
        "key": "cb-exp",
        "contextualVariations": draw(st.lists(VALUES, min_size=count, max_size=count)),
        "weights": draw(st.sampled_from(WEIGHTS[count])),
        "hashVersion": draw(st.sampled_from([1, 2])),
        "meta": [{"key": str(i)} for i in range(count)],
        "contextualBanditRef": draw(st.sampled_from(["cb", "cb", "dangling"])),
    }
    if draw(st.booleans()):
        rule["coverage"] = draw(COVERAGES)
    if draw(st.integers(0, 3)) == 0:
        rule["condition"] = {"plan": {"$ne": "banned"}}
    leaves = [
        {
            "leafId": leaf_id,
            "condition": draw(LEAF_CONDITIONS),
            "weights": draw(st.sampled_from(WEIGHTS[count])),
        }
        for leaf_id in range(draw(st.integers(0, 3)))
    ]
    definition: dict[str, Any] = {"contexts": leaves}
    if draw(st.booleans()):
        definition["banditVersion"] = draw(st.integers(1, 9))
    features = {"cbf": {"defaultValue": "d", "rules": [rule]}}
    return features, {"cb": definition}


def bandit_summary(result: Any) -> tuple[Any, ...]:
    exp = getattr(result, "experiment_result", None) or getattr(result, "experimentResult", None)
    if exp is None:
        return (result.value, result.source)
    if hasattr(exp, "leaf_id"):
        meta = (exp.leaf_id, exp.variation_weights, exp.bandit_version)
        return (result.value, result.source, exp.variation_id, exp.hash_used, *meta)
    meta = (exp.leafId, exp.variationWeights, exp.banditVersion)
    return (result.value, result.source, exp.variationId, exp.hashUsed, *meta)


@settings(SETTINGS, max_examples=200 * SCALE)
@given(
    case=bandit_cases(),
    attributes=st.fixed_dictionaries(
        {"id": IDS},
        optional={"plan": st.sampled_from(["pro", "free", "banned"]), "cart": st.integers(0, 300)},
    ),
)
def test_contextual_bandits_agree(
    case: tuple[dict[str, Any], dict[str, Any]], attributes: dict[str, Any]
) -> None:
    features, bandits = case
    leaves = bandits["cb"]["contexts"]
    departures = [excluded(leaf["condition"], attributes) for leaf in leaves]
    if any(departures):
        event(f"excluded: {next(d for d in departures if d)}")
        return
    event("compared")
    ours = Evaluator(features, contextual_bandits=bandits).evaluate("cbf", attributes)
    gb = GrowthBook(attributes=attributes, features=features, contextual_bandits=bandits)
    theirs = gb.eval_feature("cbf")
    assert bandit_summary(ours) == bandit_summary(theirs), (features, bandits, attributes)
    if ours.experiment is not None and theirs.experiment is not None:
        assert ours.to_dict()["experiment"].get("weights") == theirs.experiment.weights


# ------------------------------------------------------ sticky bucketing


@st.composite
def sticky_cases(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Two successive versions of an experiment rule, and stored documents."""
    meta = [{"key": f"v{i}"} for i in range(3)]
    versions = []
    for _ in range(2):
        rule: dict[str, Any] = {
            "key": "sticky-exp",
            "variations": ["a", "b", "c"],
            "meta": meta,
            "hashVersion": 2,
            "weights": draw(st.sampled_from(WEIGHTS[3] + [[1, 0, 0], [0, 0, 1]])),
            "bucketVersion": draw(st.integers(0, 2)),
            "minBucketVersion": draw(st.integers(0, 2)),
        }
        if draw(st.booleans()):
            rule["fallbackAttribute"] = "anon"
        if draw(st.integers(0, 4)) == 0:
            rule["disableStickyBucketing"] = True
        versions.append(rule)
    docs = [
        {
            "attributeName": draw(st.sampled_from(["id", "anon"])),
            "attributeValue": draw(st.sampled_from(["u1", "a1", "u2"])),
            "assignments": {
                f"sticky-exp__{draw(st.integers(0, 2))}": draw(st.sampled_from(["v0", "v1", "v9"]))
            },
        }
        for _ in range(draw(st.integers(0, 2)))
    ]
    return versions, docs


@settings(SETTINGS, max_examples=200 * SCALE)
@given(
    case=sticky_cases(),
    attributes=st.fixed_dictionaries(
        {}, optional={"id": st.sampled_from(["u1", "u2", ""]), "anon": st.sampled_from(["a1"])}
    ),
)
def test_sticky_bucketing_agrees(
    case: tuple[list[dict[str, Any]], list[dict[str, Any]]], attributes: dict[str, Any]
) -> None:
    from growthbook import InMemoryStickyBucketService as TheirService

    from tailorkit.evaluate import InMemoryStickyBucketService as OurService

    versions, docs = case
    ours_service, theirs_service = OurService(), TheirService()
    for doc in docs:
        ours_service.save_assignments(dict(doc))  # type: ignore[arg-type]
        theirs_service.save_assignments(json_copy(doc))
    for rule in versions:
        features = {"f": {"defaultValue": "d", "rules": [rule]}}
        merge = sticky_fallback_merge(rule, attributes, ours_service.docs)
        ours = Evaluator(features, sticky_bucket_service=ours_service).evaluate("f", attributes)
        gb = GrowthBook(
            attributes=attributes, features=features, sticky_bucket_service=theirs_service
        )
        theirs = gb.eval_feature("f")
        assert summarize(ours) == summarize(theirs), (rule, docs, attributes)
        if merge:
            event("excluded from document comparison: sticky-fallback-merge")
            return
        assert ours_service.docs == theirs_service.docs


def sticky_fallback_merge(
    rule: dict[str, Any], attributes: dict[str, Any], docs: dict[str, Any]
) -> bool:
    """The ``sticky-fallback-merge`` class (documents only, results agree).

    With documents for both the hash attribute and the fallback attribute,
    the Python SDK merges the fallback's assignments into the hash
    attribute's stored document in place, and persists them with the next
    write; JavaScript merges into a fresh object and stores only the new
    assignment.
    """
    if not rule.get("fallbackAttribute") or rule.get("disableStickyBucketing"):
        return False
    primary = docs.get(f"id||{attributes.get('id')}")
    fallback = docs.get(f"anon||{attributes.get('anon')}")
    if not (attributes.get("id") and primary and fallback):
        return False
    return bool(set(fallback["assignments"]) - set(primary["assignments"]))


def json_copy(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


# ------------------------------------------------- the classes are real

EXAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any], bool]] = {
    # class: (condition, attributes, the suite's / JavaScript's answer)
    "relational-coercion": ({"n": {"$gt": 5, "$lt": 10}}, {"n": "8"}, True),
    "loose-equality": ({"n": 10}, {"n": "10"}, True),
    "empty-object-value": ({"n": {}}, {"n": 1}, False),
    "regex-non-string": ({"n": {"$regex": "^nu"}}, {}, True),
    "elem-match-falsy": ({"t": {"$elemMatch": {"$lt": 1}}}, {"t": [0]}, False),
    "elem-match-logical": ({"t": {"$elemMatch": {"$or": [{"k": 1}]}}}, {"t": [{"k": 1}]}, False),
    "version-coercion": ({"v": {"$vlt": "1.0.0"}}, {}, True),
    "negated-unknown-operator": ({"$not": {"n": {"$regx": 1}}}, {"n": 1}, True),
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_excluded_classes_are_real_departures(name: str) -> None:
    condition, attributes, expected = EXAMPLES[name]
    assert name in set(condition_classes(condition, attributes))
    assert eval_condition(attributes, condition) is expected
    assert evalCondition(attributes, condition) is not expected


def test_rollout_boundary_is_a_real_departure() -> None:
    # A coverage equal to the user's hash: JavaScript includes the user
    n = hash("f", "user-1", 1)
    features = {"f": {"defaultValue": "off", "rules": [{"force": "on", "coverage": n}]}}
    attributes = {"id": "user-1"}
    assert feature_departure(features, attributes) == "rollout-boundary"
    assert Evaluator(features).evaluate("f", attributes).value == "on"
    assert GrowthBook(attributes=attributes, features=features).eval_feature("f").value == "off"


def test_every_class_is_documented() -> None:
    assert set(EXAMPLES) | {"rollout-boundary", "sticky-fallback-merge"} == set(CLASSES)


def test_sticky_fallback_merge_is_a_real_departure() -> None:
    from growthbook import InMemoryStickyBucketService as TheirService

    from tailorkit.evaluate import InMemoryStickyBucketService as OurService

    rule = {
        "key": "sticky-exp",
        "variations": ["a", "b", "c"],
        "meta": [{"key": f"v{i}"} for i in range(3)],
        "hashVersion": 2,
        "fallbackAttribute": "anon",
    }
    features = {"f": {"defaultValue": "d", "rules": [rule]}}
    attributes = {"id": "u1", "anon": "a1"}
    docs = [
        {"attributeName": "anon", "attributeValue": "a1", "assignments": {"sticky-exp__1": "v0"}},
        {"attributeName": "id", "attributeValue": "u1", "assignments": {"other__0": "v1"}},
    ]
    ours_service, theirs_service = OurService(), TheirService()
    for doc in docs:
        ours_service.save_assignments(json_copy(doc))
        theirs_service.save_assignments(json_copy(doc))
    assert sticky_fallback_merge(rule, attributes, ours_service.docs)
    Evaluator(features, sticky_bucket_service=ours_service).evaluate("f", attributes)
    GrowthBook(
        attributes=attributes, features=features, sticky_bucket_service=theirs_service
    ).eval_feature("f")
    assert "sticky-exp__1" not in ours_service.docs["id||u1"]["assignments"]
    assert "sticky-exp__1" in theirs_service.docs["id||u1"]["assignments"]
