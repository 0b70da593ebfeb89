"""The collector: raw batch → validated → durably stored, with per-event answers.

HTTP requests go through :meth:`Collector.submit`: a single writer thread
takes every request waiting in the queue, validates them together and stores
them in one transaction (group commit), then answers each request. An event is
acknowledged only after that transaction has committed, so a crash can lose
only unacknowledged events; re-sending them is safe because ids are
deduplicated against the store.

With an event bus (:mod:`tailorkit.collect.bus`), ``publish`` replaces the
store step: the validated :class:`Part` s of a group go to the bus, and
``tailorkit worker`` stores them with :meth:`Collector.store_parts`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tailorkit import metrics
from tailorkit.collect.jsonlines import EncodedBatch, JsonLinesReader, decode_batches, encode_items
from tailorkit.collect.validate import Validated, Validator
from tailorkit.project.loader import QualitySettings, Settings
from tailorkit.store.warehouse import INGEST_STATS_SCHEMA, Warehouse

log = logging.getLogger(__name__)

ACCEPTED, DUPLICATE, REJECTED, CONSENT_DROPPED = (
    "accepted",
    "duplicate",
    "rejected",
    "consent_dropped",
)
SKEW_FLAG_MS = 60_000
_STATS_ARROW_SCHEMA = INGEST_STATS_SCHEMA.to_pyarrow()  # built once: Ibis's conversion is slow


@dataclass
class BatchResult:
    """Per-event answer for one request or file chunk; indexes are the caller's."""

    statuses: list[str]
    errors: list[dict[str, Any]] = field(default_factory=list)

    def count(self, status: str) -> int:
        """Number of events with ``status``."""
        return sum(1 for s in self.statuses if s == status)

    def to_dict(self) -> dict[str, Any]:
        """JSON answer: counts, one status per event, and the rejected events' reasons."""
        return {
            ACCEPTED: self.count(ACCEPTED),
            "duplicates": self.count(DUPLICATE),
            REJECTED: self.count(REJECTED),
            CONSENT_DROPPED: self.count(CONSENT_DROPPED),
            "statuses": self.statuses,
            "errors": self.errors,
        }


@dataclass
class Part:
    """The validated events of one source in one group: what is stored or published."""

    source: str
    received: datetime
    validated: Validated


@dataclass
class _Pending:
    raw: pa.Table | None
    source: str
    future: Future[BatchResult]
    encoded: EncodedBatch | None = None

    @property
    def size(self) -> int:
        return self.encoded.count if self.encoded is not None else _raw(self).num_rows


