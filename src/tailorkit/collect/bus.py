"""The event bus: validated batches through a Redis Stream to ``tailorkit worker`` s.

With ``bus`` in ``tailorkit.yaml`` a server still parses and validates each
request (the same :class:`~tailorkit.collect.pipeline.Collector` group commit,
so the answer names every rejected event), but instead of writing the
warehouse it appends the group's validated :class:`~tailorkit.collect.pipeline.Part` s
to a Redis Stream (``XADD``) and answers once Redis has accepted them. What
goes on the stream is already pseudonymized: no raw PII in Redis or on disk.

``tailorkit worker`` processes form a consumer group: each reads entries
(``XREADGROUP``), stores them with :meth:`Collector.store_parts` (deduplicated
by ``event_id`` against the store, atomically across workers), updates online
profiles and segments, and only then acknowledges (``XACK`` and ``XDEL``).
Delivery is at least once: a worker that dies leaves its entries pending, and
another takes them over (``XAUTOCLAIM``) once they have been idle for
``claim_idle_seconds``; the store's dedup makes the second delivery harmless.

Profiles are applied once per entry, whatever crashes when: the profile
writes and an "applied" marker (a digest of the entry, so a batch pushed
twice from a spool has one marker) are one Redis transaction
(:meth:`~tailorkit.segment.online.SegmentEngine.process_once`). An entry
without its marker is applied with the events it stored: the store's fresh
events, plus duplicates stored from this very batch (same ``received_at``
and ``source``: its first delivery stored them and died before the profiles);
duplicates of other batches (a client's retry) were applied with those.

When Redis is unreachable the server appends the encoded parts to a local
:class:`Spool` (an append-only file in ``.tailorkit/spool/`` with ``fsync``)
and acknowledges; a background thread pushes the spool to the stream when
Redis answers again (also spool files left by a crashed server).

One entry is one Arrow IPC stream: the accepted events as rows, and the
source, the server's receive time and the rejected/duplicate/dropped indexes
(for the data-quality counts) in the schema metadata.

>>> from datetime import UTC, datetime
>>> from tailorkit.collect.validate import Validated
>>> from tailorkit.store.warehouse import EVENT_ARROW_SCHEMA
>>> part = Part("http", datetime(2026, 1, 1, tzinfo=UTC),
...             Validated(EVENT_ARROW_SCHEMA.empty_table(), [], [(0, "type: required")]))
>>> back = decode_part(encode_part(part))
>>> back.source, back.received.year, back.validated.rejected
('http', 2026, [(0, 'type: required')])
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import signal
import socket
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tailorkit import metrics
from tailorkit.collect.pipeline import Collector, Part
from tailorkit.collect.validate import Validated, identities_from
from tailorkit.project.loader import BusSettings, Project
from tailorkit.store.redis_fallback import RedisOptions, connect
from tailorkit.store.warehouse import EVENT_ARROW_SCHEMA, Warehouse

if TYPE_CHECKING:
    from tailorkit.segment.online import SegmentEngine

log = logging.getLogger(__name__)
FORMAT = b"tailorkit-part-1"
FIELD = b"part"
_HEADER = struct.Struct(">II")  # record length, CRC-32 of the record
SPOOL_DIR = Path(".tailorkit") / "spool"
#: Tests only: ``n`` makes a worker SIGKILL itself right after its n-th store commit,
#: before it updates profiles (the crash window that :meth:`Worker.handle` must survive).
KILL_AFTER_STORE_ENV = "TAILORKIT_TEST_KILL_AFTER_STORE"


def bus_options(settings: BusSettings, blocking: bool = False) -> RedisOptions:
    """Timeouts of the bus's clients: ``timeout_ms``, plus ``block_ms`` for a worker's reads."""
    timeout = settings.timeout_ms / 1000
    extra = settings.block_ms / 1000 if blocking else 0.0
    return RedisOptions(timeout=timeout + extra, connect_timeout=timeout)


# -- entries -----------------------------------------------------------------------


def encode_part(part: Part) -> bytes:
    """One part as an Arrow IPC stream (events as rows, the rest as metadata)."""
    v = part.validated
    meta = {
        b"format": FORMAT,
        b"source": part.source.encode(),
        b"received": part.received.isoformat().encode(),
        b"counts": orjson.dumps(
            {
                "accepted_index": v.accepted_index,
                "rejected": v.rejected,
                "duplicate_index": v.duplicate_index,
                "consent_dropped": v.consent_dropped,
            }
        ),
    }
    table = v.accepted.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def decode_part(blob: bytes) -> Part:
    """The inverse of :func:`encode_part`; ``ValueError`` if ``blob`` is not one."""
    try:
        table = pa.ipc.open_stream(blob).read_all()
    except pa.ArrowInvalid as exc:
        raise ValueError(f"not an encoded part: {exc}") from exc
    meta = table.schema.metadata or {}
    if meta.get(b"format") != FORMAT:
        raise ValueError(f"unknown entry format {meta.get(b'format')!r}")
    counts = orjson.loads(meta[b"counts"])
    events = table.replace_schema_metadata(None).cast(EVENT_ARROW_SCHEMA)
    validated = Validated(
        accepted=events,
        accepted_index=counts["accepted_index"],
        rejected=[(int(i), str(r)) for i, r in counts["rejected"]],
        duplicate_index=counts["duplicate_index"],
        consent_dropped=counts["consent_dropped"],
        identities=identities_from(events),
    )
    return Part(
        meta[b"source"].decode(), datetime.fromisoformat(meta[b"received"].decode()), validated
    )


# -- the local spool -----------------------------------------------------------------


class Spool:
    """Append-only files of encoded parts, written while Redis is unreachable.

    Each record is its length, its CRC-32 and the bytes; :meth:`append`
    returns after ``fsync``, so an acknowledged batch survives a crash of the
    server (not a loss of the disk). Each server process writes its own file,
    locked with ``flock``; :meth:`drain` also takes over files whose process
    is gone. A torn last record (a crash during the write) was never
    acknowledged and is dropped.

    >>> import tempfile
    >>> spool = Spool(Path(tempfile.mkdtemp()))
    >>> spool.append([b"one", b"two"]); spool.pending()
    True
    >>> pushed = []; spool.drain(pushed.append), pushed, spool.pending()
    (2, [b'one', b'two'], False)
    >>> spool.close()
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._rotations = 0
        self._held: dict[Path, int] = {}  # files this process holds the lock of
        self._active = self._open(self.folder / f"spool-{self._name}.log")
        self._size = 0

    def _open(self, path: Path) -> int:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._held[path] = fd
        return fd

    def append(self, records: list[bytes]) -> None:
        """Write records and ``fsync``; only then may the batch be acknowledged."""
        data = b"".join(_HEADER.pack(len(r), zlib.crc32(r)) + r for r in records)
        with self._lock:
            os.write(self._active, data)
            os.fsync(self._active)
            self._size += len(data)
            metrics.BUS_SPOOLED.inc(len(records))

    def pending(self) -> bool:
        """Whether this process has records not yet pushed."""
        return self._size > 0 or len(self._held) > 1

    def drain(self, push: Callable[[bytes], None]) -> int:
        """Push every record (own and orphaned files), deleting files once pushed.

        If ``push`` raises, the records not pushed stay (rewritten) and the
        error propagates; pushed ones may be pushed again later, which the
        workers' dedup makes harmless.
        """
        self._rotate()
        pushed = 0
        for path in sorted(self.folder.glob("*.log")):
            fd = self._held.get(path)
            if fd is None:
                fd = self._adopt(path)
                if fd is None:
                    continue  # a live server's own spool
            if fd == self._active:
                continue
            pushed += self._push_file(path, fd, push)
        return pushed

    def _rotate(self) -> None:
        with self._lock:
            if self._size == 0:
                return
            old = next(p for p, fd in self._held.items() if fd == self._active)
            self._rotations += 1
            drained = self.folder / f"drain-{self._name}-{self._rotations}.log"
            os.rename(old, drained)  # the lock stays with the open file
            self._held[drained] = self._held.pop(old)
            self._active = self._open(old)
            self._size = 0

    def _adopt(self, path: Path) -> int | None:
        """Lock ``path`` if no live process holds it; ``None`` if one does or it is gone."""
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # drained and deleted, or rewritten, between the open and the lock
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise FileNotFoundError(path)
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            return None
        self._held[path] = fd
        return fd

    def _push_file(self, path: Path, fd: int, push: Callable[[bytes], None]) -> int:
        records = list(read_records(path))
        for n, record in enumerate(records):
            try:
                push(record)
            except Exception:
                _rewrite(path, records[n:])
                # the lock was on the replaced file: lock the new one (or leave it to
                # whoever took it meanwhile; records pushed twice are deduplicated)
                os.close(self._held.pop(path))
                self._adopt(path)
                raise
        path.unlink(missing_ok=True)
        os.close(self._held.pop(path))
        return len(records)

    def close(self) -> None:
        """Release the files; an empty own file is removed."""
        with self._lock:
            for path, fd in list(self._held.items()):
                if fd == self._active and self._size == 0:
                    path.unlink(missing_ok=True)
                os.close(fd)
            self._held.clear()


