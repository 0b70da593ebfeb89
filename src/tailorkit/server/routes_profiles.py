"""Admin routes for profiles and segments, and the online executor's life in the server.

:func:`install` builds a :class:`ProfilesService` for the app: the online
:class:`~tailorkit.segment.online.SegmentEngine` hooked into the collector,
the webhook dispatcher, and a background thread that applies window expiry
(every ``profiles.sweep_seconds``) and refreshes batch-only inputs (quality
flags, RFM, model scores) every ``refresh_seconds`` — and at once when
``tailorkit build`` publishes a new version of a model whose scores the
profiles declare (``model_score`` features). With the in-process store,
profiles are rebuilt from the warehouse when the server starts.

Routes (admin key):

* ``GET /v1/admin/segments``: definitions, online sizes and, with
  ``batch=true`` (default), the warehouse report as of ``at`` (sizes,
  ``min_users`` flags, overlap, size over ``days``);
* ``GET /v1/admin/profiles/{user_id}``: features, segments and, per segment,
  which condition parts held.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, HTTPException, Query, Request

from tailorkit.learn.artifacts import ArtifactStore
from tailorkit.learn.scores import SCORE_STEPS
from tailorkit.profile.materialized import profiles_now
from tailorkit.profile.windows import iso, to_us
from tailorkit.segment.batch import (
    has_segment_events,
    reader,
    rebuild_online,
    refresh_online,
    stored_events,
    stored_report,
    with_segments,
)
from tailorkit.segment.definitions import Definitions, parse_definitions
from tailorkit.segment.online import SegmentEngine
from tailorkit.segment.sink import ChangeSink
from tailorkit.segment.webhooks import WebhookDispatcher
from tailorkit.server.app import Admin, AppState
from tailorkit.server.latency import freeze_heap
from tailorkit.store.profiles import MemoryProfileStore, ProfileStore, RedisProfileStore
from tailorkit.store.redis_fallback import RedisOptions
from tailorkit.store.warehouse import check_id

log = logging.getLogger(__name__)
STORE_ENV = "TAILORKIT_PROFILE_STORE"
# Batch inputs are pushed into online profiles this often. It also bounds how far a
# report must bring the kept profiles forward: at a million users, 10 minutes at the
# evening peak took 3.4-4.7 s to refresh and read in four runs of five (BENCHMARKS.md).
REFRESH_SECONDS = 600.0

router = APIRouter(prefix="/v1/admin", tags=["profiles"])


def open_store(
    definitions: Definitions, raw: dict[str, Any], options: RedisOptions | None = None
) -> ProfileStore:
    """The configured profile store; Redis keys carry a fingerprint of the definitions."""
    settings = definitions.features.settings
    url = os.environ.get(STORE_ENV) or settings.store
    if url == "memory":
        return MemoryProfileStore()
    digest = hashlib.sha256(
        json.dumps({k: raw.get(k) for k in ("features", "rfm")}, sort_keys=True).encode()
    ).hexdigest()[:12]
    return RedisProfileStore.from_url(url, f"{settings.key_prefix}{digest}:", options)


class ProfilesService:
    """The online executor of one server, with its sweeper thread and webhooks."""

    def __init__(self, state: AppState) -> None:
        raw = state.project.definitions.get("segments", {})
        self.state = state
        self.definitions = parse_definitions(raw)
        self.store = open_store(self.definitions, raw, state.project.settings.redis_options)
        self.webhooks = WebhookDispatcher(
            dead_letter_path=state.project.root / "webhooks-dead-letter.jsonl"
        )
        sink = ChangeSink(self.definitions, state.collector, self.webhooks, asynchronous=True)
        self.engine = SegmentEngine(self.definitions, self.store, on_changes=sink)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        # batches stored while the start-up replay runs (None once it is done)
        self._pending: list[pa.Table] | None = []
        self._pending_lock = threading.Lock()
        self._scores_seen: tuple[str | None, ...] = ()

    def start(self, wait: float | None = None) -> None:
        """Hook into the collector, then rebuild profiles and start the sweeper in the background.

        Called before the collector's writer starts, so that every batch the
        writer commits reaches the hook. Until the replay of the stored events
        is done, those batches wait in a buffer; then the ones the replay had
        not read are applied in order and the hook applies batches directly.
        Returns when the replay is done (:attr:`ready`) or after ``wait``
        seconds (None: wait for it), so a large store does not keep the
        server from answering; decisions meanwhile see the profiles built so far.
        """
        self.webhooks.start()
        if not self.definitions.features.features:
            self.ready.set()
            return  # nothing declared: stay out of the ingestion path
        self.state.collector.on_stored = self._on_stored
        self._thread = threading.Thread(
            target=self._replay_then_run, name="tk-profiles", daemon=True
        )
        self._thread.start()
        self.ready.wait(wait)

    def _on_stored(self, events: pa.Table) -> None:
        with self._pending_lock:
            if self._pending is not None:
                self._pending.append(events)
                return
        self.engine.on_stored(events)

    def _replay_then_run(self) -> None:
        now = datetime.now(UTC)
        replayed = pa.array([], pa.string())
        try:  # a shared store outlives servers: rebuild only when it is empty
            if isinstance(self.store, MemoryProfileStore) or self._shared_store_is_empty():
                snapshot = stored_events(self.state.warehouse)
                rebuild_online(self.engine, self.state.warehouse, now, self._backfill(), snapshot)
                replayed = snapshot["event_id"].combine_chunks()
                log.info("rebuilt online profiles from %d stored events", len(replayed))
        except Exception:
            log.exception("rebuilding online profiles failed; they start from new events")
        self._apply_pending(replayed)
        self._scores_seen = self._scores_version()
        self._refresh(now)
        if len(replayed):  # the rebuilt profiles live on: out of every later full collection
            freeze_heap()
        self.ready.set()
        self._run()

    def _shared_store_is_empty(self) -> bool:
        return next(self.store.persons(), None) is None

    def _apply_pending(self, replayed: pa.ChunkedArray | pa.Array) -> None:
        """Apply the batches stored during the replay, minus those it read; then go live."""
        while True:
            with self._pending_lock:
                batches, self._pending = self._pending or [], []
                if not batches:
                    self._pending = None  # the hook applies batches directly from now on
                    return
            # one look-up per round: each builds a hash table of every replayed id
            events = pa.concat_tables(batches, promote_options="permissive")
            self.engine.on_stored(events.filter(pc.invert(pc.is_in(events["event_id"], replayed))))

    def _backfill(self) -> ChangeSink | None:
        """Where the start-up replay's changes go: stored when no change ever was, else nowhere.

        History loaded in bulk (``tailorkit ingest``, the demo) has no
        membership events; storing the replay's changes (the same events a
        live server would have written, no webhooks) lets analyses read the
        segments users held at exposure time. They are queued for the writer
        thread, the only user of the collector's parsing connection.
        """
        if has_segment_events(self.state.warehouse):
            return None
        return ChangeSink(self.definitions, self.state.collector, None)

    def stop(self) -> None:
        """Stop the sweeper and the webhook workers."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.webhooks.stop()

    def _refresh(self, now: datetime) -> None:
        try:
            refresh_online(self.engine, self.state.warehouse, self.quality, now)
        except Exception:
            log.exception("refreshing batch inputs of online profiles failed")

    @property
    def quality(self) -> Any:
        """The project's data-quality settings."""
        return self.state.project.settings.quality

    def _run(self) -> None:
        """The sweeper: window expiry, and batch inputs refreshed when due or after a build."""
        interval = self.definitions.features.settings.sweep_seconds
        last_refresh = datetime.now(UTC)
        while not self._stop.wait(interval):
            now = datetime.now(UTC)
            try:  # a shared store that is down: skipped (logged once per outage)
                self.engine.guarded(partial(self.engine.advance_to, now), list)
            except Exception:
                log.exception("segment sweep failed")
            scores = self._scores_version()  # a build published new scores: load them now
            due = (now - last_refresh).total_seconds() >= REFRESH_SECONDS
            if due or scores != self._scores_seen:
                self._scores_seen = scores
                self._refresh(now)
                last_refresh = now

    def _scores_version(self) -> tuple[str | None, ...]:
        """Served versions of the models whose scores profiles read (changes after a build)."""
        names = sorted(set(self.definitions.features.model_scores.values()))
        if not names:
            return ()
        store = ArtifactStore.of_project(self.state.project.root)
        try:
            return tuple(store.current(SCORE_STEPS[name]) for name in names)
        except OSError:
            return self._scores_seen


