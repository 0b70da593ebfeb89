"""Ingestion over real HTTP against a ``tailorkit serve`` process."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from tailorkit.store.warehouse import Warehouse
from tests.conftest import LiveServer, start_server
from tests.helpers import event


def test_batch_answers_per_event_and_stores_good_ones(live_server: LiveServer) -> None:
    items = [event(), event(type=None), event(), "junk"]
    with live_server.client() as client:
        r = client.post("/v1/events", json=items, headers=live_server.ingest_headers)
        assert r.status_code == 200
        body = r.json()
        assert body["statuses"] == ["accepted", "rejected", "accepted", "rejected"]
        assert [e["index"] for e in body["errors"]] == [1, 3]
        assert body["errors"][0]["reason"] == "type: required"
        again = client.post("/v1/events", json=items[:1], headers=live_server.ingest_headers)
        assert again.json()["statuses"] == ["duplicate"]


def test_ndjson_body(live_server: LiveServer) -> None:
    body = "\n".join(json.dumps(event()) for _ in range(3)) + "\n"
    with live_server.client() as client:
        r = client.post(
            "/v1/events",
            content=body,
            headers={**live_server.ingest_headers, "Content-Type": "application/x-ndjson"},
        )
    assert r.json()["accepted"] == 3


def test_limits_answer_413_and_422_not_crash(live_server: LiveServer) -> None:
    limits = live_server.project.settings.limits
    with live_server.client() as client:
        too_many = [event() for _ in range(limits.max_batch_events + 1)]
        assert (
            client.post("/v1/events", json=too_many, headers=live_server.ingest_headers).status_code
            == 413
        )
        huge = b"[" + b" " * (limits.max_request_bytes + 10) + b"]"
        r = client.post("/v1/events", content=huge, headers=live_server.ingest_headers)
        assert r.status_code == 413
        r = client.post("/v1/events", content=b"[{,", headers=live_server.ingest_headers)
        assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
        r = client.post(
            "/v1/events", json=[event(timestamp="nope")], headers=live_server.ingest_headers
        )
        assert r.status_code == 422
        assert client.get("/healthz").status_code == 200


ENDPOINTS = [
    ("POST", "/v1/events", "ingest"),
    ("POST", "/v1/segment/track", "ingest"),
    ("POST", "/v1/segment/batch", "ingest"),
    ("GET", "/v1/admin/quality", "admin"),
    ("DELETE", "/v1/admin/users/nobody", "admin"),
    ("POST", "/v1/admin/purge", "admin"),
]


def test_key_matrix(live_server: LiveServer) -> None:
    keys = {
        "none": {},
        "wrong": {"Authorization": "Bearer tk_wrong_000000000000000000"},
        "ingest": live_server.ingest_headers,
        "admin": live_server.admin_headers,
    }
    with live_server.client() as client:
        for method, path, needs in ENDPOINTS:
            for name, headers in keys.items():
                r = client.request(
                    method, path, headers=headers, json=[event()] if method == "POST" else None
                )
                if name in ("none", "wrong"):
                    expected = {401}
                elif name == "ingest" and needs == "admin":
                    expected = {403}
                else:
                    expected = {200, 422}
                assert r.status_code in expected, (method, path, name, r.status_code, r.text)


def test_acknowledged_events_survive_sigkill_exactly_once(
    project_dir: Path, tmp_path: Path
) -> None:
    server = start_server(project_dir, tmp_path / "s1.log")
    acked: list[str] = []
    sent: list[str] = []
    stop = threading.Event()

    def post_forever() -> None:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            while not stop.is_set():
                batch = [event(user_id=f"u{i}") for i in range(50)]
                sent.extend(e["event_id"] for e in batch)
                try:
                    r = client.post("/v1/events", json=batch, headers=server.ingest_headers)
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    statuses = r.json()["statuses"]
                    pairs = zip(batch, statuses, strict=True)
                    acked.extend(e["event_id"] for e, s in pairs if s == "accepted")

    threads = [threading.Thread(target=post_forever) for _ in range(3)]
    for t in threads:
        t.start()
    while len(acked) < 3000:
        threading.Event().wait(0.05)
    server.stop(kill=True)  # SIGKILL mid-stream
    stop.set()
    for t in threads:
        t.join()
    server = start_server(project_dir, tmp_path / "s2.log")
    server.stop()
    wh = Warehouse(server.project.settings.store_url)
    stored = wh.events.event_id.to_pyarrow().to_pylist()
    assert len(stored) == len(set(stored)), "an event was stored twice"
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost"
    assert set(stored) <= set(sent)


def test_no_raw_pii_on_disk_or_in_logs(project_dir: Path, tmp_path: Path) -> None:
    server = start_server(project_dir, tmp_path / "server.log")
    secret_email = f"carol.{uuid.uuid4().hex[:8]}@example.org"
    identify = event(
        type="identify",
        anonymous_id="anon-carol",
        user_id="carol",
        properties={"email": secret_email, "name": "Carol Secretname", "phone": "+1 555 0199"},
        context={"ip": "198.51.100.23"},
    )
    with server.client() as client:
        client.post(
            "/v1/events",
            json=[identify, event(type="bad type!!", properties={"email": secret_email})],
            headers=server.ingest_headers,
        )
        client.post(
            "/v1/segment/identify",
            json={
                "type": "identify",
                "messageId": str(uuid.uuid4()),
                "userId": "carol",
                "timestamp": "2026-11-20T10:00:00Z",
                "traits": {"email": secret_email},
            },
            headers=server.ingest_headers,
        )
    server.stop()
    for path in [*project_dir.rglob("*"), tmp_path / "server.log"]:
        if path.is_file():
            data = path.read_bytes()
            for raw in (secret_email, "Carol Secretname", "+1 555 0199", "198.51.100.23"):
                assert raw.encode() not in data, f"{raw} found in {path}"


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_cors_and_content_types_do_not_break_json(
    live_server: LiveServer, content_type: str
) -> None:
    with live_server.client() as client:
        r = client.post(
            "/v1/events",
            content=json.dumps([event()]),
            headers={**live_server.ingest_headers, "Content-Type": content_type},
        )
    assert r.json()["accepted"] == 1