def read_records(path: Path) -> Iterator[bytes]:
    """Records of a spool file, stopping at a torn or corrupt tail."""
    data = path.read_bytes()
    offset = 0
    while offset + _HEADER.size <= len(data):
        size, crc = _HEADER.unpack_from(data, offset)
        record = data[offset + _HEADER.size : offset + _HEADER.size + size]
        if len(record) < size or zlib.crc32(record) != crc:
            break
        yield record
        offset += _HEADER.size + size
    if offset < len(data):
        log.warning("%s: %d bytes after the last whole record ignored", path, len(data) - offset)


def _rewrite(path: Path, records: list[bytes]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        out.write(b"".join(_HEADER.pack(len(r), zlib.crc32(r)) + r for r in records))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)  # keeps the name; the lock on the old inode still excludes others


# -- the server side -------------------------------------------------------------------


class Publisher:
    """``Collector.publish`` for a server: ``XADD`` the parts, or spool them to disk.

    While the spool holds records, new parts go to the spool too (so the
    stream receives batches in order once Redis is back); a background
    thread pushes the spool every ``retry_seconds``.
    """

    def __init__(self, settings: BusSettings, spool_dir: Path, retry_seconds: float = 0.5) -> None:
        self.settings = settings
        self.redis = connect(settings.redis_url, bus_options(settings))
        self.spool = Spool(spool_dir)
        self.retry_seconds = retry_seconds
        self.healthy = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, parts: list[Part]) -> None:
        """Durable when this returns: in Redis, or fsynced to the spool."""
        import redis

        records = [encode_part(p) for p in parts]
        if self.healthy and not self.spool.pending():
            try:
                self._xadd(records)
                return
            except redis.RedisError as exc:
                self.healthy = False
                log.warning("event bus unreachable, spooling to disk: %s", exc)
        self.spool.append(records)

    def _xadd(self, records: list[bytes]) -> None:
        with self.redis.pipeline(transaction=False) as pipe:
            for record in records:
                pipe.xadd(self.settings.stream, {FIELD: record})
            pipe.execute()
        metrics.BUS_PUBLISHED.inc(len(records))

    def start(self) -> None:
        """Start the drain thread (it also takes over spools of crashed servers)."""
        self._thread = threading.Thread(target=self._run, name="tk-bus-drain", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop draining; what is still spooled stays on disk for the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.spool.close()

    def _run(self) -> None:
        import redis

        while not self._stop.wait(self.retry_seconds):
            try:
                pushed = self.spool.drain(lambda record: self._xadd([record]))
            except redis.RedisError:
                continue
            except Exception:
                log.exception("draining the spool failed")
                continue
            if pushed:
                log.info("pushed %d spooled batches to the event bus", pushed)
            self.healthy = True

    def status(self) -> dict[str, Any]:
        """For ``/healthz``: whether Redis took the last batch and whether a spool is pending."""
        return {
            "stream": self.settings.stream,
            "redis": self.healthy,
            "spooled": self.spool.pending(),
        }


def bus_publisher(project: Project, collector: Collector) -> Publisher | None:
    """With ``bus`` configured: a publisher hooked into the server's ``collector``."""
    bus = project.settings.bus
    if bus is None:
        return None
    publisher = Publisher(bus, project.root / SPOOL_DIR)
    collector.publish = publisher.publish
    return publisher


# -- the worker ------------------------------------------------------------------------


@dataclass
class WorkerStats:
    """What a worker has done since it started."""

    entries: int = 0
    events_stored: int = 0
    duplicates: int = 0
    claimed: int = 0
    dead_letters: int = 0
    errors: int = 0
    started: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "entries": self.entries,
            "events_stored": self.events_stored,
            "duplicates": self.duplicates,
            "claimed": self.claimed,
            "dead_letters": self.dead_letters,
            "errors": self.errors,
            "seconds": round(time.time() - self.started, 3),
        }


