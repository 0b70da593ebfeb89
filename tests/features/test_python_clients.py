"""Real Python clients against a running ``tailorkit serve``.

* The official ``growthbook`` SDK loads the payload from ``/api/features/<key>``
  and evaluates 10,000 users × the catalog's 22 features: every value,
  source and variation equals tailorkit's in-process engine.
* The server's OFREP answers agree for a sample of users.
* The official OpenFeature Python SDK with tailorkit's provider agrees too.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from growthbook import GrowthBook
from growthbook.growthbook import feature_repo
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ProviderFatalError

from tailorkit.client.openfeature import TailorkitProvider
from tailorkit.decide.features import sdk_payload
from tailorkit.evaluate import Evaluator, FeatureResult
from tests.conftest import LiveServer
from tests.features.catalog import DOCUMENT, FEATURES, users

N_USERS = 10_000
N_OFREP = 300


def engine() -> Evaluator:
    """tailorkit's in-process engine over the same definitions."""
    return Evaluator.from_payload(sdk_payload(DOCUMENT))


def tailorkit_outcome(result: FeatureResult) -> tuple[Any, ...]:
    exp = result.experiment_result
    return (
        result.value,
        result.source,
        None if exp is None else exp.variation_id,
        None if exp is None else exp.in_experiment,
    )


def growthbook_outcome(result: Any) -> tuple[Any, ...]:
    exp = result.experimentResult
    return (
        result.value,
        result.source,
        None if exp is None else exp.variationId,
        None if exp is None else exp.inExperiment,
    )


def test_growthbook_python_sdk_matches_the_engine(features_server: LiveServer) -> None:
    client_key = features_server.project.settings.sdk_keys[0]
    loader = GrowthBook(api_host=features_server.url, client_key=client_key)
    loader.load_features()  # the SDK's own fetch of /api/features/<client_key>
    assert sorted(loader.get_features()) == sorted(FEATURES)
    # Evaluate on an instance fed the SDK's cached response (no client key: the
    # bound instance re-checks its cache on every evaluation, 4× slower)
    gb = GrowthBook()
    gb.set_payload(feature_repo.load_features(features_server.url, client_key))
    ours = engine()
    mismatches: list[tuple[str, str, Any, Any]] = []
    experiments = 0
    for user in users(N_USERS):
        gb.set_attributes(user)
        ctx = ours.context(user)
        for key in FEATURES:
            expected = tailorkit_outcome(ours.eval_feature(key, ctx))
            got = growthbook_outcome(gb.eval_feature(key))
            experiments += expected[1] == "experiment"
            if got != expected:
                mismatches.append((user["id"], key, expected, got))
    assert mismatches == [], f"{len(mismatches)} differ, e.g. {mismatches[:3]}"
    assert experiments > N_USERS  # the catalog's experiments did assign users


def test_bound_sdk_instance_evaluates_like_the_fed_one(features_server: LiveServer) -> None:
    client_key = features_server.project.settings.sdk_keys[0]
    bound = GrowthBook(api_host=features_server.url, client_key=client_key)
    bound.load_features()
    ours = engine()
    for user in users(100, seed=99):
        bound.set_attributes(user)
        ctx = ours.context(user)
        for key in FEATURES:
            expected = tailorkit_outcome(ours.eval_feature(key, ctx))
            assert growthbook_outcome(bound.eval_feature(key)) == expected, (user["id"], key)


def test_ofrep_answers_match_the_engine(features_server: LiveServer) -> None:
    ours = engine()
    with features_server.client(headers=features_server.ingest_headers) as http:
        for user in users(N_OFREP, seed=3):
            context = {k: v for k, v in user.items() if k != "id"} | {"targetingKey": user["id"]}
            answer = http.post("/ofrep/v1/evaluate/flags", json={"context": context})
            assert answer.status_code == 200, answer.text
            flags = {flag["key"]: flag for flag in answer.json()["flags"]}
            assert sorted(flags) == sorted(FEATURES)
            ctx = ours.context(user)
            for key in FEATURES:
                expected = ours.eval_feature(key, ctx)
                _check_ofrep_flag(flags[key], expected)