class Collector:
    """Validate and store events; thread-safe through a group-commit writer.

    ``on_stored`` is called in the writer thread with each committed batch of
    new events (the online profile executor hooks in there).
    """

    def __init__(
        self,
        warehouse: Warehouse,
        settings: Settings,
        on_stored: Callable[[pa.Table], None] | None = None,
        publish: Callable[[list[Part]], None] | None = None,
    ) -> None:
        self.warehouse = warehouse
        self.settings = settings
        self.validator = Validator(settings.pii)
        self.reader = JsonLinesReader(settings.limits)
        self.on_stored = on_stored
        # Set (event bus): validated parts go there instead of the store; durable once it returns.
        self.publish = publish
        # With ``publish``, called (in the writer) with each published group's accepted events:
        # what this process would have passed to ``on_stored`` (before the store's dedup).
        self.on_published: Callable[[pa.Table], None] | None = None
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.max_group_events = 20_000

    # -- synchronous path (files, tests) ------------------------------------
    def ingest(self, raw: pa.Table, source: str) -> BatchResult:
        """Validate and store one raw batch now (no writer thread)."""
        return self._commit([_Pending(raw, source, Future())])[0]

    def ingest_items(self, items: list[Any], source: str) -> BatchResult:
        """Validate and store parsed JSON items now (no writer thread)."""
        encoded = encode_items(items, self.settings.limits)
        return self._commit([_Pending(None, source, Future(), encoded)])[0]

    # -- asynchronous path (HTTP) -------------------------------------------
    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tailorkit-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Finish queued work and stop the writer thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def submit(self, raw: pa.Table, source: str) -> Future[BatchResult]:
        """Queue a raw batch; the future resolves once it is durably stored."""
        pending = _Pending(raw, source, Future())
        self._queue.put(pending)
        return pending.future

    def submit_items(self, items: list[Any], source: str) -> Future[BatchResult]:
        """Queue parsed JSON items (the HTTP path); see :meth:`submit`.

        Only one ``orjson.dumps`` per event happens here; field extraction is
        done for the whole group commit in one query in the writer.
        """
        encoded = encode_items(items, self.settings.limits)
        pending = _Pending(None, source, Future(), encoded)
        self._queue.put(pending)
        return pending.future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, stop = [first], False
            size = first.size
            while size < self.max_group_events:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
                size += item.size
            self._commit_and_answer(group)
            if stop:
                return

    def _commit_and_answer(self, group: list[_Pending]) -> None:
        try:
            results = self._commit(group)
        except Exception as exc:  # answer every waiting request, never hang them
            metrics.ERRORS.labels("writer").inc()
            log.exception("group commit failed")
            for pending in group:
                pending.future.set_exception(exc)
            return
        for pending, result in zip(group, results, strict=True):
            pending.future.set_result(result)

    # -- shared core ---------------------------------------------------------
    def _commit(self, group: list[_Pending]) -> list[BatchResult]:
        received = datetime.now(UTC)
        with metrics.INGEST_BATCH_SECONDS.time():
            self._decode(group)
            by_source: dict[str, list[int]] = {}
            for i, pending in enumerate(group):
                by_source.setdefault(pending.source, []).append(i)
            validated: list[tuple[Part, list[int], list[int]]] = []
            for source, members in by_source.items():
                raw, offsets = _concat([_raw(group[i]) for i in members])
                part = Part(source, received, self.validator.validate(raw, received, source))
                validated.append((part, members, offsets))
            parts = [part for part, _, _ in validated]
            if self.publish is not None:
                self.publish(parts)
                dups: frozenset[str] = frozenset()  # known only to the worker that stores them
                if self.on_published is not None:
                    self._published(parts)
            else:
                dups = self.store_parts(parts)
        results = [BatchResult([ACCEPTED] * p.size) for p in group]
        for part, members, offsets in validated:
            self._fill(results, members, offsets, part.validated, dups, part.source)
        return results

    def store_parts(
        self,
        parts: list[Part],
        dedup: bool = True,
        notify: bool = True,
        dedup_since: datetime | None = None,
        duplicates: frozenset[str] | None = None,
    ) -> frozenset[str]:
        """Store validated parts in one transaction, skipping ids already stored.

        Returns the skipped ids. ``notify=False`` leaves out ``on_stored``
        (``tailorkit worker`` applies profiles itself, idempotently). The
        dedup check and the insert hold the warehouse's write lock, which on
        PostgreSQL also excludes other processes (several ``tailorkit
        worker`` s), so an id is stored once.
        ``dedup=False`` is for ids minted fresh (random UUIDs) by tailorkit
        itself: the check scans every stored id, a cost that grows with the store.
        ``dedup_since`` bounds the check to events stored with a timestamp from
        then on, for ids that cannot repeat older ones (see
        :meth:`~tailorkit.store.warehouse.Warehouse.stored_ids`). ``duplicates``:
        the ids already stored, when the caller knows them (it holds
        :meth:`~tailorkit.store.warehouse.Warehouse.exclusive`); the store is not asked.
        """
        events = pa.concat_tables([p.validated.accepted for p in parts])
        identities = pa.concat_tables(
            [p.validated.identities for p in parts if p.validated.identities is not None]
        )
        with self.warehouse.exclusive():
            if duplicates is not None:
                dups = duplicates
            elif dedup:
                dups = self.warehouse.stored_ids(events["event_id"], dedup_since)
            else:
                dups = frozenset()
            if dups:
                fresh = pc.invert(pc.is_in(events["event_id"], pa.array(list(dups))))
                events = events.filter(fresh)
            stats = _stats_table(parts, dups, self.settings.quality)
            self.warehouse.insert(events, identities, stats)
        if notify and self.on_stored is not None and events.num_rows:
            self.on_stored(events)
        return dups

    def _published(self, parts: list[Part]) -> None:
        assert self.on_published is not None
        events = pa.concat_tables([p.validated.accepted for p in parts])
        if events.num_rows:
            try:
                self.on_published(events)
            except Exception:  # the events are on the bus whatever happens here
                log.exception("on_published hook failed for %d events", events.num_rows)

    def _decode(self, group: list[_Pending]) -> None:
        """Turn the encoded (HTTP) requests of a group into raw batches, in one query."""
        encoded = [(p, p.encoded) for p in group if p.encoded is not None]
        raws = decode_batches(self.reader, [batch for _, batch in encoded])
        for (pending, _), raw in zip(encoded, raws, strict=True):
            pending.raw = raw

    def _fill(
        self,
        results: list[BatchResult],
        members: list[int],
        offsets: list[int],
        v: Validated,
        store_dups: frozenset[str],
        source: str,
    ) -> None:
        def locate(index: int) -> tuple[BatchResult, int]:
            k = _bisect(offsets, index)
            return results[members[k]], index - offsets[k]

        for index, reason in v.rejected:
            result, local = locate(index)
            result.statuses[local] = REJECTED
            result.errors.append({"index": local, "reason": reason})
        for index in v.duplicate_index:
            result, local = locate(index)
            result.statuses[local] = DUPLICATE
        for index in v.consent_dropped:
            result, local = locate(index)
            result.statuses[local] = CONSENT_DROPPED
        if store_dups:
            ids = v.accepted.column("event_id").to_pylist()
            for index, event_id in zip(v.accepted_index, ids, strict=True):
                if event_id in store_dups:
                    result, local = locate(index)
                    result.statuses[local] = DUPLICATE
        counts = Counter(s for i in members for s in results[i].statuses)
        for outcome, n in counts.items():
            metrics.EVENTS.labels(source, outcome).inc(n)


