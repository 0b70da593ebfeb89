"""Pydantic models for the OpenAPI documentation of request and response bodies.

Request bodies are parsed and validated by the vectorized collector (so a
bad event never fails its batch); these models describe the accepted shape.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Consent(BaseModel):
    """What the user agreed to; both default to true when absent."""

    analytics: bool = True
    personalization: bool = True


class EventIn(BaseModel):
    """One behavioral event."""

    event_id: str = Field(description="Client-generated UUID; the deduplication key.")
    type: str = Field(
        description="page_view, product_view, add_to_cart, remove_from_cart, checkout, "
        "purchase, search, identify, alias, or a custom name.",
        examples=["product_view"],
    )
    user_id: str | None = Field(None, description="Known user id (user_id or anonymous_id).")
    anonymous_id: str | None = Field(None, description="Device/browser id.")
    timestamp: str = Field(description="ISO-8601 with offset, client clock.")
    sent_at: str | None = Field(
        None, description="When the client sent the batch (client clock); corrects skew."
    )
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    consent: Consent | None = None


class EventError(BaseModel):
    """A rejected event: its index in the request and why."""

    index: int
    reason: str


class IngestAnswer(BaseModel):
    """Per-event outcome of an ingestion request."""

    accepted: int
    duplicates: int
    rejected: int
    consent_dropped: int
    statuses: list[str]
    errors: list[EventError]


class SegmentMessage(BaseModel):
    """A Segment tracking-API message (track, identify, page, screen, alias) or batch."""

    type: str | None = None
    messageId: str | None = None
    userId: str | None = None
    anonymousId: str | None = None
    event: str | None = None
    name: str | None = None
    previousId: str | None = None
    properties: dict[str, Any] | None = None
    traits: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    timestamp: str | None = None
    sentAt: str | None = None
    batch: list[dict[str, Any]] | None = None
