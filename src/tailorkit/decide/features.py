"""Serving feature flags: ``features.yaml`` as a hot-swappable evaluator.

``features.yaml`` holds GrowthBook's SDK payload sections as they are
(``features``, ``savedGroups``, ``contextualBandits``) next to tailorkit's
``experiments`` analysis settings.  :class:`FeatureService` compiles the
payload into an :class:`~tailorkit.evaluate.Evaluator` and keeps it in an
immutable :class:`FeatureSnapshot`; a reload builds a new snapshot and swaps
one reference, so a request sees either the old or the new definitions,
never a mix.  Reloads come from the file (a watcher thread polls it) or from
the admin API (:meth:`FeatureService.replace`).

Evaluations through the service are profile-aware (the user's profile
attributes, see :func:`merge_profile`) and log an exposure event for every
user put into an experiment (:mod:`tailorkit.decide.exposures`).

>>> service = FeatureService(None, {"features": {"banner": {"defaultValue": "off", "rules": [
...     {"condition": {"segments": {"$elemMatch": {"$eq": "vip"}}}, "force": "gold"}]}}},
...     profiles=lambda person: {"segments": ["vip"]} if person == "u1" else None)
>>> service.evaluate("banner", {"id": "u1"}).value, service.evaluate("banner", {"id": "u2"}).value
('gold', 'off')
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tailorkit.decide.exposures import ExposureLog
from tailorkit.evaluate import Context, Evaluator, FeatureResult, encrypt_payload
from tailorkit.project.loader import ConfigError, schema, validate_document

__all__ = [
    "FEATURES_FILE",
    "FeatureService",
    "FeatureSnapshot",
    "ProfileLookup",
    "build_snapshot",
    "check_document",
    "merge_profile",
    "payload_version",
    "read_features_file",
    "sdk_payload",
]

log = logging.getLogger(__name__)

FEATURES_FILE = "features.yaml"
#: features.yaml sections that make up the GrowthBook SDK payload
PAYLOAD_SECTIONS = ("features", "savedGroups", "contextualBandits")
#: tailorkit's own keys of a feature definition, never sent to SDKs
TAILORKIT_ONLY_KEYS = frozenset({"description", "owner", "tags"})
#: Rule keys GrowthBook's SDKs read; other keys are ignored, as they are there
KNOWN_RULE_KEYS = frozenset({
    "id", "condition", "parentConditions", "force", "variations", "weights", "key",
    "hashAttribute", "fallbackAttribute", "hashVersion", "disableStickyBucketing",
    "bucketVersion", "minBucketVersion", "range", "coverage", "namespace", "ranges", "meta",
    "filters", "seed", "name", "phase", "tracks", "contextualBanditRef",
    "contextualVariations", "type", "banditVersion",
})  # fmt: skip

#: Looks up a person's profile attributes by user or anonymous id (``None``: no profile).
ProfileLookup = Callable[[str], Mapping[str, Any] | None]


# ------------------------------------------------------------------ documents


def read_features_file(path: Path) -> dict[str, Any]:
    """Read, validate and JSON-normalize ``features.yaml`` (a missing file: no features).

    Raises :class:`~tailorkit.project.ConfigError` naming the file, the key
    path and the reason.

    >>> read_features_file(Path("/nonexistent/features.yaml"))
    {}
    """
    if not path.is_file():
        return {}
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(FEATURES_FILE, where, f"not valid YAML: {exc}") from exc
    return validate_features(document)


def validate_features(document: Any) -> dict[str, Any]:
    """Validate a features.yaml document (schema, then :func:`check_document`).

    Returns it JSON-normalized, so that the server evaluates exactly what
    the SDKs receive (YAML dates become ISO strings).

    >>> try:
    ...     validate_features({"features": {"f": {"rules": [{"forse": 1}]}}})
    ... except ConfigError as exc:
    ...     print(exc.file, exc.path, exc.message, sep=" | ")
    features.yaml | features.f.rules.0.forse | unknown rule key; did you mean 'force'?
    """
    defs = schema("definitions")
    validate_document(
        FEATURES_FILE, document, {"$defs": defs["$defs"], **defs["$defs"]["features"]}
    )
    try:
        normalized: dict[str, Any] = json.loads(
            json.dumps(document, default=_json_default, allow_nan=False)
        )
    except ValueError as exc:
        raise ConfigError(FEATURES_FILE, "", f"not representable as JSON: {exc}") from exc
    check_document(normalized)
    return normalized


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def check_document(document: Mapping[str, Any]) -> None:
    """Checks the schema cannot express: near-misses of rule keys, unknown saved groups.

    GrowthBook's SDKs ignore unknown rule keys; a misspelt ``condition``
    would silently apply a rule to everyone, so close misspellings are
    refused.

    >>> try:
    ...     check_document({"features": {"f": {"rules": [
    ...         {"condition": {"id": {"$inGroup": "beta"}}, "force": 1}]}}})
    ... except ConfigError as exc:
    ...     print(exc.path, exc.message, sep=" | ")
    features.f.rules.0.condition.id.$inGroup | saved group 'beta' is not defined in savedGroups
    """
    groups = document.get("savedGroups") or {}
    for key, feature in (document.get("features") or {}).items():
        for index, rule in enumerate(feature.get("rules") or []):
            where = f"features.{key}.rules.{index}"
            _check_rule_keys(where, rule)
            for path, group in _group_references(rule, where):
                if group not in groups:
                    raise ConfigError(
                        FEATURES_FILE, path, f"saved group {group!r} is not defined in savedGroups"
                    )


def _check_rule_keys(where: str, rule: Mapping[str, Any]) -> None:
    for name in rule:
        if name in KNOWN_RULE_KEYS:
            continue
        close = difflib.get_close_matches(name, KNOWN_RULE_KEYS, n=1, cutoff=0.75)
        if close:
            raise ConfigError(
                FEATURES_FILE, f"{where}.{name}", f"unknown rule key; did you mean {close[0]!r}?"
            )


def _group_references(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(key path, group name) of every ``$inGroup``/``$notInGroup`` under ``value``."""
    if isinstance(value, Mapping):
        for name, child in value.items():
            child_path = f"{path}.{name}"
            if name in ("$inGroup", "$notInGroup") and isinstance(child, str):
                yield child_path, child
            else:
                yield from _group_references(child, child_path)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _group_references(child, f"{path}.{index}")


