"""Unit tests of the evaluation core beyond the cross-SDK suite."""

from __future__ import annotations

import doctest
import importlib
import time
from typing import Any

import pytest

from tailorkit.evaluate import (
    DecryptionError,
    Evaluator,
    ExposureRecord,
    InMemoryStickyBucketService,
    compile_condition,
    decrypt,
    encrypt,
    encrypt_payload,
    eval_condition,
    get_bucket_ranges,
    hash,
)
from tailorkit.evaluate.hashing import SeedHasher, fnv1a32
from tailorkit.evaluate.jsvalues import js_less_than, js_number_to_string, js_to_number
from tailorkit.evaluate.safe_regex import (
    MAX_SUBJECT_LENGTH,
    compile_js_regex,
)

MODULES = [
    "tailorkit.evaluate",
    "tailorkit.evaluate.bandits",
    "tailorkit.evaluate.conditions",
    "tailorkit.evaluate.context",
    "tailorkit.evaluate.encryption",
    "tailorkit.evaluate.experiments",
    "tailorkit.evaluate.features",
    "tailorkit.evaluate.hashing",
    "tailorkit.evaluate.jsvalues",
    "tailorkit.evaluate.results",
    "tailorkit.evaluate.safe_regex",
    "tailorkit.evaluate.sticky",
    "tailorkit.evaluate.urls",
]
KEY = "Zvwv/+uhpFDznZ6SX28Yjg=="


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module: str) -> None:
    failures, _ = doctest.testmod(importlib.import_module(module))
    assert failures == 0


# ------------------------------------------------------------- exposures


def experiment_features(**rule: Any) -> dict[str, Any]:
    base = {"key": "hero", "variations": ["a", "b", "c"], "hashVersion": 2}
    return {"hero": {"defaultValue": "a", "rules": [{**base, **rule}]}}


def test_exposure_records_assignment_and_propensity() -> None:
    records: list[ExposureRecord] = []
    ev = Evaluator(
        experiment_features(weights=[0.5, 0.25, 0.25], coverage=0.8, meta=[{"key": "x"}] * 3),
        on_exposure=records.append,
    )
    assigned = 0
    for i in range(300):
        result = ev.eval_feature("hero", ev.context({"id": f"u{i}"}))
        if result.source != "experiment":
            continue
        assigned += 1
        record = records[-1]
        assert record.experiment_key == "hero"
        assert record.feature_key == "hero"
        assert record.hash_attribute == "id" and record.hash_value == f"u{i}"
        exp = result.experiment_result
        assert exp is not None
        assert record.variation_id == exp.variation_id
        assert record.variation_key == "x"
        weight = [0.5, 0.25, 0.25][record.variation_id]
        assert record.propensity == pytest.approx(0.8 * weight)
        assert record.enrollment_probability == pytest.approx(0.8)
        assert record.bucket == exp.bucket
    assert assigned == len(records) > 150


def test_exposure_only_for_hashed_assignments_and_once_per_context() -> None:
    records: list[ExposureRecord] = []
    ev = Evaluator(experiment_features(), on_exposure=records.append)
    ctx = ev.context({"id": "u1"})
    ev.eval_feature("hero", ctx)
    ev.eval_feature("hero", ctx)
    assert len(records) == 1
    forced = ev.context({"id": "u1"}, forced_variations={"hero": 2})
    assert ev.eval_feature("hero", forced).value == "c"
    assert ev.context({"id": "u1"}, qa_mode=True) and len(records) == 1
    assert ev.eval_feature("hero", ev.context({"id": "u1"}, qa_mode=True)).source == "defaultValue"
    assert len(records) == 1


def test_failing_exposure_callback_does_not_break_evaluation() -> None:
    def broken(record: ExposureRecord) -> None:
        raise RuntimeError("event store down")

    ev = Evaluator(experiment_features(), on_exposure=broken)
    assert ev.evaluate("hero", {"id": "u1"}).source == "experiment"


