"""Segment tracking-API payloads (track, identify, page, screen, alias, batch) → tailorkit events.

Apps instrumented with Segment's analytics.js or RudderStack SDKs can send to
tailorkit by changing the endpoint URL. Field mapping follows Segment's public
spec: ``messageId`` → ``event_id``, ``userId``/``anonymousId`` → ids,
``timestamp`` (or ``originalTimestamp``) and ``sentAt`` for clock-skew
correction, ``context`` kept with normalized ``utm``, ``user_agent``,
``page``, ``locale``, ``ip``; ``integrations`` kept under
``context.integrations``; consent from ``context.consent.categoryPreferences``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tailorkit.collect.raw import Invalid

# Segment e-commerce spec event names → tailorkit's standard types.
ECOMMERCE_TYPES = {
    "Product Viewed": "product_view",
    "Product Added": "add_to_cart",
    "Product Removed": "remove_from_cart",
    "Checkout Started": "checkout",
    "Order Completed": "purchase",
    "Products Searched": "search",
}
CALL_TYPES = ("track", "identify", "page", "screen", "alias")


def _consent(context: dict[str, Any]) -> dict[str, bool] | None:
    consent = context.get("consent")
    prefs = consent.get("categoryPreferences") if isinstance(consent, dict) else None
    if not isinstance(prefs, dict):
        return None
    lowered = {str(k).lower(): v for k, v in prefs.items()}
    out: dict[str, bool] = {
        k: bool(lowered[k]) for k in ("analytics", "personalization") if k in lowered
    }
    return out or None


def _context(message: dict[str, Any], batch_context: dict[str, Any]) -> dict[str, Any]:
    context = {**batch_context, **(message.get("context") or {})}
    campaign = context.get("campaign")
    if isinstance(campaign, dict):
        context["utm"] = {k: v for k, v in campaign.items() if k != "name"} | (
            {"campaign": campaign["name"]} if "name" in campaign else {}
        )
    if "userAgent" in context:
        context["user_agent"] = context["userAgent"]
    if isinstance(message.get("integrations"), dict):
        context["integrations"] = message["integrations"]
    return context


def _type_and_properties(message: dict[str, Any], call: str) -> tuple[Any, dict[str, Any]]:
    properties = dict(message.get("properties") or {})
    if call == "track":
        event = message.get("event")
        if isinstance(event, str) and event in ECOMMERCE_TYPES:
            properties["segment_event"] = event
            return ECOMMERCE_TYPES[event], properties
        return event, properties
    if call == "identify":
        return "identify", dict(message.get("traits") or {})
    if call in ("page", "screen"):
        for key in ("name", "category"):
            if key in message:
                properties[key] = message[key]
        return ("page_view" if call == "page" else "screen_view"), properties
    properties["previous_id"] = message.get("previousId")
    return "alias", properties


def to_event(
    message: Any, call: str | None = None, batch_context: dict[str, Any] | None = None
) -> Any:
    """Convert one Segment message into a tailorkit event dict.

    Anything that is not a usable message is returned unchanged so the
    validator rejects it with its index.

    >>> e = to_event({"type": "track", "event": "Order Completed", "messageId": "m1",
    ...               "userId": "u1", "timestamp": "2026-01-01T00:00:00Z",
    ...               "properties": {"revenue": 10}})
    >>> e["type"], e["event_id"], e["properties"]["revenue"]
    ('purchase', 'm1', 10)
    """
    if not isinstance(message, dict):
        return message
    call = call or message.get("type")
    if call not in CALL_TYPES:
        return Invalid(f"type: unknown Segment call {call!r}")
    for name in ("context", "properties", "traits"):
        if message.get(name) is not None and not isinstance(message[name], dict):
            return Invalid(f"{name}: must be an object")
    context = _context(message, batch_context or {})
    event_type, properties = _type_and_properties(message, call)
    event: dict[str, Any] = {
        "event_id": message.get("messageId"),
        "type": event_type,
        "user_id": message.get("userId"),
        "anonymous_id": message.get("anonymousId"),
        "timestamp": message.get("timestamp")
        or message.get("originalTimestamp")
        or datetime.now(UTC).isoformat(),
        "sent_at": message.get("sentAt"),
        "properties": properties,
        "context": context,
    }
    for key in ("user_id", "anonymous_id"):
        if isinstance(event[key], int | float):  # Segment allows numeric ids
            event[key] = str(event[key])
    consent = _consent(context)
    if consent is not None:
        event["consent"] = consent
    return event


def batch_to_events(payload: Any) -> list[Any]:
    """Convert a Segment ``/v1/batch`` payload into tailorkit event dicts."""
    if not isinstance(payload, dict) or not isinstance(payload.get("batch"), list):
        return [payload]
    context = payload.get("context") if isinstance(payload.get("context"), dict) else {}
    sent_at = payload.get("sentAt")
    events = []
    for message in payload["batch"]:
        if isinstance(message, dict) and sent_at and "sentAt" not in message:
            message = {**message, "sentAt": sent_at}
        events.append(to_event(message, None, context))
    return events
