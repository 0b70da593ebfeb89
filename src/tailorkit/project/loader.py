"""Load and validate a project folder against the published JSON Schemas.

Every error names the file, the key path inside it and what is wrong, so that a
GitOps review can point at the line to fix.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tailorkit.store.redis_fallback import RedisOptions

DEFINITION_FILES = ("segments.yaml", "features.yaml", "placements.yaml")
DEFAULT_PII_FIELDS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "address",
    "street",
    "ip",
    "birthday",
)
REDIS_ENV = "TAILORKIT_REDIS_URL"
# Keys that are personal only as traits of a person (a product also has a name).
DEFAULT_PII_TRAIT_FIELDS = ("name", "username")


class ConfigError(ValueError):
    """A project file is invalid: says which file, where and what is wrong."""

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file, self.path, self.message = file, path, message
        super().__init__(f"{file}: {path or '<root>'}: {message}")


@cache
def schema(name: str) -> dict[str, Any]:
    """Return a published JSON Schema by name (``tailorkit`` or ``definitions``)."""
    text = resources.files("tailorkit.project").joinpath(f"schemas/{name}.schema.json")
    loaded: dict[str, Any] = json.loads(text.read_text())
    return loaded


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may carry (413/422 beyond them)."""

    max_batch_events: int = 1000
    max_event_bytes: int = 32 * 1024
    max_request_bytes: int = 4 * 1024 * 1024
    max_depth: int = 8


@dataclass(frozen=True)
class BusSettings:
    """The event bus (``bus`` in ``tailorkit.yaml``; see :mod:`tailorkit.collect.bus`)."""

    redis_url: str
    stream: str = "tailorkit:events"
    group: str = "tailorkit-workers"
    claim_idle_seconds: float = 30.0
    read_count: int = 32
    block_ms: int = 1000
    timeout_ms: int = 2000  # a socket timeout on top of block_ms (docs/scale-out.md)


@dataclass(frozen=True)
class PiiSettings:
    """Which property/trait keys are pseudonymized and with which key."""

    fields: tuple[str, ...] = DEFAULT_PII_FIELDS
    trait_fields: tuple[str, ...] = DEFAULT_PII_TRAIT_FIELDS
    hmac_key: str = ""
    truncate_ip: bool = True


@dataclass(frozen=True)
class QualitySettings:
    """Bot/outlier detection thresholds."""

    exclude_flagged_users: bool = True
    robust_z_threshold: float = 6.0
    late_after_hours: float = 24.0


@dataclass(frozen=True)
class SdkSettings:
    """Serving feature definitions to SDKs (``sdk`` in ``tailorkit.yaml``)."""

    encryption_key: str = ""
    watch_seconds: float = 2.0


@dataclass(frozen=True)
class AdmissionSettings:
    """Requests in flight per class, and event-loop lag, past which requests are shed
    (``admission`` in ``tailorkit.yaml``; see :mod:`tailorkit.server.admission`)."""

    decide: int = 256
    ingest: int = 32
    admin: int = 8
    max_lag_ms: float = 100.0


@dataclass(frozen=True)
class Rate:
    """A token bucket: ``per_second`` sustained (0: unlimited), ``burst`` at once."""

    per_second: float
    burst: float

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Rate:
        """``{"per_second": 5}`` -> ``Rate(5, 10)`` (burst defaults to two seconds' worth).

        >>> Rate.from_document({"per_second": 5}), Rate.from_document({"per_second": 0.1})
        (Rate(per_second=5, burst=10), Rate(per_second=0.1, burst=1))
        """
        rate = doc["per_second"]
        return cls(rate, doc.get("burst", max(1, 2 * rate)))


@dataclass(frozen=True)
class RateLimits:
    """Per-key request rates (``rate_limits`` in ``tailorkit.yaml``)."""

    ingest: Rate = Rate(1000, 2000)
    admin: Rate = Rate(50, 200)
    keys: dict[str, Rate] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """Typed view of ``tailorkit.yaml`` after schema validation."""

    store_url: str
    ingest_keys: tuple[str, ...] = ()
    admin_keys: tuple[str, ...] = ()
    sdk_keys: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    bus: BusSettings | None = None  # None: the embedded, in-process ingestion path
    pii: PiiSettings = field(default_factory=PiiSettings)
    retention_days: int = 395
    limits: Limits = field(default_factory=Limits)
    quality: QualitySettings = field(default_factory=QualitySettings)
    host: str = "127.0.0.1"
    port: int = 8000
    sdk: SdkSettings = field(default_factory=SdkSettings)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    admission: AdmissionSettings = field(default_factory=AdmissionSettings)
    # Shared state of replicas (rate limits, dwell, caps); "" keeps it in process.
    redis_url: str = ""
    redis_prefix: str = "tailorkit:"
    redis_options: RedisOptions = field(default_factory=RedisOptions)


@dataclass(frozen=True)
class Project:
    """A loaded project folder: settings plus the raw, validated definition files."""

    root: Path
    settings: Settings
    definitions: dict[str, dict[str, Any]]


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(path.name, where, f"not valid YAML: {exc}") from exc


