"""Per-event validation, consent, skew correction and PII pseudonymization."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from tailorkit.collect.jsonlines import raw_from_items
from tailorkit.collect.raw import PayloadError, parse_body
from tailorkit.collect.validate import Validator
from tailorkit.project.loader import Limits, PiiSettings
from tests.helpers import event

KEY = "test-pii-key-0123456789"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def validator() -> Validator:
    return Validator(PiiSettings(hmac_key=KEY))


def run(validator: Validator, items: list, limits: Limits | None = None):
    return validator.validate(raw_from_items(items, limits or Limits()), NOW, "test")


BAD = [
    (event(event_id=None), "event_id: required"),
    (event(event_id=""), "event_id: required"),
    (event(event_id=7), "event_id: must be a string"),
    (event(type=None), "type: required"),
    (event(type="1abc"), "type: must start with a letter"),
    (event(user_id=None), "user_id/anonymous_id: at least one is required"),
    (event(timestamp=None), "timestamp: required"),
    (event(timestamp="2026-11-20 10:00:00"), "timestamp: must be ISO-8601 with a UTC offset"),
    (event(timestamp="yesterday"), "timestamp: must be ISO-8601"),
    (event(timestamp="2026-13-45T10:00:00Z"), "timestamp: must be ISO-8601"),
    (event(sent_at="later"), "sent_at: must be ISO-8601"),
    (event(properties=[1, 2]), "properties: must be an object"),
    (event(context="x"), "context: must be an object"),
    ("not an object", "event: must be a JSON object"),
]


@pytest.mark.parametrize(("item", "reason"), BAD, ids=[r for _, r in BAD])
def test_bad_event_is_rejected_with_index_and_reason_and_good_ones_kept(
    validator: Validator, item: object, reason: str
) -> None:
    good = [event(), event()]
    result = run(validator, [good[0], item, good[1]])
    assert len(result.rejected) == 1
    index, got = result.rejected[0]
    assert index == 1
    assert got.startswith(reason)
    assert result.accepted_index == [0, 2]
    assert result.accepted.column("event_id").to_pylist() == [g["event_id"] for g in good]


def test_depth_and_size_limits_reject_only_the_offending_event(validator: Validator) -> None:
    deep: dict = {"x": 1}
    for _ in range(10):
        deep = {"d": deep}
    limits = Limits(max_depth=8, max_event_bytes=2000)
    result = run(
        validator, [event(properties=deep), event(properties={"s": "x" * 5000}), event()], limits
    )
    reasons = dict(result.rejected)
    assert reasons[0] == "properties: nested deeper than 8 levels"
    assert reasons[1].startswith("event: ") and "over the limit of 2000" in reasons[1]
    assert result.accepted_index == [2]


def test_batch_and_body_limits_raise_413() -> None:
    with pytest.raises(PayloadError) as too_many:
        parse_body(
            json.dumps([event()] * 11).encode(), "application/json", Limits(max_batch_events=10)
        )
    assert too_many.value.status == 413
    with pytest.raises(PayloadError) as too_big:
        parse_body(b"[" + b" " * 5000 + b"]", "application/json", Limits(max_request_bytes=1024))
    assert too_big.value.status == 413
    with pytest.raises(PayloadError) as not_json:
        parse_body(b"[{", "application/json", Limits())
    assert not_json.value.status == 422


def test_ndjson_bad_line_keeps_its_index(validator: Validator) -> None:
    body = b"\n".join([json.dumps(event()).encode(), b"{oops", json.dumps(event()).encode()])
    items = parse_body(body, "application/x-ndjson", Limits())
    result = run(validator, items)
    assert result.rejected[0][0] == 1
    assert result.rejected[0][1].startswith("line 2: not valid JSON")
    assert result.accepted_index == [0, 2]


def test_in_batch_duplicates_keep_the_first(validator: Validator) -> None:
    first = event()
    result = run(validator, [first, {**first, "type": "other"}, event()])
    assert result.duplicate_index == [1]
    assert result.accepted.column("type").to_pylist()[0] == "page_view"


def test_consent(validator: Validator) -> None:
    no_analytics = event(consent={"analytics": False, "personalization": True})
    no_personal = event(consent={"analytics": True, "personalization": False})
    result = run(validator, [no_analytics, no_personal, event()])
    assert result.consent_dropped == [0]
    assert result.accepted_index == [1, 2]
    assert result.accepted.column("personalization").to_pylist() == [False, True]


def test_clock_skew_corrected_from_sent_at(validator: Validator) -> None:
    # The client clock runs 2 h behind: sent_at says 10:00, the server got it at 12:00.
    item = event(timestamp="2026-11-23T09:59:00+00:00", sent_at="2026-11-23T10:00:00Z")
    result = run(validator, [item, event(timestamp="2026-11-23T11:00:00+01:00")])
    stamps = result.accepted.column("timestamp").to_pylist()
    assert stamps[0] == datetime(2026, 11, 23, 11, 59, tzinfo=UTC)
    assert stamps[1] == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert result.accepted.column("clock_skew_ms").to_pylist() == [2 * 3600 * 1000, None]


def expected_hmac(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def test_pii_is_pseudonymized_with_hmac_and_ip_truncated(validator: Validator) -> None:
    item = event(
        type="identify",
        anonymous_id="anon-1",
        properties={"email": "alice@example.com", "phone": "+49 30 1234", "plan": "pro"},
        context={"ip": "203.0.113.77", "traits": {"name": "Alice Doe"}, "locale": "de-DE"},
    )
    v6 = event(context={"ip": "2001:db8:85a3:8d3:1319:8a2e:370:7348"})
    result = run(validator, [item, v6])
    props = json.loads(result.accepted.column("properties")[0].as_py())
    ctx = json.loads(result.accepted.column("context")[0].as_py())
    assert props == {
        "email": expected_hmac("alice@example.com"),
        "phone": expected_hmac("+49 30 1234"),
        "plan": "pro",
    }
    assert ctx["traits"] == {"name": expected_hmac("Alice Doe")}
    assert ctx["ip"] == "203.0.113.0"
    assert ctx["locale"] == "de-DE"
    assert json.loads(result.accepted.column("context")[1].as_py())["ip"] == "2001:db8:85a3::"
    stored = result.accepted.to_pylist().__repr__()
    for raw in ("alice@example.com", "Alice Doe", "+49 30 1234", "203.0.113.77"):
        assert raw not in stored


def test_identify_and_alias_produce_identity_merges(validator: Validator) -> None:
    items = [
        event(type="identify", user_id="u7", anonymous_id="a7"),
        event(type="alias", user_id="u8", anonymous_id=None, properties={"previous_id": "a8"}),
        event(type="page_view", user_id="u9", anonymous_id="a9"),
    ]
    merges = run(validator, items).identities.to_pylist()
    assert sorted((m["anonymous_id"], m["user_id"]) for m in merges) == [("a7", "u7"), ("a8", "u8")]


def test_trait_only_keys_are_kept_on_other_events(validator: Validator) -> None:
    product = event(type="product_view", properties={"name": "Blue Shoes", "email": "x@y.z"})
    person = event(type="identify", properties={"name": "Blue Shoes"})
    result = run(validator, [product, person])
    props = [json.loads(p) for p in result.accepted.column("properties").to_pylist()]
    assert props[0] == {"name": "Blue Shoes", "email": expected_hmac("x@y.z")}
    assert props[1] == {"name": expected_hmac("Blue Shoes")}
