"""Exposure logging: every hashed experiment assignment becomes an ``exposure`` event.

The evaluation core reports an :class:`~tailorkit.evaluate.ExposureRecord`
(with its propensity) through a per-context callback.  :class:`ExposureLog`
only appends it to a bounded queue on the request path; a background thread
turns queued records into decision-log events (shaped as
:func:`tailorkit.decide.log.exposure_event` builds them) and hands them to a
sink, in the server one store transaction every 0.5 s.  Logging never slows down or
fails an evaluation: a full queue drops (and counts) records; a batch a failing
sink refused is logged and sent again at the next flush.

Event ids are deterministic per (UTC day, user, experiment, variation, hash
value, feature), so the many evaluations of one user on one day store one
exposure: the store deduplicates ids, and the log skips ids it has already
queued today.

>>> sent = []
>>> log = ExposureLog(sent.extend)
>>> from tailorkit.evaluate import Evaluator
>>> ev = Evaluator({"f": {"rules": [{"key": "t", "variations": [0, 1], "hashVersion": 2}]}})
>>> ctx = ev.context({"id": "u1"}, on_exposure=log.callback(user_id="u1"))
>>> _ = ev.eval_feature("f", ctx)
>>> log.flush()
1
>>> sent[0]["properties"]["key"], sent[0]["properties"]["propensity"]
('t', 0.5)
"""

from __future__ import annotations

import collections
import logging
import threading
import uuid
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Future
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

from prometheus_client import Counter

from tailorkit.decide.log import exposure_event
from tailorkit.evaluate import ExposureRecord
from tailorkit.evaluate.context import ExposureCallback, hash_string

__all__ = ["EXPOSURE_SOURCE", "ExposureLog", "exposure_event_for"]

log = logging.getLogger(__name__)

#: ``source`` of exposure events in the events table
EXPOSURE_SOURCE = "decision"
EXPOSURES = Counter(
    "tailorkit_exposures_total", "Exposure events by outcome (queued, sent, duplicate, dropped)",
    ["outcome"],
)  # fmt: skip
_QUEUED, _DROPPED = EXPOSURES.labels("queued"), EXPOSURES.labels("dropped")
_ID_NAMESPACE = uuid.UUID("5f0b1c57-6a52-4d8e-9d3c-7c1e2f3a4b5c")
_MAX_SEEN = 500_000  # ids remembered per day before the memory is reset

#: What a sink receives: a batch of event dicts; it may return a future.
Sink = Callable[[list[dict[str, Any]]], object]
_Queued = tuple[Any, ...]  # a record's as_tuple(), user id, anonymous id, datetime


def exposure_event_for(
    record: ExposureRecord,
    *,
    user_id: str | None,
    anonymous_id: str | None,
    timestamp: datetime,
    hide_hash_values_of: Collection[str] = (),
) -> dict[str, Any]:
    """The decision-log event of one exposure record.

    Without a user or anonymous id the hash value stands in as the anonymous
    id (the event store needs one of them).  Hash values of attributes named
    in ``hide_hash_values_of`` (personal data such as ``email``) are left
    out: the event's ids identify the user already.

    >>> rec = ExposureRecord("exp", 1, "b", "id", "u1", "f", 0.25, 0.5)
    >>> e = exposure_event_for(rec, user_id=None, anonymous_id=None,
    ...                        timestamp=datetime(2026, 1, 2, tzinfo=UTC))
    >>> e["anonymous_id"], e["properties"]["variation_key"], e["properties"]["feature"]
    ('u1', 'b', 'f')
    """
    identity = _identity(record, user_id, anonymous_id, timestamp)
    return exposure_event(
        kind="bandit" if record.leaf_id is not None else "experiment",
        key=record.experiment_key,
        variation=record.variation_id,
        propensity=record.propensity,
        user_id=user_id,
        # without a user or anonymous id the hash value stands in (as in the id)
        anonymous_id=anonymous_id if user_id or anonymous_id else hash_string(record.hash_value),
        variation_key=record.variation_key,
        timestamp=timestamp,
        event_id=str(uuid.uuid5(_ID_NAMESPACE, identity)),
        hash_attribute=record.hash_attribute,
        hash_value=None if record.hash_attribute in hide_hash_values_of else record.hash_value,
        feature=record.feature_key,
        enrollment_probability=record.enrollment_probability,
        bucket=record.bucket,
        sticky_bucket_used=record.sticky_bucket_used or None,
        segment=None if record.leaf_id is None else str(record.leaf_id),
        model_version=None if record.bandit_version is None else str(record.bandit_version),
    )


