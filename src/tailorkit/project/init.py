"""``tailorkit init``: write a commented, valid project folder."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

TAILORKIT_YAML = """\
# tailorkit project settings. Validated on load against
# tailorkit/project/schemas/tailorkit.schema.json.
project: {name}

store:
  # Warehouse URL. The embedded default is a DuckDB file in this folder;
  # for PostgreSQL use postgres://user@host:5432/database, for Spark
  # pyspark:///<project>/spark-warehouse (more in docs/warehouses.md).
  url: duckdb:///<project>/tailorkit.duckdb

keys:
  # Ingest keys are browser-safe: they may only send events and ask for decisions.
  ingest:
    - {ingest_key}
  # Admin keys manage definitions, read profiles and results, and erase users.
  # Keep them secret.
  admin:
    - {admin_key}
  # SDK client keys: public, like GrowthBook's; they may only read the feature
  # payload at GET /api/features/<key> (docs/features.md).
  sdk:
    - {sdk_key}
  # Origins allowed to call the ingest endpoints from a browser.
  cors_origins: ["http://localhost:8000"]

pii:
  # Property and trait keys pseudonymized with HMAC-SHA256 before anything is
  # stored or logged. The key comes from the environment variable below, or
  # from hmac_key (generated here for local use; use the env variable in production).
  fields: [email, phone, first_name, last_name, address, street, ip, birthday]
  # Pseudonymized only in identify traits and context.traits (products have names too).
  trait_fields: [name, username]
  hmac_key_env: TAILORKIT_PII_KEY
  hmac_key: {pii_key}
  # Zero the last octet of IPv4 addresses and keep the first 48 bits of IPv6.
  truncate_ip: true

sdk:
  # Encrypt the GrowthBook SDK payload (AES-128-CBC) by setting a base64 key
  # here or in the env variable below; give the SDKs the same decryptionKey.
  encryption_key_env: TAILORKIT_SDK_ENCRYPTION_KEY
  # Seconds between checks of features.yaml for changes (0: only on reload).
  watch_seconds: 2

retention:
  # Events older than this are purged by `tailorkit purge`.
  events_days: 395

limits:
  max_batch_events: 1000      # events per request (413 above)
  max_event_bytes: 32768      # one event, serialized (422 above)
  max_request_bytes: 4194304  # one request body (413 above)
  max_depth: 8                # nesting of properties/context (422 above)

quality:
  # Users flagged as bots or extreme outliers are left out of profiles,
  # segments and experiment analysis unless this is false.
  exclude_flagged_users: true
  robust_z_threshold: 6.0     # robust z-score of events per user and day
  late_after_hours: 24        # events arriving later than this are "late"

rate_limits:
  # Token buckets per API key: past them, 429 with Retry-After. per_second 0 is
  # unlimited; burst defaults to two seconds' worth. Per-key overrides go under
  # keys: {{"<the key>": {{per_second: 5000}}}}.
  ingest: {{per_second: 1000, burst: 2000}}
  admin: {{per_second: 50, burst: 200}}

# Several server replicas share rate-limit buckets, minimum dwell and frequency
# caps through Redis (env TAILORKIT_REDIS_URL wins); without it they stay in process.
# redis:
#   url: redis://127.0.0.1:6379/0
#   prefix: "tailorkit:"
"""

SEGMENTS_YAML = """\
# Profile features and segments. A segment is a GrowthBook-style condition over
# profile features and traits.
features: {}
segments: {}
"""

FEATURES_YAML = """\
# Feature flags and experiments, in GrowthBook's SDK payload format
# ("features" object plus "savedGroups").
features: {}
savedGroups: {}
"""

PLACEMENTS_YAML = """\
# Placements: ordered rules (condition -> content variant) with a default.
placements: {}
"""

TEMPLATE_README = """\
Jinja2 templates for placement content. They are rendered in a sandbox.
"""


def write_project(directory: str | Path, name: str | None = None) -> Path:
    """Create a new project folder with fresh random keys.

    Refuses to overwrite an existing ``tailorkit.yaml``.
    """
    root = Path(directory).resolve()
    main = root / "tailorkit.yaml"
    if main.exists():
        raise FileExistsError(f"{main} already exists")
    (root / "templates").mkdir(parents=True, exist_ok=True)
    main.write_text(
        TAILORKIT_YAML.format(
            # quoted: a folder named `on` or `null` would otherwise load as a bool/None
            name=json.dumps(name or root.name),
            ingest_key="tk_ingest_" + secrets.token_hex(16),
            admin_key="tk_admin_" + secrets.token_hex(16),
            sdk_key="tk_sdk_" + secrets.token_hex(16),
            pii_key=secrets.token_hex(32),
        )
    )
    (root / "segments.yaml").write_text(SEGMENTS_YAML)
    (root / "features.yaml").write_text(FEATURES_YAML)
    (root / "placements.yaml").write_text(PLACEMENTS_YAML)
    (root / "templates" / "README.txt").write_text(TEMPLATE_README)
    return root
