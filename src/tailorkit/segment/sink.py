"""Where membership changes go: back into the warehouse as events, and to webhooks.

``segment_entered``/``segment_exited`` events go through the collector like
any other event (validated, deduplicated by their deterministic ids, stored),
so that they can be analysed and trigger rules. With the collector's writer
thread running they are queued (:meth:`Collector.submit`) and committed with
the next group, so the writer never waits on itself.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

from tailorkit.collect.pipeline import BatchResult, Collector
from tailorkit.segment.definitions import Definitions
from tailorkit.segment.online import Change
from tailorkit.segment.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)
SOURCE = "segments"


def webhook_payload(change: Change) -> dict[str, Any]:
    """The JSON body a webhook receives for one change.

    >>> body = webhook_payload(Change("a1", False, "vip", "segment_exited", 0, "window"))
    >>> body["anonymous_id"], body["user_id"], body["type"], body["reason"]
    ('a1', None, 'segment_exited', 'window')
    """
    event = change.to_event()
    return {
        "event_id": event["event_id"],
        "type": change.kind,
        "segment": change.segment,
        "person_id": change.person,
        "user_id": event.get("user_id"),
        "anonymous_id": event.get("anonymous_id"),
        "timestamp": event["timestamp"],
        "reason": change.reason,
    }


class ChangeSink:
    """Callable for :class:`~tailorkit.segment.online.SegmentEngine` ``on_changes``."""

    def __init__(
        self,
        definitions: Definitions,
        collector: Collector | None = None,
        webhooks: WebhookDispatcher | None = None,
        asynchronous: bool = True,
    ) -> None:
        self.definitions = definitions
        self.collector = collector
        self.webhooks = webhooks
        self.asynchronous = asynchronous

    def __call__(self, changes: list[Change]) -> None:
        """Write the events, then schedule webhook deliveries (neither blocks on receivers)."""
        if self.collector is not None:
            self._write(changes)
        if self.webhooks is not None:
            for change in changes:
                for hook in self.definitions.segment(change.segment).webhooks:
                    if change.kind in hook.on:
                        self.webhooks.submit(hook, webhook_payload(change))

    def _write(self, changes: list[Change]) -> None:
        assert self.collector is not None
        events = [c.to_event() for c in changes]
        if self.asynchronous:
            self.collector.submit_items(events, SOURCE).add_done_callback(_log_failure)
        else:
            self.collector.ingest_items(events, SOURCE)


def _log_failure(future: Future[BatchResult]) -> None:
    error = future.exception()
    if error is not None:
        log.error("storing segment change events failed: %s", error)
