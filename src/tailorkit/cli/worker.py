"""``tailorkit worker``: one member of the event bus's consumer group, until SIGTERM.

It stores what servers appended to the stream (:mod:`tailorkit.collect.bus`)
and runs the online profile executor on it, each entry exactly once (an
"applied" marker in the same Redis transaction as the profile writes), as a
server does on the in-process path (the same
:class:`~tailorkit.server.routes_profiles.ProfilesService`: rebuild of an
empty shared store, the sweeper, webhooks, segment events).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from tailorkit.collect.bus import Worker
from tailorkit.collect.pipeline import Collector
from tailorkit.project import ConfigError, Project
from tailorkit.store.profiles import MemoryProfileStore
from tailorkit.store.warehouse import Warehouse

log = logging.getLogger("tailorkit.worker")
REPORT_SECONDS = 10.0


def run_worker(
    project: Project, name: str = "", stop: threading.Event | None = None
) -> dict[str, Any]:
    """Run until ``stop`` is set (SIGTERM and SIGINT set it); returns the worker's counts."""
    from tailorkit.server.app import AppState
    from tailorkit.server.auth import KeyChecker
    from tailorkit.server.routes_profiles import ProfilesService

    bus = project.settings.bus
    if bus is None:
        raise ConfigError("tailorkit.yaml", "bus", "not configured: the worker reads the event bus")
    warehouse = Warehouse(project.settings.store_url)
    collector = Collector(warehouse, project.settings)
    state = AppState(project, warehouse, collector, KeyChecker((), ()))
    profiles = ProfilesService(state)
    declared = bool(profiles.definitions.features.features)
    if declared and isinstance(profiles.store, MemoryProfileStore):
        warehouse.close()
        raise ConfigError(
            "segments.yaml",
            "profiles.store",
            "with the event bus, profiles must live in Redis (redis://...) so servers see them",
        )
    worker = Worker(bus, collector, name, profiles.engine if declared else None)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    profiles.start()  # before anything is stored, as in the server
    collector.start()  # the writer stores segment_entered/exited events
    reporter = threading.Thread(target=_report, args=(worker, stop), daemon=True)
    reporter.start()
    log.info("worker %s reading %s (group %s)", worker.name, bus.stream, bus.group)
    try:
        worker.run(stop)
    finally:
        collector.stop()
        profiles.stop()
        warehouse.close()
    log.info("worker %s stopped: %s", worker.name, worker.stats.to_dict())
    return {"worker": worker.name, "stream": bus.stream, **worker.stats.to_dict()}


def _report(worker: Worker, stop: threading.Event) -> None:
    last = 0
    while not stop.wait(REPORT_SECONDS):
        stats = worker.stats
        if stats.entries != last:
            last = stats.entries
            log.info("%s", stats.to_dict())