def _raw(pending: _Pending) -> pa.Table:
    if pending.raw is None:
        raise RuntimeError("pending request was not decoded")
    return pending.raw


def _concat(raws: list[pa.Table]) -> tuple[pa.Table, list[int]]:
    """Concatenate raw batches, renumbering ``_index`` so it is unique."""
    offsets, parts, offset = [], [], 0
    for raw in raws:
        offsets.append(offset)
        index = pa.array(range(offset, offset + raw.num_rows), pa.int64())
        parts.append(raw.set_column(0, "_index", index))
        offset += raw.num_rows
    return pa.concat_tables(parts), offsets


def _bisect(offsets: list[int], index: int) -> int:
    lo, hi = 0, len(offsets) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if offsets[mid] <= index:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _stats_table(
    parts: list[Part], store_dups: frozenset[str], quality: QualitySettings
) -> pa.Table:
    """Counts per (day, source, outcome, reason) for the data-quality report."""
    rows: Counter[tuple[date, str, str, str | None]] = Counter()
    for part in parts:
        v, source, received = part.validated, part.source, part.received
        day = received.date()
        n_dup = 0
        if store_dups:  # usually none (and never for fresh ids): no Arrow calls then
            found = pc.is_in(v.accepted["event_id"], pa.array(list(store_dups), pa.string()))
            n_dup = pc.sum(found).as_py() or 0
        rows[(day, source, ACCEPTED, None)] += v.accepted.num_rows - n_dup
        rows[(day, source, DUPLICATE, None)] += len(v.duplicate_index) + n_dup
        rows[(day, source, CONSENT_DROPPED, None)] += len(v.consent_dropped)
        for _, reason in v.rejected:
            rows[(day, source, REJECTED, reason.split(":")[0])] += 1
        if v.accepted.num_rows:
            late = pc.less(
                v.accepted["timestamp"], received - timedelta(hours=quality.late_after_hours)
            )
            rows[(day, source, "late", None)] += pc.sum(late).as_py() or 0
            skew = pc.abs(pc.fill_null(v.accepted["clock_skew_ms"], 0))
            rows[(day, source, "clock_skewed", None)] += (
                pc.sum(pc.greater(skew, SKEW_FLAG_MS)).as_py() or 0
            )
    data = [
        {"day": d, "source": s, "outcome": o, "reason": r, "n": n}
        for (d, s, o, r), n in rows.items()
        if n
    ]
    return pa.Table.from_pylist(data, schema=_STATS_ARROW_SCHEMA)