def _check_ofrep_flag(flag: dict[str, Any], expected: FeatureResult) -> None:
    assert flag.get("value") == expected.value, (flag, expected)
    assert flag["metadata"]["source"] == expected.source
    exp = expected.experiment_result
    if expected.source == "experiment":
        assert exp is not None
        assert flag["reason"] == "SPLIT"
        assert flag["variant"] == exp.key
        assert flag["metadata"]["variationId"] == exp.variation_id


def test_single_flag_ofrep_and_errors(features_server: LiveServer) -> None:
    with features_server.client(headers=features_server.ingest_headers) as http:
        ok = http.post(
            "/ofrep/v1/evaluate/flags/dark-mode",
            json={"context": {"targetingKey": "u1", "country": "AT"}},
        )
        assert ok.json() | {"metadata": None} == {
            "key": "dark-mode", "reason": "TARGETING_MATCH", "variant": "dach",
            "metadata": None, "value": True,
        }  # fmt: skip
        missing = http.post("/ofrep/v1/evaluate/flags/nope", json={"context": {}})
        assert missing.status_code == 404
        assert missing.json()["errorCode"] == "FLAG_NOT_FOUND"
        bad = http.post("/ofrep/v1/evaluate/flags/dark-mode", json={"context": {"targetingKey": 5}})
        assert (bad.status_code, bad.json()["errorCode"]) == (400, "INVALID_CONTEXT")
        bulk_bad = http.post("/ofrep/v1/evaluate/flags", content=b"[1]")
        assert bulk_bad.json() == {
            "errorCode": "INVALID_CONTEXT",
            "errorDetails": "body must be a JSON object",
        }
    assert httpx.post(f"{features_server.url}/ofrep/v1/evaluate/flags", json={}).status_code == 401


def test_openfeature_python_sdk_through_the_provider(features_server: LiveServer) -> None:
    ingest_key = features_server.project.settings.ingest_keys[0]
    provider = TailorkitProvider(features_server.url, ingest_key)
    api.set_provider_and_wait(provider, domain="tailorkit-test")
    client = api.get_client(domain="tailorkit-test")
    ours = engine()
    try:
        for user in users(40, seed=11):
            context = EvaluationContext(user["id"], {k: v for k, v in user.items() if k != "id"})
            ctx = ours.context(user)
            for key, definition in FEATURES.items():
                expected = ours.eval_feature(key, ctx)
                code_default = definition["defaultValue"]
                details = _get_details(client, key, code_default, context)
                assert details.error_code is None, (key, details)
                # A null value (a gate closed by a prerequisite) answers the code default
                wanted = code_default if expected.value is None else expected.value
                assert details.value == wanted, (user["id"], key)
                if expected.source == "experiment":
                    assert details.reason == "SPLIT"
                    assert expected.experiment_result is not None
                    assert details.variant == expected.experiment_result.key
        typed = client.get_string_details("dark-mode", "x", EvaluationContext("u1"))
        assert (typed.value, typed.error_code) == ("x", "TYPE_MISMATCH")
        unknown = client.get_boolean_details("nope", True, EvaluationContext("u1"))
        assert (unknown.value, unknown.error_code) == (True, "FLAG_NOT_FOUND")
    finally:
        api.clear_providers()


def _get_details(client: Any, key: str, default: Any, context: EvaluationContext) -> Any:
    """The typed OpenFeature getter that fits the flag's default value."""
    if isinstance(default, bool):
        return client.get_boolean_details(key, default, context)
    if isinstance(default, int):
        return client.get_integer_details(key, default, context)
    if isinstance(default, float):
        return client.get_float_details(key, default, context)
    if isinstance(default, str):
        return client.get_string_details(key, default, context)
    return client.get_object_details(key, default, context)


def test_refused_key_is_fatal_for_the_provider(features_server: LiveServer) -> None:
    provider = TailorkitProvider(features_server.url, "tk_ingest_not_a_key_0000")
    with pytest.raises(ProviderFatalError, match="HTTP 401"):
        api.set_provider_and_wait(provider, domain="tailorkit-bad-key")
    try:
        client = api.get_client(domain="tailorkit-bad-key")
        details = client.get_boolean_details("dark-mode", True, EvaluationContext("u1"))
        assert (details.value, details.error_code) == (True, "PROVIDER_FATAL")
    finally:
        api.clear_providers()