class Worker:
    """One member of the consumer group: read, store, update profiles, acknowledge.

    ``collector`` stores; ``profiles`` (if given) applies each entry to the
    online profiles exactly once (else the collector's ``on_stored`` hook sees
    the fresh events). Call :meth:`run` with an event that, once set
    (SIGTERM), ends the loop after the batch in hand is stored and acknowledged.
    """

    def __init__(
        self,
        settings: BusSettings,
        collector: Collector,
        name: str = "",
        profiles: SegmentEngine | None = None,
    ) -> None:
        self.settings = settings
        self.collector = collector
        self.profiles = profiles
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.redis = connect(settings.redis_url, bus_options(settings, blocking=True))
        self._kill_after = int(os.environ.get(KILL_AFTER_STORE_ENV) or 0)
        self.stats = WorkerStats()
        self._own_pending = True  # first re-read what this consumer name left unacknowledged
        self._next_claim = 0.0

    def ensure_group(self) -> None:
        """Create the stream and the group (reading from the start) if missing."""
        import redis

        try:
            self.redis.xgroup_create(self.settings.stream, self.settings.group, "0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def run(self, stop: threading.Event) -> None:
        """Process entries until ``stop`` is set; Redis or store errors are retried."""
        import redis

        self.ensure_group()
        while not stop.is_set():
            try:
                self.step()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("event bus unreachable: %s", exc)
                self._own_pending = True  # maybe stored but not acknowledged: read them again
                stop.wait(1.0)
            except Exception:
                self.stats.errors += 1
                metrics.ERRORS.labels("worker").inc()
                log.exception("worker step failed; the entries stay pending and are retried")
                self._own_pending = True
                stop.wait(1.0)

    def step(self) -> int:
        """Read one batch of entries and process it; returns how many were read."""
        entries = self._read()
        if entries:
            self.handle(entries)
        return len(entries)

    def _read(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        s = self.settings
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + max(0.5, s.claim_idle_seconds / 2)
            reply = self.redis.xautoclaim(
                s.stream, s.group, self.name, int(s.claim_idle_seconds * 1000), "0-0", s.read_count
            )
            claimed = [e for e in reply[1] if e[1]]
            if claimed:
                self.stats.claimed += len(claimed)
                log.info("took over %d entries of a stopped worker", len(claimed))
                return claimed
        if self._own_pending:
            reply = self.redis.xreadgroup(s.group, self.name, {s.stream: "0"}, s.read_count)
            mine = [e for e in reply[0][1] if e[1]] if reply else []
            if mine:
                return mine
            self._own_pending = False
        reply = self.redis.xreadgroup(
            s.group, self.name, {s.stream: ">"}, s.read_count, block=s.block_ms
        )
        return list(reply[0][1]) if reply else []

    def handle(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Store the entries' events, then acknowledge and delete the entries."""
        parts: dict[str, Part] = {}  # by marker: a digest of the entry
        dead: list[tuple[bytes, dict[bytes, bytes]]] = []
        for entry_id, fields in entries:
            try:
                parts[hashlib.sha256(fields[FIELD]).hexdigest()[:32]] = decode_part(fields[FIELD])
            except (KeyError, ValueError) as exc:
                log.error("entry %s is unreadable (%s): moved to the dead letters", entry_id, exc)
                dead.append((entry_id, fields))
        if parts:
            dups = self.collector.store_parts(list(parts.values()), notify=self.profiles is None)
            accepted = sum(p.validated.accepted.num_rows for p in parts.values())
            self.stats.duplicates += len(dups)
            self.stats.events_stored += accepted - len(dups)
            metrics.BUS_EVENTS_STORED.inc(accepted - len(dups))
            self._fault_point(accepted - len(dups))
            if self.profiles is not None:
                self._apply_profiles(self.profiles, parts, dups)
        ids = [entry_id for entry_id, _ in entries]
        with self.redis.pipeline(transaction=True) as pipe:
            for _, fields in dead:
                pipe.xadd(f"{self.settings.stream}:dead", fields)
            pipe.xack(self.settings.stream, self.settings.group, *ids)
            pipe.xdel(self.settings.stream, *ids)
            pipe.execute()
        self.stats.entries += len(entries)
        self.stats.dead_letters += len(dead)

    def _fault_point(self, stored: int) -> None:
        """Tests: die here (SIGKILL) after the configured number of commits that stored events."""
        if self._kill_after and stored:
            self._kill_after -= 1
            if self._kill_after == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    def _apply_profiles(
        self, engine: SegmentEngine, parts: dict[str, Part], dups: frozenset[str]
    ) -> None:
        """Apply the entries not yet marked applied, with the events each stored."""
        for _ in range(10):  # a concurrent worker marking some of them: look again
            done = engine.store.applied(list(parts))
            todo = {m: p for m, p in parts.items() if m not in done}
            if not todo:
                return
            events = own_events(list(todo.values()), dups, self.collector.warehouse)
            if engine.process_once(events, list(todo)):
                return
        raise RuntimeError("profile markers kept changing; the entries stay pending")


def own_events(parts: list[Part], dups: frozenset[str], warehouse: Warehouse) -> pa.Table:
    """The events ``parts`` stored: fresh ones, and duplicates whose stored row came from them.

    A duplicate stored with the same ``received_at`` and ``source`` as in the
    part was stored by this very batch (an earlier delivery of it); another
    one came from an other batch (a retry of the client) and is left out.
    """
    events = pa.concat_tables([p.validated.accepted for p in parts])
    if not dups:
        return events
    ids = events["event_id"]
    is_dup = pc.is_in(ids, pa.array(list(dups), pa.string()))
    stored = _stored_rows(warehouse, list(dups))
    keep = [
        not dup or stored.get(str(event_id)) == (received, source)
        for dup, event_id, received, source in zip(
            is_dup.to_pylist(),
            ids.to_pylist(),
            events["received_at"].to_pylist(),
            events["source"].to_pylist(),
            strict=True,
        )
    ]
    return events.filter(pa.array(keep, pa.bool_()))


def _stored_rows(warehouse: Warehouse, event_ids: list[str]) -> dict[str, tuple[Any, str]]:
    """``received_at`` and ``source`` of stored events, by id."""
    staging = ibis.memtable(pa.table({"event_id": pa.array(event_ids, pa.string())}))
    stored = warehouse.events
    found = stored.semi_join(staging, stored.event_id == staging.event_id).select(
        "event_id", "received_at", "source"
    )
    with warehouse.lock:
        table = warehouse.con.to_pyarrow(found)
    return {row["event_id"]: (row["received_at"], row["source"]) for row in table.to_pylist()}
