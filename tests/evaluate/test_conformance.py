"""Every case of GrowthBook's cross-SDK suite (spec 0.8.0) through tailorkit's core.

Each case is its own test id (``section[index-name]``).  Only ``urlRedirect``
is skipped: it tests browser navigation (redirecting the page and merging
query strings), which a server-side evaluation core does not do.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from tailorkit.evaluate import (
    DecryptionError,
    choose_variation,
    decrypt,
    eval_condition,
    get_bucket_ranges,
    get_equal_weights,
    get_query_string_override,
    hash,
    in_namespace,
)
from tests.evaluate.conformance import (
    CASES_PATH,
    evaluator_for,
    load_cases,
    section,
    sticky_service,
)

SECTIONS = (
    "evalCondition", "hash", "getBucketRange", "feature", "run", "chooseVariation",
    "getQueryStringOverride", "inNamespace", "getEqualWeights", "decrypt", "stickyBucket",
    "urlRedirect", "contextualBandit",
)  # fmt: skip


def cases(name: str) -> list[Any]:
    """Parametrize one section, one id per case."""
    params = []
    for index, case in enumerate(section(name)):
        label = case[0] if isinstance(case[0], str) and case[0] else "case"
        params.append(pytest.param(case, id=f"{index}-{label}"[:80]))
    return params


def floor8(values: list[float]) -> list[float]:
    return [math.floor(v * 1e8) / 1e8 for v in values]


def test_suite_present() -> None:
    assert CASES_PATH.exists(), f"conformance suite missing: {CASES_PATH}"
    data = load_cases()
    assert data["specVersion"] == "0.8.0"
    assert set(SECTIONS) <= set(data)
    assert sum(len(data[name]) for name in SECTIONS) == 517


@pytest.mark.parametrize("case", cases("evalCondition"))
def test_eval_condition(case: list[Any]) -> None:
    _, condition, attributes, expected, *rest = case
    saved_groups = rest[0] if rest else None
    assert eval_condition(attributes, condition, saved_groups) is expected


@pytest.mark.parametrize("case", cases("hash"))
def test_hash(case: list[Any]) -> None:
    seed, value, version, expected = case
    assert hash(seed, value, version) == expected


@pytest.mark.parametrize("case", cases("getBucketRange"))
def test_get_bucket_range(case: list[Any]) -> None:
    _, (num_variations, coverage, weights), expected = case
    ranges = get_bucket_ranges(num_variations, coverage, weights)
    assert [floor8(list(r)) for r in ranges] == expected


@pytest.mark.parametrize("case", cases("chooseVariation"))
def test_choose_variation(case: list[Any]) -> None:
    _, n, ranges, expected = case
    assert choose_variation(n, ranges) == expected


@pytest.mark.parametrize("case", cases("getQueryStringOverride"))
def test_get_query_string_override(case: list[Any]) -> None:
    _, key, url, num_variations, expected = case
    assert get_query_string_override(key, url, num_variations) == expected


@pytest.mark.parametrize("case", cases("inNamespace"))
def test_in_namespace(case: list[Any]) -> None:
    _, user_id, namespace, expected = case
    assert in_namespace(user_id, namespace) is expected


@pytest.mark.parametrize("case", cases("getEqualWeights"))
def test_get_equal_weights(case: list[Any]) -> None:
    num_variations, expected = case
    assert floor8(get_equal_weights(num_variations)) == expected


@pytest.mark.parametrize("case", cases("decrypt"))
def test_decrypt(case: list[Any]) -> None:
    _, encrypted, key, expected = case
    if expected is None:
        with pytest.raises(DecryptionError):
            decrypt(encrypted, key)
    else:
        assert decrypt(encrypted, key) == expected


def _feature_case(case: list[Any]) -> None:
    _, context, key, expected = case
    ev = evaluator_for(context)
    ctx = ev.context(
        context.get("attributes") or {},
        url=context.get("url", ""),
        forced_variations=context.get("forcedVariations"),
    )
    assert ev.eval_feature(key, ctx).to_dict() == expected


@pytest.mark.parametrize("case", cases("feature"))
def test_feature(case: list[Any]) -> None:
    _feature_case(case)


@pytest.mark.parametrize("case", cases("contextualBandit"))
def test_contextual_bandit(case: list[Any]) -> None:
    _feature_case(case)


@pytest.mark.parametrize("case", cases("run"))
def test_run(case: list[Any]) -> None:
    _, context, experiment, value, in_experiment, hash_used = case
    ev = evaluator_for(context)
    ctx = ev.context(
        context.get("attributes") or {},
        url=context.get("url", ""),
        forced_variations=context.get("forcedVariations"),
    )
    result = ev.run(experiment, ctx)
    assert (result.value, result.in_experiment, result.hash_used) == (
        value,
        in_experiment,
        hash_used,
    )


@pytest.mark.parametrize("case", cases("stickyBucket"))
def test_sticky_bucket(case: list[Any]) -> None:
    _, context, initial_docs, key, expected_result, expected_docs = case
    service = sticky_service(initial_docs)
    ev = evaluator_for(context, sticky_bucket_service=service)
    ctx = ev.context(context.get("attributes") or {})
    experiment_result = ev.eval_feature(key, ctx).experiment_result
    assert (experiment_result.to_dict() if experiment_result else None) == expected_result
    assert ctx.sticky_assignment_docs() == expected_docs


@pytest.mark.parametrize("case", cases("urlRedirect"))
def test_url_redirect(case: list[Any]) -> None:
    pytest.skip("urlRedirect tests browser navigation (page redirects), not server evaluation")