def test_exposure_propensity_of_explicit_ranges_and_per_context_callback() -> None:
    seen: list[ExposureRecord] = []
    ev = Evaluator(experiment_features(ranges=[[0, 0.1], [0.1, 0.2], [0.5, 1]]))
    for i in range(50):
        ev.eval_feature("hero", ev.context({"id": f"u{i}"}, on_exposure=seen.append))
    assert seen
    lengths = {0: 0.1, 1: 0.1, 2: 0.5}
    for record in seen:
        assert record.propensity == pytest.approx(lengths[record.variation_id])
        assert record.enrollment_probability == pytest.approx(0.7)


def test_bandit_exposure_uses_leaf_weights() -> None:
    records: list[ExposureRecord] = []
    features = {
        "offer": {
            "defaultValue": "none",
            "rules": [
                {
                    "key": "offer-cb",
                    "contextualVariations": ["a", "b"],
                    "weights": [0.5, 0.5],
                    "hashVersion": 2,
                    "contextualBanditRef": "cb",
                }
            ],
        }
    }
    bandits = {
        "cb": {
            "banditVersion": 3,
            "contexts": [{"leafId": 9, "condition": {}, "weights": [0.2, 0.8]}],
        }
    }
    ev = Evaluator(features, contextual_bandits=bandits, on_exposure=records.append)
    for i in range(40):
        ev.eval_feature("offer", ev.context({"id": f"u{i}"}))
    assert len(records) == 40
    for record in records:
        assert record.leaf_id == 9 and record.bandit_version == 3
        assert record.propensity == pytest.approx([0.2, 0.8][record.variation_id])


# ----------------------------------------------------------------- sticky


def test_sticky_bucket_keeps_assignment_when_weights_change() -> None:
    # Sticky buckets store variation keys, so (as in GrowthBook) they need meta
    meta = [{"key": "0"}, {"key": "1"}, {"key": "2"}]
    service = InMemoryStickyBucketService()
    first = Evaluator(
        experiment_features(weights=[1, 0, 0], meta=meta), sticky_bucket_service=service
    )
    assert first.evaluate("hero", {"id": "u1"}).value == "a"
    assert service.docs["id||u1"]["assignments"] == {"hero__0": "0"}
    second = Evaluator(
        experiment_features(weights=[0, 0, 1], meta=meta), sticky_bucket_service=service
    )
    result = second.evaluate("hero", {"id": "u1"})
    assert result.value == "a"
    assert result.experiment_result is not None and result.experiment_result.sticky_bucket_used
    bumped = Evaluator(
        experiment_features(weights=[0, 0, 1], meta=meta, bucketVersion=1, minBucketVersion=1),
        sticky_bucket_service=service,
    )
    assert bumped.evaluate("hero", {"id": "u1"}).source == "defaultValue"  # blocked
    assert bumped.evaluate("hero", {"id": "u2"}).value == "c"


# -------------------------------------------------------------- payloads


def test_encrypted_payload_round_trip() -> None:
    payload = {
        "features": {
            "f": {
                "defaultValue": 1,
                "rules": [{"condition": {"id": {"$inGroup": "g"}}, "force": 2}],
            }
        },
        "savedGroups": {"g": ["vip"]},
    }
    sealed = encrypt_payload(payload, KEY)
    assert sealed["features"] == {} and "encryptedSavedGroups" in sealed
    ev = Evaluator.from_payload(sealed, decryption_key=KEY)
    assert ev.evaluate("f", {"id": "vip"}).value == 2
    assert ev.evaluate("f", {"id": "other"}).value == 1


def test_decrypt_rejects_wrong_key() -> None:
    sealed = encrypt("secret text", KEY)
    assert decrypt(sealed, KEY) == "secret text"
    with pytest.raises(DecryptionError):
        decrypt(sealed, "AAAAAAAAAAAAAAAAAAAAAA==")
    with pytest.raises(DecryptionError):
        decrypt("not-base64!.x", KEY)


