"""Oversized and deeply nested payloads over real HTTP against ``tailorkit serve``.

The project sets small ``limits`` so that the answers must follow the
configuration: whole requests past a limit get 413 naming it; a single event
past a limit is rejected with its index and the limit, and the good events of
the same batch are stored; JSON nested past the parser's depth is a 422.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import LiveServer, start_server
from tests.helpers import event
from tests.security.test_sql_injection import _admin_project

LIMITS = {
    "max_batch_events": 50,
    "max_event_bytes": 2048,
    "max_request_bytes": 65536,
    "max_depth": 4,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("limits")
    root = _admin_project(folder)
    settings = yaml.safe_load((root / "tailorkit.yaml").read_text())
    settings["limits"] = LIMITS
    (root / "tailorkit.yaml").write_text(yaml.safe_dump(settings))
    live = start_server(root, folder / "server.log")
    yield live
    live.stop()


def _nested(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


def _segment(message_id: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Viewed", "userId": "u1", "messageId": message_id,
            "timestamp": "2026-11-20T10:00:00Z", "properties": properties}  # fmt: skip


def _deep_json(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize("path", ["/v1/events", "/v1/segment/batch"])
def test_whole_request_limits_answer_413_naming_the_limit(server: LiveServer, path: str) -> None:
    def wrap(items: list[Any]) -> Any:
        return {"batch": items} if path == "/v1/segment/batch" else items

    make = (lambda i: _segment(f"m{i}")) if path == "/v1/segment/batch" else (lambda i: event())
    with server.client(headers=server.ingest_headers) as client:
        r = client.post(path, json=wrap([make(i) for i in range(51)]))
        assert r.status_code == 413 and r.json()["detail"] == "51 events; at most 50"
        r = client.post(path, content=b"[" + b" " * 70_000 + b"]")
        assert r.status_code == 413 and "over 65536 bytes" in r.json()["detail"]
        r = client.post(path, json=wrap([make(i) for i in range(50)]))  # at the limit: fine
        assert r.status_code == 200 and r.json()["accepted"] == 50


def test_events_over_a_per_event_limit_are_rejected_with_index_others_stored(
    server: LiveServer,
) -> None:
    batch = [
        event(user_id="ok-0"),
        event(user_id="big", properties={"x": "y" * 3000}),
        event(user_id="ok-2", properties={"n": _nested(3)}),  # depth 4 with properties
        event(user_id="deep", properties={"n": _nested(4)}),
        event(user_id="deep-context", context=_nested(5)),
        event(user_id="ok-5"),
    ]
    with server.client(headers=server.ingest_headers) as client:
        answer = client.post("/v1/events", json=batch).json()
        assert answer["statuses"] == ["accepted", "rejected", "accepted", "rejected", "rejected",
                                      "accepted"]  # fmt: skip
        errors = {e["index"]: e["reason"] for e in answer["errors"]}
        assert errors[1] == "event: over the limit of 2048 bytes"
        assert errors[3] == "properties: nested deeper than 4 levels"
        assert errors[4] == "context: nested deeper than 4 levels"
        segment = [_segment("s0"), _segment("s1", x="y" * 3000), _segment("s2", n=_nested(6))]
        answer = client.post("/v1/segment/batch", json={"batch": segment}).json()
        assert answer["statuses"] == ["accepted", "rejected", "rejected"]
        assert [e["index"] for e in answer["errors"]] == [1, 2]
        ndjson = b"\n".join([json.dumps(event()).encode(), b'{"a":' * 2000 + b"1" + b"}" * 2000,
                             json.dumps(event()).encode()])  # fmt: skip
        r = client.post(
            "/v1/events", content=ndjson, headers={"content-type": "application/x-ndjson"}
        )
        assert r.json()["statuses"] == ["accepted", "rejected", "accepted"]
        assert r.json()["errors"][0]["reason"].startswith("line 2: ")
        profile = client.get(
            "/v1/admin/profiles/ok-2", headers=server.admin_headers
        )  # stored and profiled
        assert profile.status_code == 200, profile.text


def test_deep_json_is_a_422_and_decide_bounds_its_body(server: LiveServer) -> None:
    with server.client(headers=server.ingest_headers) as client:
        for path in ("/v1/events", "/v1/segment/batch", "/v1/decide"):
            r = client.post(path, content=_deep_json(20_000))
            assert r.status_code == 422 and "depth limit" in r.json()["detail"], (path, r.text)
        r = client.post("/v1/decide", json={"user_id": "u1", "attributes": {"x": "y" * 70_000}})
        assert r.status_code == 413 and "65536 bytes" in r.json()["detail"]
        r = client.post("/v1/decide", json={"user_id": "u" * 300})
        assert r.status_code == 422 and "256 characters" in r.json()["detail"]
        r = client.post("/v1/decide", json={"user_id": "u1", "attributes": _nested(500)})
        assert r.status_code == 200  # deep but within the body bound: evaluated, no crash
        assert client.get("/healthz").status_code == 200
