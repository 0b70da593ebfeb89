"""Property tests of the event parser on hostile input: no crash, every item answered.

``parse_body`` may only raise :class:`PayloadError` (answered 413/422); the
raw batch has one row per item whatever the item is; the validator sorts
every row into exactly one outcome (accepted, rejected, duplicate, consent
dropped) and a rejected row always carries a reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailorkit.collect.jsonlines import raw_from_items
from tailorkit.collect.raw import PayloadError, parse_body
from tailorkit.collect.validate import Validator
from tailorkit.project.loader import Limits, PiiSettings

LIMITS = Limits(max_batch_events=50, max_event_bytes=2048, max_request_bytes=64 * 1024, max_depth=4)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FIELDS = ["event_id", "type", "user_id", "anonymous_id", "timestamp", "sent_at"]
FIELDS += ["properties", "context", "consent", "email", "ip", "traits", "analytics"]

# Text with the awkward parts of Unicode: NUL, lone surrogates, RTL overrides,
# combining marks, emoji, non-characters
awkward = st.text(
    st.characters(codec=None, categories=None, exclude_categories=())
    | st.sampled_from(["\x00", "\ud800", "\udfff", "\u202e", "\u0301", "\U0001f600", "\uffff"]),
    max_size=12,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False),
    awkward,
    st.sampled_from(["2026-11-20T10:00:00Z", "2026-02-30T10:00:00+01:00", "9999-12-31T23:59Z"]),
)
json_values = st.recursive(
    scalars,
    lambda c: (
        st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(FIELDS) | awkward, c, max_size=3)
    ),
    max_leaves=20,
)
events = st.fixed_dictionaries(
    {},
    optional={name: json_values for name in FIELDS},
)
items = st.lists(events | json_values, max_size=12)


def _dumps(value: Any) -> bytes:
    """JSON text as a careless client would send it (surrogates kept, so not always UTF-8)."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(PiiSettings(hmac_key="k" * 16, fields=("email", "ip")))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=300) | items.map(_dumps),
    content_type=st.sampled_from(["application/json", "application/x-ndjson", "text/plain", ""]),
)
def test_parse_body_raises_only_payload_errors(body: bytes, content_type: str) -> None:
    try:
        parsed = parse_body(body, content_type, LIMITS)
    except PayloadError as exc:
        assert exc.status in (413, 422) and str(exc)
        return
    assert isinstance(parsed, list) and len(parsed) <= LIMITS.max_batch_events


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=items)
def test_every_item_gets_exactly_one_outcome(batch: list[Any], validator: Validator) -> None:
    raw = raw_from_items(batch, LIMITS)
    assert raw["_index"].to_pylist() == list(range(len(batch)))
    result = validator.validate(raw, NOW, "fuzz")
    rejected = [index for index, _ in result.rejected]
    outcomes = sorted(
        result.accepted_index + rejected + result.duplicate_index + result.consent_dropped
    )
    assert outcomes == list(range(len(batch)))
    assert all(reason for _, reason in result.rejected)
    for item, index in zip(batch, range(len(batch)), strict=True):
        if not isinstance(item, dict):
            assert index in rejected


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(st.binary(max_size=80) | events.map(_dumps), max_size=10))
def test_ndjson_lines_are_answered_one_by_one(lines: list[bytes], validator: Validator) -> None:
    body = b"\n".join(line.replace(b"\n", b" ").replace(b"\r", b" ") for line in lines)
    try:
        parsed = parse_body(body, "application/x-ndjson", LIMITS)
    except PayloadError as exc:
        assert exc.status in (413, 422)
        return
    non_blank = [line for line in body.splitlines() if line.strip()]
    assert len(parsed) == len(non_blank)
    result = validator.validate(raw_from_items(parsed, LIMITS), NOW, "fuzz")
    assert result.accepted.num_rows + len(result.rejected) <= len(parsed)