def install(state: AppState) -> ProfilesService:
    """Create the profiles service for an app (started by the app's lifespan)."""
    return ProfilesService(state)


def _service(request: Request) -> ProfilesService:
    service: ProfilesService = request.app.state.profiles
    return service


def _definition(definitions: Definitions) -> list[dict[str, Any]]:
    return [
        {
            "key": s.key,
            "description": s.description,
            "owner": s.owner,
            "condition": s.condition,
            "priority": s.priority,
            "exclusive_group": s.group,
            "min_users": s.min_users,
            "force": s.force,
            "inputs": list(s.inputs),
            "webhooks": [{"url": h.url, "on": list(h.on)} for h in s.webhooks],
        }
        for s in definitions.segments
    ]


@router.get("/segments")
def get_segments(
    request: Request,
    state: Admin,
    at: datetime | None = None,
    days: Annotated[int, Query(ge=0, le=90)] = 14,  # one subquery per day: bounded
    batch: bool = True,
) -> dict[str, Any]:
    """Definitions, online sizes and the warehouse report (sizes, flags, overlap, history)."""
    service = _service(request)
    moment = at or datetime.now(UTC)
    out: dict[str, Any] = {
        "segments": _definition(service.definitions),
        "online_sizes": service.engine.sizes(),
        "webhooks": {
            "delivered": service.webhooks.stats.delivered,
            "retried": service.webhooks.stats.retried,
            "dead_letters": service.webhooks.stats.dead,
            "pending": service.webhooks.pending(),
        },
    }
    if batch:
        quality = state.project.settings.quality
        with reader(state.warehouse) as view:  # not the writer's connection: no stall
            out["batch"] = stored_report(service.definitions, view, quality, moment, max(0, days))
    return out


