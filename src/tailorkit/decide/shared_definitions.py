"""Definitions shared by server replicas through Redis: the latest accepted document of each kind.

When an admin changes definitions on one replica (``PUT /v1/admin/placements``,
``POST /v1/admin/placements/reload``, ``PUT /v1/admin/features``, ``POST
/v1/admin/features/reload``) and the replica accepts them, it publishes the
document: one Lua script takes the next number of the counter
``<prefix>definitions:seq`` (``INCR``), stores ``{seq, version, document}``
in the hash ``<prefix>definitions:<kind>`` and announces the kind on the
channel ``<prefix>definitions``. Every replica's listener thread then reads
the hash and applies the document through the same validated path as a
local reload (``apply(document, persist)``): a document it refuses never
replaces its live definitions (one log line per published document).

"Newer" is the publish number. Each replica records, in
``.tailorkit/definitions-published.json``, the number of the last published
document its files were written from (0: none), and adopts a published
document only when its number is larger: at start-up, after every
(re)connection to Redis (documents missed while disconnected) and on each
announcement. A file edited by hand after that is kept at start-up until the
next publish. While Redis is unreachable replicas keep serving what they have.

>>> import redis, tempfile, time
>>> live = {}
>>> def apply(document, persist):
...     live.update(document)
...     return True
>>> a = SharedDefinitions(redis.Redis(), "doc-defs:", tempfile.mkdtemp(), {"placements": apply})
>>> b = SharedDefinitions(redis.Redis(), "doc-defs:", tempfile.mkdtemp(), {"placements": apply})
>>> b.start(); a.publish("placements", {"placements": {}}, "v1") > 0
True
>>> for _ in range(50):
...     if live: break
...     time.sleep(0.1)
>>> live, b.stop(), a.client.delete("doc-defs:definitions:seq", "doc-defs:definitions:placements")
({'placements': {}}, None, 2)
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from tailorkit.store.redis_fallback import Fallback, Listener, RedisOptions, connect

__all__ = ["Apply", "SharedDefinitions", "make_shared_definitions"]

log = logging.getLogger(__name__)

#: apply(document, persist) -> accepted; persist: also write the project file
Apply = Callable[[dict[str, Any], bool], bool]
RECORD = Path(".tailorkit") / "definitions-published.json"

# INCR, store, announce: atomic, so the hash never holds an older number than the counter gave
_PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], 'seq', seq, 'version', ARGV[1], 'document', ARGV[2])
redis.call('PUBLISH', KEYS[3], ARGV[3])
return seq
"""


class SharedDefinitions:
    """Publish accepted definitions and adopt other replicas' (see the module docstring).

    ``appliers`` maps each kind (``features``, ``placements``) to its
    validated apply; kinds are adopted in that order (placements may refer
    to features).
    """

    def __init__(
        self, client: Any, prefix: str, root: str | Path, appliers: Mapping[str, Apply]
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.channel = f"{prefix}definitions"
        self.counter = f"{prefix}definitions:seq"
        self.appliers = dict(appliers)
        self.record = Path(root) / RECORD
        self.seen: dict[str, int] = self._read_record()
        self.fallback = Fallback("definitions", client)
        self._script = client.register_script(_PUBLISH)
        self._lock = threading.Lock()  # one publish or adoption at a time
        self._listener = Listener(
            self.fallback, self.channel, self.adopt_all, self._announced, "tk-definitions"
        )
        self._started = False

    def key(self, kind: str) -> str:
        """The hash holding the latest published document of ``kind``."""
        return f"{self.prefix}definitions:{kind}"

    def publish(self, kind: str, document: Mapping[str, Any], version: str) -> int | None:
        """Share an accepted document; its publish number, or None if Redis is unreachable."""
        if not self.fallback.available():
            self.fallback.skipped()
            log.warning("redis unreachable: %s %s not shared with other replicas", kind, version)
            return None
        body = orjson.dumps(dict(document), option=orjson.OPT_NON_STR_KEYS)
        with self._lock:
            try:
                seq = int(
                    self._script(
                        keys=[self.counter, self.key(kind), self.channel],
                        args=[version, body, kind],
                    )
                )
            except Exception as exc:  # Redis down: this replica keeps its definitions
                self.fallback.failed(exc)
                log.warning("%s %s not shared with other replicas: %s", kind, version, exc)
                return None
            self._mark(kind, seq)  # our files hold it already: not adopted back
        log.info("published %s %s as number %d", kind, version, seq)
        return seq

    def start(self) -> None:
        """Adopt newer published definitions now, then follow announcements in a thread."""
        if self._started:
            return
        self._started = True
        if self.fallback.available():
            try:
                self.adopt_all()
            except Exception as exc:  # Redis down: the listener retries
                self.fallback.failed(exc)
        self._listener.start()

    def stop(self) -> None:
        """Stop following announcements."""
        self._listener.stop()
        self._started = False

    def adopt_all(self) -> None:
        """Adopt every kind whose published document is newer than ours."""
        for kind in self.appliers:
            self.adopt(kind)

    def adopt(self, kind: str) -> bool:
        """Apply the published ``kind`` if newer than ours; True when it was accepted."""
        with self._lock:
            found = self.client.hmget(self.key(kind), "seq", "version", "document")
            if found[0] is None:
                return False
            seq, version = int(found[0]), found[1].decode()
            if seq <= self.seen.get(kind, 0):
                return False
            document = orjson.loads(found[2])
            accepted = self._apply(kind, document)
            if accepted:
                log.info("adopted published %s %s (number %d)", kind, version, seq)
            else:  # tried once per published number, so logged once
                log.warning(
                    "published %s %s (number %d) refused here; previous definitions stay live",
                    kind, version, seq,
                )  # fmt: skip
            self._mark(kind, seq)
            return accepted

    def _apply(self, kind: str, document: dict[str, Any]) -> bool:
        apply = self.appliers[kind]
        try:
            return apply(document, True)
        except OSError as exc:  # e.g. a read-only project folder: serve it, unwritten
            log.warning("could not write the published %s to the project files: %s", kind, exc)
            return apply(document, False)

    def _announced(self, data: bytes) -> None:
        kind = data.decode()
        if kind in self.appliers:
            self.adopt(kind)

    def _read_record(self) -> dict[str, int]:
        try:
            loaded = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): int(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}

    def _mark(self, kind: str, seq: int) -> None:
        self.seen[kind] = seq
        try:
            self.record.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.record.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.seen, sort_keys=True))
            os.replace(tmp, self.record)
        except OSError as exc:  # a read-only folder: adopted again at the next start
            log.warning("could not record published definitions in %s: %s", self.record, exc)


def make_shared_definitions(
    redis_url: str,
    prefix: str,
    root: str | Path,
    appliers: Mapping[str, Apply],
    options: RedisOptions | None = None,
) -> SharedDefinitions | None:
    """Definitions shared through Redis when a URL is set, else None (files only)."""
    if not redis_url:
        return None
    return SharedDefinitions(connect(redis_url, options), prefix, root, appliers)
