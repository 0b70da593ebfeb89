"""The per-request evaluation context: one user's attributes and options.

A :class:`Context` is cheap to create (a handful of slot assignments), so a
server makes one per request.  It also carries what must stay consistent
within one request: the FNV states of hash values, loaded sticky-bucket
documents and the set of exposures already reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tailorkit.evaluate.jsvalues import js_json, js_to_string, js_truthy
from tailorkit.evaluate.sticky import StickyAssignmentDoc, StickyBucketService, sticky_doc_key

if TYPE_CHECKING:
    from tailorkit.evaluate.features import Evaluator
    from tailorkit.evaluate.results import ExposureRecord

__all__ = ["Context", "ExposureCallback", "hash_attribute_value"]

ExposureCallback = Callable[["ExposureRecord"], None]


class Context:
    """One user's evaluation context.

    >>> ctx = Context({"id": "u1", "country": "DE"})
    >>> ctx.attributes["country"]
    'DE'
    """

    __slots__ = (
        "_docs",
        "_tracked",
        "attributes",
        "enabled",
        "evaluator",
        "forced_features",
        "forced_variations",
        "on_exposure",
        "prefix_cache",
        "qa_mode",
        "sticky_service",
        "url",
    )

    def __init__(
        self,
        attributes: Mapping[str, Any] | None = None,
        url: str = "",
        forced_variations: Mapping[str, int] | None = None,
        forced_features: Mapping[str, Any] | None = None,
        qa_mode: bool = False,
        enabled: bool = True,
        sticky_service: StickyBucketService | None = None,
        on_exposure: ExposureCallback | None = None,
        evaluator: Evaluator | None = None,
    ) -> None:
        self.attributes: Mapping[str, Any] = {} if attributes is None else attributes
        self.url = url
        self.forced_variations = forced_variations
        self.forced_features = forced_features
        self.qa_mode = qa_mode
        self.enabled = enabled
        self.sticky_service = sticky_service
        self.on_exposure = on_exposure
        self.evaluator = evaluator
        # FNV-1a states of hash values, shared by every version-1 seed
        self.prefix_cache: dict[str, int] = {}
        self._docs: dict[str, StickyAssignmentDoc | None] | None = None
        self._tracked: set[tuple[str, str, str, str]] | None = None

    # ----------------------------------------------------------------- sticky

    def sticky_doc(self, attribute: str, value: str) -> StickyAssignmentDoc | None:
        """The sticky document of one identifier (loaded once per context)."""
        docs = self._docs
        if docs is None:
            docs = self._docs = {}
        key = sticky_doc_key(attribute, value)
        if key not in docs:
            service = self.sticky_service
            docs[key] = service.get_assignments(attribute, value) if service else None
        return docs[key]

    def sticky_assignment_docs(self) -> dict[str, StickyAssignmentDoc]:
        """This user's sticky documents, keyed ``"<attribute>||<value>"``.

        Loads the documents of every identifier attribute the evaluator's
        experiments hash on (what GrowthBook SDKs preload), plus any already
        loaded.
        """
        if self.evaluator is not None:
            for attribute in self.evaluator.sticky_attributes:
                _, value = hash_attribute_value(self.attributes, attribute, None)
                if js_truthy(value):
                    self.sticky_doc(attribute, _doc_value(value))
        return {key: doc for key, doc in (self._docs or {}).items() if doc is not None}

    def sticky_assignments(self, hash_attribute: str, fallback: str | None) -> dict[str, str]:
        """Assignments for an experiment's identifiers, hash attribute first."""
        name, value = hash_attribute_value(self.attributes, hash_attribute, None)
        primary = self.sticky_doc(name, _doc_value(value))
        # With no fallback attribute, JavaScript looks up "id" as the fallback
        fb_name, fb_value = hash_attribute_value(self.attributes, fallback, None)
        merged: dict[str, str] = {}
        if js_truthy(fb_value):
            secondary = self.sticky_doc(fb_name, _doc_value(fb_value))
            if secondary:
                merged.update(secondary.get("assignments") or {})
        if primary:
            merged.update(primary.get("assignments") or {})
        return merged

    def save_sticky_assignment(
        self, attribute: str, raw_value: Any, experiment_key: str, variation_key: str
    ) -> None:
        """Record an assignment, writing the document only when it changed."""
        value = _doc_value(raw_value)
        existing = self.sticky_doc(attribute, value)
        assignments: dict[str, str] = dict(existing["assignments"] or {}) if existing else {}
        if assignments.get(experiment_key) == variation_key:
            return
        assignments[experiment_key] = variation_key
        doc: StickyAssignmentDoc = {
            "attributeName": attribute,
            "attributeValue": value,
            "assignments": assignments,
        }
        assert self._docs is not None  # sticky_doc() created it
        self._docs[sticky_doc_key(attribute, value)] = doc
        if self.sticky_service is not None:
            self.sticky_service.save_assignments(doc)

    # --------------------------------------------------------------- exposure

    def first_exposure(self, key: tuple[str, str, str, str]) -> bool:
        """True the first time an exposure key is seen in this context."""
        tracked = self._tracked
        if tracked is None:
            tracked = self._tracked = set()
        if key in tracked:
            return False
        tracked.add(key)
        return True


def _doc_value(value: Any) -> str:
    """How JavaScript's ``toString`` helper writes an identifier: JSON for non-strings."""
    return value if isinstance(value, str) else js_json(value)


def _resolve(attributes: Mapping[str, Any], key: str) -> Any:
    """A literal key first, then a dotted path; ``""`` when missing."""
    if key in attributes:
        return attributes[key]
    if "." in key:
        current: Any = attributes
        for part in key.split("."):
            current = current.get(part) if isinstance(current, Mapping) else None
            if current is None:
                return ""
        return current
    return ""


def hash_attribute_value(
    attributes: Mapping[str, Any], attribute: str | None, fallback: str | None
) -> tuple[str, Any]:
    """The attribute used for hashing and its raw value (JavaScript rules).

    The fallback is used when the value is falsy; its name is reported only
    if its value is truthy.

    >>> hash_attribute_value({"anonId": "a1"}, "id", "anonId")
    ('anonId', 'a1')
    """
    name = attribute or "id"
    value = _resolve(attributes, name)
    if fallback and not js_truthy(value):
        value = _resolve(attributes, fallback)
        if js_truthy(value):
            name = fallback
    return name, value


def hash_string(value: Any) -> str:
    """The string JavaScript hashes for a value (``seed + value``).

    >>> hash_string(123), hash_string(1.5)
    ('123', '1.5')
    """
    return value if type(value) is str else js_to_string(value)
