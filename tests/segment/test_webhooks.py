"""Webhooks against a real local HTTP receiver: signing, retries, dead letters, no back-pressure."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tailorkit.segment.definitions import Webhook, parse_definitions
from tailorkit.segment.online import SegmentEngine, events_table
from tailorkit.segment.sink import ChangeSink
from tailorkit.segment.webhooks import WebhookDispatcher, verify_signature

SECRET = "s3cret-for-tests-0123456789"


class Receiver:
    """Paths: /ok, /flaky (two 500s, then 200), /down (500), /bad (400), /slow (2 s)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.hits[self.path] = receiver.hits.get(self.path, 0) + 1
                    hits = receiver.hits[self.path]
                status = {"/ok": 200, "/down": 500, "/bad": 400, "/slow": 200}.get(self.path, 200)
                if self.path == "/flaky":
                    status = 500 if hits <= 2 else 200
                if self.path == "/slow":
                    time.sleep(2)
                if status == 200:
                    with receiver.lock:
                        receiver.received.append((self.path, dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def dispatcher(tmp_path: Path) -> Iterator[WebhookDispatcher]:
    hooks = WebhookDispatcher(
        workers=2, base_delay=0.05, max_delay=0.2, dead_letter_path=tmp_path / "dead.jsonl"
    )
    hooks.start()
    yield hooks
    hooks.stop()


def test_deliveries_are_signed_and_carry_an_idempotency_key(
    receiver: Receiver, dispatcher: WebhookDispatcher
) -> None:
    dispatcher.submit(Webhook(f"{receiver.url}/ok", secret=SECRET), {"event_id": "e1", "x": 1})
    assert dispatcher.wait_idle(10)
    (_, headers, body) = receiver.received[0]
    assert json.loads(body) == {"event_id": "e1", "x": 1}
    assert headers["X-Tailorkit-Delivery"] == "e1"
    assert verify_signature(body, SECRET, headers["X-Tailorkit-Signature"])
    assert not verify_signature(body + b" ", SECRET, headers["X-Tailorkit-Signature"])
    assert not verify_signature(body, "wrong-secret", headers["X-Tailorkit-Signature"])


def test_failures_are_retried_with_backoff(
    receiver: Receiver, dispatcher: WebhookDispatcher
) -> None:
    start = time.monotonic()
    dispatcher.submit(Webhook(f"{receiver.url}/flaky"), {"event_id": "e2"})
    assert dispatcher.wait_idle(10)
    assert receiver.hits["/flaky"] == 3 and len(receiver.received) == 1
    assert dispatcher.stats.retried == 2 and dispatcher.stats.delivered == 1
    assert time.monotonic() - start >= 0.05 * 0.8 + 0.1 * 0.8  # two backoff waits


def test_exhausted_and_rejected_deliveries_go_to_the_dead_letter_list(
    receiver: Receiver, dispatcher: WebhookDispatcher, tmp_path: Path
) -> None:
    dispatcher.submit(Webhook(f"{receiver.url}/down", max_attempts=3), {"event_id": "e3"})
    dispatcher.submit(Webhook(f"{receiver.url}/bad", max_attempts=5), {"event_id": "e4"})
    dispatcher.submit(Webhook("http://127.0.0.1:9/closed", max_attempts=2), {"event_id": "e5"})
    assert dispatcher.wait_idle(15)
    dead = {d["delivery_id"]: d for d in dispatcher.dead_letters}
    assert (dead["e3"]["attempts"], dead["e3"]["error"]) == (3, "HTTP 500")
    assert (dead["e4"]["attempts"], dead["e4"]["error"]) == (1, "HTTP 400")  # not retried
    assert dead["e5"]["attempts"] == 2 and "Connect" in dead["e5"]["error"]
    lines = (tmp_path / "dead.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["delivery_id"] for line in lines) == ["e3", "e4", "e5"]


DOC = {
    "features": {
        "views_24h": {"count": {"events": ["product_view"], "window": "24h"}},
    },
    "segments": {
        "browsers": {"condition": {"views_24h": {"$gte": 1}}, "webhooks": [{"url": "URL"}]},
    },
}


def _definitions(url: str) -> Any:
    doc = json.loads(json.dumps(DOC).replace("URL", url))
    return parse_definitions(doc)


def test_membership_changes_reach_the_receiver(
    receiver: Receiver, dispatcher: WebhookDispatcher
) -> None:
    definitions = _definitions(f"{receiver.url}/ok")
    engine = SegmentEngine(definitions, on_changes=ChangeSink(definitions, None, dispatcher))
    t0 = datetime(2024, 5, 1, 10, tzinfo=UTC)
    engine.process(
        events_table([{"event_id": "e1", "type": "product_view", "user_id": "u1", "timestamp": t0}])
    )
    engine.advance_to(t0 + timedelta(days=2))
    assert dispatcher.wait_idle(60)
    # two workers deliver concurrently, so arrival order is not guaranteed:
    # receivers order changes by their timestamps
    payloads = sorted(
        (json.loads(body) for _, _, body in receiver.received), key=lambda p: p["timestamp"]
    )
    assert [(p["type"], p["segment"], p["user_id"], p["reason"]) for p in payloads] == [
        ("segment_entered", "browsers", "u1", "event"),
        ("segment_exited", "browsers", "u1", "window"),
    ]
    assert payloads[1]["timestamp"] == "2024-05-02T10:00:00Z"


def test_a_slow_receiver_never_slows_ingestion(receiver: Receiver) -> None:
    slow = WebhookDispatcher(workers=2, max_pending=300)
    slow.start()
    try:
        definitions = _definitions(f"{receiver.url}/slow")
        engine = SegmentEngine(definitions, on_changes=ChangeSink(definitions, None, slow))
        t0 = datetime(2024, 5, 1, 10, tzinfo=UTC)
        rows = [
            {"event_id": f"e{i}", "type": "product_view", "user_id": f"u{i}", "timestamp": t0}
            for i in range(1000)
        ]
        start = time.monotonic()
        changes = engine.process(events_table(rows))
        elapsed = time.monotonic() - start
        assert len(changes) == 1000
        # 1,000 deliveries of 2 s each with two workers would take 1,000 s
        assert elapsed < 2.0
        assert slow.pending() <= 300 + 2 and slow.stats.dead >= 690  # overflow dead-lettered
    finally:
        slow.stop(timeout=0.1)