def test_forced_features_and_disabled_context() -> None:
    ev = Evaluator(experiment_features())
    assert ev.eval_feature(
        "hero", ev.context({"id": "u"}, forced_features={"hero": "z"})
    ).source == ("override")
    assert ev.eval_feature("hero", ev.context({"id": "u"}, enabled=False)).source == "defaultValue"
    assert ev.evaluate("missing").source == "unknownFeature"


def test_malformed_rule_is_skipped_not_fatal() -> None:
    ev = Evaluator(
        {
            "f": {
                "defaultValue": 0,
                "rules": [{"variations": [1, 2], "ranges": [["x"]]}, {"force": 3}],
            }
        }
    )
    assert ev.evaluate("f", {"id": "u"}).value == 3


# ---------------------------------------------------------------- regexes


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|a)*b", "(\\w+\\s?)*$", "(a*)*", "((ab)*)+c"])
def test_exponential_patterns_never_match(pattern: str) -> None:
    assert compile_js_regex(pattern) is None
    assert eval_condition({"s": "a" * 40 + "!"}, {"s": {"$regex": pattern}}) is False


def test_repeated_literal_alternation_is_allowed() -> None:
    condition = {"ua": {"$regex": "(Mobile|Tablet)+ Safari"}}
    assert eval_condition({"ua": "iPad Tablet Safari"}, condition) is True
    assert compile_js_regex("(ab|ac)+") is None  # overlapping branches


def test_polynomial_patterns_are_time_bounded() -> None:
    subject = "a" * MAX_SUBJECT_LENGTH
    started = time.perf_counter()
    for pattern in ("a*a*a*a*b", "\\d+\\d+\\d+x", "x.*y.*z.*w"):
        assert eval_condition({"s": subject}, {"s": {"$regex": pattern}}) is False
    assert time.perf_counter() - started < 5


def test_js_regex_dialect() -> None:
    cases = [
        ("^a.c$", "a\nc", False),  # "." excludes line terminators
        ("abc$", "abc\n", False),  # "$" is the very end
        ("\\d", "\u0663", False),  # \d is ASCII-only
        ("^\\q$", "q", True),  # an identity escape
        ("(?<year>[0-9]{4})-\\k<year>", "2024-2024", True),
        ("[^]", "\n", True),
    ]
    for pattern, subject, expected in cases:
        assert eval_condition({"s": subject}, {"s": {"$regex": pattern}}) is expected, pattern


# --------------------------------------------------------- JS semantics


def test_javascript_coercions() -> None:
    assert js_number_to_string(1e21) == "1e+21" and js_number_to_string(0.000001) == "0.000001"
    assert js_to_number("0b101") == 5 and js_to_number("1_000") != js_to_number("1_000")
    assert js_less_than([2], 10) is True and js_less_than("a", "B") is False
    cond = compile_condition({"n": {"$gte": "10"}, "flag": True, "s": 5})
    assert cond({"n": 10, "flag": "yes", "s": "5"}) is True
    assert cond({"n": "9", "flag": "yes", "s": "5"}) is True  # two strings compare as text
    assert cond({"n": 9, "flag": "yes", "s": "5"}) is False


def test_seed_hasher_matches_reference_hash() -> None:
    for seed in ("", "exp", "ßeed", "中文"):
        for version in (1, 2):
            hasher = SeedHasher(seed, version)
            cache: dict[str, int] = {}
            for value in ("1", "user-42", "x" * 50, "ü"):
                assert hasher.hash(value, cache) == hash(seed, value, version)
    assert fnv1a32("\U0001f600") == fnv1a32(
        "\ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16")
    )


def test_bucket_ranges_fall_back_to_equal_weights() -> None:
    assert get_bucket_ranges(3, 1, [0.5, 0.6, 0.1]) == get_bucket_ranges(3, 1, None)
