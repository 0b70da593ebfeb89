"""Sticky bucketing storage.

A sticky-bucket document records, for one identifier (``attributeName`` and
``attributeValue``), the variation key each experiment assigned, keyed
``"<experimentKey>__<bucketVersion>"`` — GrowthBook's document shape, so
documents can be shared with GrowthBook SDKs.  The evaluation core only reads
and writes through :class:`StickyBucketService`; the in-memory version here
is pure, and a Redis one can implement the same two methods.
"""

from __future__ import annotations

from typing import Any, Protocol, TypedDict

__all__ = [
    "InMemoryStickyBucketService",
    "StickyAssignmentDoc",
    "StickyBucketService",
    "sticky_doc_key",
]


class StickyAssignmentDoc(TypedDict):
    """Assignments of one identifier, GrowthBook's JSON shape."""

    attributeName: str
    attributeValue: str
    assignments: dict[str, str]


class StickyBucketService(Protocol):
    """Where sticky-bucket documents live."""

    def get_assignments(
        self, attribute_name: str, attribute_value: str
    ) -> StickyAssignmentDoc | None:
        """The document for one identifier, if any."""
        ...

    def save_assignments(self, doc: StickyAssignmentDoc) -> None:
        """Store (replace) the document for ``doc``'s identifier."""
        ...


def sticky_doc_key(attribute_name: str, attribute_value: str) -> str:
    """GrowthBook's document key ``"<attribute>||<value>"``.

    >>> sticky_doc_key("id", "u1")
    'id||u1'
    """
    return f"{attribute_name}||{attribute_value}"


class InMemoryStickyBucketService:
    """A dictionary of documents keyed by :func:`sticky_doc_key`.

    >>> service = InMemoryStickyBucketService()
    >>> service.save_assignments(
    ...     {"attributeName": "id", "attributeValue": "u1", "assignments": {"exp__0": "1"}})
    >>> service.get_assignments("id", "u1")["assignments"]
    {'exp__0': '1'}
    """

    def __init__(self, docs: dict[str, StickyAssignmentDoc] | None = None) -> None:
        self.docs: dict[str, StickyAssignmentDoc] = dict(docs or {})

    def get_assignments(
        self, attribute_name: str, attribute_value: str
    ) -> StickyAssignmentDoc | None:
        """The document for one identifier, if any."""
        return self.docs.get(sticky_doc_key(attribute_name, attribute_value))

    def save_assignments(self, doc: StickyAssignmentDoc) -> None:
        """Store (replace) the document for ``doc``'s identifier."""
        key = sticky_doc_key(doc["attributeName"], doc["attributeValue"])
        self.docs[key] = _copy_doc(doc)


def _copy_doc(doc: StickyAssignmentDoc) -> StickyAssignmentDoc:
    assignments: dict[str, Any] = dict(doc.get("assignments") or {})
    return {
        "attributeName": doc["attributeName"],
        "attributeValue": doc["attributeValue"],
        "assignments": assignments,
    }