@router.get("/profiles/{user_id:path}")
def get_profile(request: Request, user_id: str, state: Admin) -> dict[str, Any]:
    """Features, segments and why (which condition parts held) for one person."""
    service = _service(request)
    found = service.engine.describe(user_id)
    if found is not None:
        found["source"] = "online"
        return found
    try:
        check_id(user_id)  # a NUL cannot travel in the warehouse query
    except ValueError as exc:
        raise HTTPException(422, f"user_id: {exc}") from exc
    row = _batch_profile(service, state, user_id)
    if row is None:
        raise HTTPException(404, f"no profile for {user_id!r}")
    return row


def _batch_profile(service: ProfilesService, state: AppState, person: str) -> dict[str, Any] | None:
    """The warehouse's view of one person (when the online store does not have them)."""
    definitions = service.definitions
    now = datetime.now(UTC)
    keys = [s.key for s in definitions.segments]
    with reader(state.warehouse) as view:
        # everyone's profiles, kept and brought forward (RFM ranks need the whole base)
        profiles = profiles_now(view, definitions.features, state.project.settings.quality, now)
        table = with_segments(definitions, profiles)
        rows = table.filter(table.person_id == person).to_pyarrow().to_pylist()
    if not rows:
        return None
    values = rows[0]
    values.pop("person_id")
    member = {k: values.pop(k) for k in keys}
    shown = {k: iso(to_us(v)) if isinstance(v, datetime) else v for k, v in values.items()}
    segments = [k for k, v in member.items() if v is True]
    return {
        "person_id": person,
        "source": "batch",
        "as_of": now.isoformat(),
        "features": shown,
        "segments": segments,
    }