def _identity_parts(
    record: ExposureRecord, user_id: str | None, anonymous_id: str | None
) -> tuple[str, ...]:
    """What makes an exposure the same one within a day."""
    hash_text = hash_string(record.hash_value)
    anonymous = anonymous_id if user_id or anonymous_id else hash_text  # as in the event
    return (
        user_id or "", anonymous or "", record.feature_key or "",
        record.experiment_key, record.variation_key, record.hash_attribute, hash_text,
    )  # fmt: skip


def _identity(
    record: ExposureRecord, user_id: str | None, anonymous_id: str | None, timestamp: datetime
) -> str:
    """What makes an exposure the same one (its event id is derived from this)."""
    day = timestamp.date().isoformat()
    return "\x1f".join((day, *_identity_parts(record, user_id, anonymous_id)))


class ExposureLog:
    """A bounded queue of exposures, flushed in batches by a background thread.

    ``sink`` receives lists of at most ``batch_size`` events; in the server
    it stores them, one transaction per list.
    Call :meth:`start` to flush every ``flush_seconds`` and :meth:`stop` to
    flush what is left; :meth:`flush` sends now (tests, shutdown).
    """

    def __init__(
        self,
        sink: Sink,
        *,
        flush_seconds: float = 0.5,  # short stalls of the request path (see ExposureLogger)
        batch_size: int = 10_000,
        max_pending: int = 100_000,
        hide_hash_values_of: Iterable[str] = (),
    ) -> None:
        self.sink = sink
        self.flush_seconds = flush_seconds
        self.batch_size = max(1, batch_size)
        self.max_pending = max_pending
        self.hide_hash_values_of = frozenset(hide_hash_values_of)
        self._queue: collections.deque[_Queued] = collections.deque()
        self._flush_lock = threading.RLock()  # a sink's future may call back at once
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: set[tuple[Any, ...]] = set()
        self._refused: list[dict[str, Any]] = []  # events the sink refused, sent again next
        self._seen_day: date | None = None
        self._duplicates = 0

    # ------------------------------------------------------------ request path

    def record(
        self, record: ExposureRecord, user_id: str | None = None, anonymous_id: str | None = None
    ) -> None:
        """Queue one exposure, unless it repeats one queued today (cheap; never raises).

        Most evaluations repeat an exposure already logged today: they are
        skipped here, so they neither wait in the queue (where the garbage
        collector would scan them) nor cost the flusher anything.
        """
        at = datetime.now(UTC)
        key = self._seen_key(record, user_id, anonymous_id, at)
        if key is None:
            self._duplicates += 1  # added to the counter at the next flush
            return
        if len(self._queue) >= self.max_pending:
            self._seen.discard(key)  # a later evaluation may log it
            _DROPPED.inc()
            return
        # one flat tuple of the record's fields: the garbage collector stops tracking it at
        # its first look, while a record (or a tuple holding one) waits to be scanned in
        # every collection until the flush (see ExposureRecord.as_tuple)
        self._queue.append((*record.as_tuple(), user_id, anonymous_id, at))  # counted when drained
        if len(self._queue) >= self.max_pending // 2:
            self._wake.set()

    def callback(
        self, user_id: str | None = None, anonymous_id: str | None = None
    ) -> ExposureCallback:
        """An exposure callback for one request's context, bound to its user.

        >>> ExposureLog(print).callback(user_id="u1").__name__
        'on_exposure'
        """

        def on_exposure(record: ExposureRecord) -> None:
            self.record(record, user_id, anonymous_id)

        return on_exposure

    @property
    def pending(self) -> int:
        """Exposures queued and not yet handed to the sink."""
        return len(self._queue)

    # ------------------------------------------------------------- background

    def flush(self) -> int:
        """Send everything queued now (and batches the sink refused before); returns the
        number of events handed to the sink."""
        with self._flush_lock:
            events, self._refused = self._refused + self._drain(), []
            for start in range(0, len(events), self.batch_size):
                batch = events[start : start + self.batch_size]
                if not self._send(batch):  # the sink is failing: the rest waits with it
                    self._keep(events[start:])
                    return start
            return len(events)

    def start(self) -> None:
        """Start the background flusher."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="tk-flag-exposures", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the flusher and send what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # keep flushing later batches
                log.exception("flushing exposures failed")

    def _drain(self) -> list[dict[str, Any]]:
        """Turn queued records into events (and count them as queued: a counter's lock on
        the request path costs more than the rest of a record's queueing)."""
        events: list[dict[str, Any]] = []
        duplicates, self._duplicates = self._duplicates, 0
        EXPOSURES.labels("duplicate").inc(duplicates)
        queued = 0
        while self._queue:
            *fields, user_id, anonymous_id, at = self._queue.popleft()
            record = ExposureRecord(*fields)
            queued += 1
            try:
                event = exposure_event_for(
                    record,
                    user_id=user_id,
                    anonymous_id=anonymous_id,
                    timestamp=at,
                    hide_hash_values_of=self.hide_hash_values_of,
                )
            except ValueError:  # e.g. a propensity outside [0, 1] from a malformed rule
                log.warning("exposure of %s not logged", record.experiment_key, exc_info=True)
                _DROPPED.inc()
                continue
            events.append(event)
        _QUEUED.inc(queued)
        return events

    def _seen_key(
        self, record: ExposureRecord, user_id: str | None, anonymous_id: str | None, at: datetime
    ) -> tuple[Any, ...] | None:
        """The record's key in today's seen set, now added; ``None`` when it was there."""
        day = at.date()
        if day != self._seen_day or len(self._seen) >= _MAX_SEEN:
            self._seen, self._seen_day = set(), day
        key = _identity_parts(record, user_id, anonymous_id)  # the seen set is one day's
        if key in self._seen:
            return None
        self._seen.add(key)
        return key

    def _send(self, events: list[dict[str, Any]]) -> bool:
        try:
            result = self.sink(events)
        except Exception:
            log.exception("exposure sink failed; %d events tried again later", len(events))
            EXPOSURES.labels("failed").inc(len(events))
            return False
        EXPOSURES.labels("sent").inc(len(events))
        if isinstance(result, Future):
            result.add_done_callback(partial(self._retry_if_failed, events))
        return True

    def _keep(self, events: list[dict[str, Any]]) -> None:
        """Keep events the sink refused for the next flush, up to ``max_pending``.

        They are marked as queued today, so no later evaluation would log them:
        dropping them would lose the user's exposure for the day. Past the bound
        the oldest go (counted as dropped).
        """
        kept = events[-self.max_pending :] if self.max_pending > 0 else []
        _DROPPED.inc(len(events) - len(kept))
        self._refused = kept + self._refused[: max(0, self.max_pending - len(kept))]

    def _retry_if_failed(self, events: list[dict[str, Any]], future: Future[Any]) -> None:
        """Storing is asynchronous: a failed batch is kept for the next flush, reported."""
        exc = future.exception()
        if exc is not None:
            log.error("storing %d exposure events failed (tried again later): %s", len(events), exc)
            EXPOSURES.labels("failed").inc(len(events))
            with self._flush_lock:
                self._keep(events)