def validate_document(file: str, document: Any, schema_doc: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for the first (most specific) schema violation.

    >>> validate_document("x.yaml", {"store": {}}, schema("tailorkit"))
    Traceback (most recent call last):
    ...
    tailorkit.project.loader.ConfigError: x.yaml: store: 'url' is a required property
    """
    validator = jsonschema.Draft202012Validator(schema_doc)
    error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path)
        raise ConfigError(file, path, error.message)


def _expand(value: str, root: Path) -> str:
    # "duckdb:///<project>/x" names a file inside the (absolute) project folder.
    value = value.replace("duckdb:///<project>", f"duckdb://{root}")
    return value.replace("<project>", str(root)).replace("${PROJECT}", str(root))


def _hmac_key(pii: dict[str, Any]) -> str:
    env_name = pii.get("hmac_key_env", "TAILORKIT_PII_KEY")
    key = os.environ.get(env_name) or pii.get("hmac_key", "")
    return str(key)


def _rate_limits(doc: dict[str, Any]) -> RateLimits:
    defaults = RateLimits()
    return RateLimits(
        ingest=Rate.from_document(doc["ingest"]) if "ingest" in doc else defaults.ingest,
        admin=Rate.from_document(doc["admin"]) if "admin" in doc else defaults.admin,
        keys={k: Rate.from_document(v) for k, v in doc.get("keys", {}).items()},
    )


def _sdk_settings(sdk: dict[str, Any]) -> SdkSettings:
    env_name = sdk.get("encryption_key_env", "TAILORKIT_SDK_ENCRYPTION_KEY")
    key = os.environ.get(env_name) or sdk.get("encryption_key", "")
    return SdkSettings(encryption_key=str(key), watch_seconds=sdk.get("watch_seconds", 2.0))


def _is_aes_key(text: str) -> bool:
    try:
        return len(base64.b64decode(text, validate=True)) in (16, 24, 32)
    except ValueError:
        return False


def _redis_options(redis: dict[str, Any]) -> RedisOptions:
    defaults = RedisOptions()
    return RedisOptions(
        timeout=redis.get("timeout_ms", defaults.timeout * 1000) / 1000,
        connect_timeout=redis.get("connect_timeout_ms", defaults.connect_timeout * 1000) / 1000,
        retry_after=redis.get("retry_after_seconds", defaults.retry_after),
    )


def _bus_settings(doc: dict[str, Any]) -> BusSettings | None:
    if "bus" not in doc:
        return None
    if doc.get("store", {}).get("url", "duckdb://").startswith("duckdb://"):
        raise ConfigError(
            "tailorkit.yaml",
            "bus",
            "the event bus needs a warehouse that servers and workers share "
            "(e.g. store.url: postgres://...); a DuckDB file admits one process",
        )
    return BusSettings(**doc["bus"])


def settings_from_document(doc: dict[str, Any], root: Path) -> Settings:
    """Build :class:`Settings` from a validated ``tailorkit.yaml`` document."""
    store = doc.get("store", {})
    keys = doc.get("keys", {})
    pii = doc.get("pii", {})
    server = doc.get("server", {})
    return Settings(
        store_url=_expand(store.get("url", "duckdb:///<project>/tailorkit.duckdb"), root),
        ingest_keys=tuple(keys.get("ingest", ())),
        admin_keys=tuple(keys.get("admin", ())),
        sdk_keys=tuple(keys.get("sdk", ())),
        cors_origins=tuple(keys.get("cors_origins", ())),
        bus=_bus_settings(doc),
        pii=PiiSettings(
            fields=tuple(pii.get("fields", DEFAULT_PII_FIELDS)),
            trait_fields=tuple(pii.get("trait_fields", DEFAULT_PII_TRAIT_FIELDS)),
            hmac_key=_hmac_key(pii),
            truncate_ip=pii.get("truncate_ip", True),
        ),
        retention_days=doc.get("retention", {}).get("events_days", 395),
        limits=Limits(**doc.get("limits", {})),
        quality=QualitySettings(**doc.get("quality", {})),
        host=server.get("host", "127.0.0.1"),
        port=server.get("port", 8000),
        sdk=_sdk_settings(doc.get("sdk", {})),
        rate_limits=_rate_limits(doc.get("rate_limits", {})),
        admission=AdmissionSettings(**doc.get("admission", {})),
        redis_url=os.environ.get(REDIS_ENV) or doc.get("redis", {}).get("url", ""),
        redis_prefix=doc.get("redis", {}).get("prefix", "tailorkit:"),
        redis_options=_redis_options(doc.get("redis", {})),
    )


def load_project(root: str | Path) -> Project:
    """Load and validate the project folder at ``root``.

    Raises :class:`ConfigError` naming the file, key path and problem.
    """
    root = Path(root).resolve()
    main = root / "tailorkit.yaml"
    if not main.is_file():
        raise ConfigError("tailorkit.yaml", "", f"not found in {root} (run `tailorkit init`)")
    doc = _read_yaml(main)
    validate_document("tailorkit.yaml", doc, schema("tailorkit"))
    settings = settings_from_document(doc, root)
    if not settings.pii.hmac_key:
        raise ConfigError(
            "tailorkit.yaml", "pii.hmac_key", "no PII key: set pii.hmac_key or the env variable"
        )
    known = {*settings.ingest_keys, *settings.admin_keys, *settings.sdk_keys}
    if set(settings.rate_limits.keys) - known:
        raise ConfigError(
            "tailorkit.yaml",
            "rate_limits.keys",
            "a key listed here is not an ingest, admin or SDK key",
        )
    if settings.sdk.encryption_key and not _is_aes_key(settings.sdk.encryption_key):
        raise ConfigError(
            "tailorkit.yaml", "sdk.encryption_key", "not a base64 AES key of 16, 24 or 32 bytes"
        )
    definitions: dict[str, dict[str, Any]] = {}
    defs_schema = schema("definitions")
    for name in DEFINITION_FILES:
        path = root / name
        document = _read_yaml(path) if path.is_file() else {}
        sub = {"$defs": defs_schema["$defs"], **defs_schema["$defs"][name.removesuffix(".yaml")]}
        validate_document(name, document, sub)
        definitions[name.removesuffix(".yaml")] = document
    return Project(root=root, settings=settings, definitions=definitions)