def sdk_payload(document: Mapping[str, Any]) -> dict[str, Any]:
    """The GrowthBook SDK payload sections of a features.yaml document.

    tailorkit's own feature keys (``description``, ``owner``, ``tags``) are
    left out: browsers need not see them.

    >>> sdk_payload({"features": {"f": {"defaultValue": 1, "owner": "ana"}}, "experiments": {}})
    {'features': {'f': {'defaultValue': 1}}, 'savedGroups': {}}
    """
    features = {
        key: {k: v for k, v in definition.items() if k not in TAILORKIT_ONLY_KEYS}
        for key, definition in (document.get("features") or {}).items()
    }
    payload: dict[str, Any] = {
        "features": features,
        "savedGroups": document.get("savedGroups") or {},
    }
    if document.get("contextualBandits"):
        payload["contextualBandits"] = document["contextualBandits"]
    return payload


def merge_profile(
    attributes: Mapping[str, Any] | None, profile: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The evaluation attributes: the request's attributes overlaid with the profile.

    Profile values (``segments`` and profile features/scores by name) win:
    they are computed from stored events, and a browser must not be able to
    claim a segment by sending it as an attribute.

    >>> merge_profile({"id": "u1", "segments": ["vip"], "country": "DE"},
    ...               {"segments": ["new"], "propensity_to_buy": 0.8})
    {'id': 'u1', 'segments': ['new'], 'country': 'DE', 'propensity_to_buy': 0.8}
    """
    merged = dict(attributes or {})
    if profile:
        merged.update(profile)
    return merged


# ------------------------------------------------------------------ snapshots


@dataclass(frozen=True)
class FeatureSnapshot:
    """One immutable version of the definitions, with everything derived from it.

    ``version`` hashes the SDK payload (the same definitions give the same
    version on every replica); ``body`` is the serialized payload served
    at ``/api/features`` (encrypted when a key is configured), ``etag`` its
    HTTP entity tag.
    """

    document: dict[str, Any]
    evaluator: Evaluator
    version: str
    date_updated: str
    body: bytes
    etag: str


def build_snapshot(
    document: Mapping[str, Any], *, encryption_key: str = "", date_updated: str | None = None
) -> FeatureSnapshot:
    """Compile a validated document into a snapshot.

    >>> snap = build_snapshot({"features": {"f": {"defaultValue": True}}})
    >>> snap.evaluator.evaluate("f").value, json.loads(snap.body)["features"]
    (True, {'f': {'defaultValue': True}})
    """
    payload = sdk_payload(document)
    version = payload_version(payload, encryption_key)
    date_updated = date_updated or datetime.now(UTC).isoformat(timespec="milliseconds")
    served = encrypt_payload(payload, encryption_key) if encryption_key else payload
    # dateUpdated is the JavaScript SDK's cache version: it must change with the content
    body = json.dumps({"status": 200, **served, "experiments": [], "dateUpdated": date_updated})
    return FeatureSnapshot(
        document=dict(document),
        evaluator=Evaluator.from_payload(payload),
        version=version,
        date_updated=date_updated,
        body=body.encode(),
        etag=f'"{version}"',
    )


def payload_version(payload: Mapping[str, Any], encryption_key: str = "") -> str:
    """A content hash of an SDK payload (the key is part of it: turning
    encryption on must change the ETag).

    >>> payload_version({"features": {}}) == payload_version({"features": {}})
    True
    """
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((canonical + "\x00" + encryption_key).encode()).hexdigest()[:24]


# -------------------------------------------------------------------- service


class FeatureService:
    """The current feature definitions of a project, reloadable while serving.

    ``root`` is the project folder (``None``: in-memory only, nothing is
    read or written).  ``profiles`` looks up a person's profile attributes;
    ``exposures`` receives an exposure for every user put into an
    experiment.  :meth:`start` starts the file watcher (every
    ``watch_seconds``; 0 disables it) and the exposure log.
    """

    def __init__(
        self,
        root: Path | None,
        document: Mapping[str, Any] | None = None,
        *,
        encryption_key: str = "",
        watch_seconds: float = 0.0,
        exposures: ExposureLog | None = None,
        profiles: ProfileLookup | None = None,
    ) -> None:
        self.path = None if root is None else Path(root) / FEATURES_FILE
        self.encryption_key = encryption_key
        self.watch_seconds = watch_seconds
        self.exposures = exposures
        self.profiles = profiles
        #: the last reload error (the previous definitions stay in use)
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._signature = self._stat()
        if document is None:
            document = read_features_file(self.path) if self.path is not None else {}
        else:
            document = validate_features(document)
        self._snapshot = build_snapshot(document, encryption_key=encryption_key)

    @property
    def snapshot(self) -> FeatureSnapshot:
        """The current definitions (read once per request: swaps are atomic)."""
        return self._snapshot

    # ------------------------------------------------------------ evaluation

    def identity(
        self,
        attributes: Mapping[str, Any] | None,
        user_id: str | None = None,
        anonymous_id: str | None = None,
    ) -> tuple[str | None, str | None]:
        """(user id, anonymous id): given ones first, else the attributes' ``user_id``/``id``
        and ``anonymous_id``.

        >>> FeatureService(None).identity({"id": "u1", "anonymous_id": "a1"})
        ('u1', 'a1')
        """
        attributes = attributes or {}
        user_id = user_id or _text(attributes.get("user_id")) or _text(attributes.get("id"))
        return user_id, anonymous_id or _text(attributes.get("anonymous_id"))

    def profile_attributes(self, user_id: str | None, anonymous_id: str | None) -> dict[str, Any]:
        """The person's profile attributes, or ``{}`` (a failing lookup never fails a request)."""
        person = user_id or anonymous_id
        if self.profiles is None or not person:
            return {}
        try:
            return dict(self.profiles(person) or {})
        except Exception:
            log.exception("profile lookup failed; evaluating without the profile")
            return {}

    def context(
        self,
        attributes: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        snapshot: FeatureSnapshot | None = None,
    ) -> Context:
        """A profile-aware evaluation context that logs exposures for this user.

        >>> service = FeatureService(None, {"features": {"f": {"defaultValue": 1}}})
        >>> service.snapshot.evaluator.eval_feature("f", service.context({"id": "u1"})).value
        1
        """
        snapshot = snapshot or self._snapshot
        user_id, anonymous_id = self.identity(attributes, user_id, anonymous_id)
        merged = merge_profile(attributes, self.profile_attributes(user_id, anonymous_id))
        callback = self.exposures.callback(user_id, anonymous_id) if self.exposures else None
        return snapshot.evaluator.context(merged, on_exposure=callback)

    def evaluate(
        self,
        key: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        anonymous_id: str | None = None,
    ) -> FeatureResult:
        """Evaluate one feature for one user (profile-aware, exposures logged).

        >>> FeatureService(None).evaluate("missing", {"id": "u1"}).source
        'unknownFeature'
        """
        snapshot = self._snapshot
        ctx = self.context(
            attributes, user_id=user_id, anonymous_id=anonymous_id, snapshot=snapshot
        )
        return snapshot.evaluator.eval_feature(key, ctx)

    def evaluate_all(
        self,
        attributes: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        anonymous_id: str | None = None,
    ) -> dict[str, FeatureResult]:
        """Evaluate every feature for one user, against one snapshot.

        >>> service = FeatureService(None, {"features": {"a": {"defaultValue": 1}}})
        >>> {k: r.value for k, r in service.evaluate_all({"id": "u1"}).items()}
        {'a': 1}
        """
        snapshot = self._snapshot
        ctx = self.context(
            attributes, user_id=user_id, anonymous_id=anonymous_id, snapshot=snapshot
        )
        return snapshot.evaluator.eval_all(ctx)

    # ---------------------------------------------------------------- reloads

    def reload(self) -> bool:
        """Re-read features.yaml; ``True`` when the definitions changed.

        Raises :class:`~tailorkit.project.ConfigError` (and keeps the
        current definitions) when the file is invalid.
        """
        if self.path is None:
            return False
        with self._lock:
            signature = self._stat()
            try:
                document = read_features_file(self.path)
            except ConfigError as exc:
                self.last_error = str(exc)
                raise
            self._signature = signature
            self.last_error = None
            return self._install(document)

    def replace(self, document: Mapping[str, Any], *, persist: bool = True) -> FeatureSnapshot:
        """Replace the payload sections given (``features``, ``savedGroups``,
        ``contextualBandits``); the others, and ``experiments``, are kept.

        With ``persist`` the result is written to features.yaml (atomically;
        comments in the file are lost).

        >>> service = FeatureService(None)
        >>> service.replace({"features": {"f": {"defaultValue": 2}}}).evaluator.evaluate("f").value
        2
        """
        for name in document:
            if name not in PAYLOAD_SECTIONS:
                raise ConfigError("request", name, f"only {', '.join(PAYLOAD_SECTIONS)} here")
        with self._lock:
            self._put(validate_features({**self._snapshot.document, **document}), persist)
            return self._snapshot

    def apply(self, document: Mapping[str, Any], *, persist: bool = True) -> bool:
        """Replace the whole definitions with ``document`` (validated as features.yaml is);
        ``True`` when they changed. Another replica's published features arrive here.

        Raises :class:`~tailorkit.project.ConfigError` (and keeps the
        current definitions) when the document is invalid.

        >>> FeatureService(None).apply({"features": {"f": {"defaultValue": 3}}}, persist=False)
        True
        """
        with self._lock:
            return self._put(validate_features(dict(document)), persist)

    def _put(self, document: dict[str, Any], persist: bool) -> bool:
        if persist and self.path is not None:
            self._write(document)
        return self._install(document)

    def _install(self, document: dict[str, Any]) -> bool:
        """Swap in a new snapshot; payload-identical documents keep the version."""
        current = self._snapshot
        if payload_version(sdk_payload(document), self.encryption_key) == current.version:
            if document != current.document:  # e.g. a description changed
                self._snapshot = _with_document(current, document)
            return False
        self._snapshot = build_snapshot(document, encryption_key=self.encryption_key)
        log.info("features reloaded: version %s", self._snapshot.version)
        return True

    def _write(self, document: Mapping[str, Any]) -> None:
        assert self.path is not None
        text = "# Written by the admin API (PUT /v1/admin/features).\n" + yaml.safe_dump(
            dict(document), sort_keys=False, allow_unicode=True
        )
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".features.", suffix=".yaml")
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, self.path)
        self._signature = self._stat()

    # ---------------------------------------------------------------- watcher

    def check_file(self) -> bool:
        """Reload when features.yaml changed on disk; errors are logged, not raised."""
        signature = self._stat()
        if signature == self._signature:
            return False
        time.sleep(0.05)  # let a writer finish: act on a signature that holds still
        if self._stat() != signature:
            return False
        try:
            return self.reload()
        except ConfigError as exc:
            self._signature = signature  # do not retry until the file changes again
            log.error("features.yaml not reloaded, keeping version %s: %s", self.version, exc)
            return False

    @property
    def version(self) -> str:
        """The current definitions' version."""
        return self._snapshot.version

    def start(self) -> None:
        """Start the exposure log and, when configured, the file watcher."""
        if self.exposures is not None:
            self.exposures.start()
        if self.path is not None and self.watch_seconds > 0 and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="tk-features", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop watching and flush the exposures still queued."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self.exposures is not None:
            self.exposures.stop()

    def _watch(self) -> None:
        while not self._stop.wait(self.watch_seconds):
            try:
                self.check_file()
            except Exception:  # the watcher must survive anything
                log.exception("checking features.yaml failed")

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path) if self.path is not None else None
        except FileNotFoundError:
            return None
        return None if st is None else (st.st_mtime_ns, st.st_size, st.st_ino)


def _with_document(snapshot: FeatureSnapshot, document: dict[str, Any]) -> FeatureSnapshot:
    return FeatureSnapshot(
        document, snapshot.evaluator, snapshot.version, snapshot.date_updated,
        snapshot.body, snapshot.etag,
    )  # fmt: skip


def _text(value: Any) -> str | None:
    """An id attribute as text (numbers are ids too), or ``None``."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None
