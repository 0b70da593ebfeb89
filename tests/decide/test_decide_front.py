"""``POST /v1/decide`` answered in front of FastAPI's middleware stack (``TailorkitApp.hot``).

The hot path skips Starlette's error, telemetry and CORS layers of the
stack, so it must bring each of them itself: CORS headers for allowed
origins, request timing, admission control, and an answer that never breaks
the page when something inside fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from tailorkit.project import Project, load_project
from tailorkit.server.app import create_app
from tests.decide.conftest import PLACEMENTS, write_decide_project

ALLOWED = "http://localhost:8000"  # the cors_origins of a new project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return load_project(write_decide_project(tmp_path / "shop"))


@pytest.fixture
def client(project: Project) -> Iterator[TestClient]:
    with TestClient(create_app(project)) as test_client:
        yield test_client


def _headers(project: Project, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {project.settings.ingest_keys[0]}", **extra}


def _decides_timed() -> float:
    labels = {"route": "/v1/decide", "method": "POST", "status": "200"}
    return REGISTRY.get_sample_value("tailorkit_request_seconds_count", labels) or 0.0


def test_allowed_origin_gets_cors_headers_and_others_do_not(
    client: TestClient, project: Project
) -> None:
    body = {"user_id": "ada"}
    allowed = client.post("/v1/decide", json=body, headers=_headers(project, Origin=ALLOWED))
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    other = client.post(
        "/v1/decide", json=body, headers=_headers(project, Origin="https://evil.example")
    )
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers
    assert "Origin" in other.headers["vary"]  # caches must not share answers across origins
    # errors carry them too, so a browser can read why it was refused
    refused = client.post("/v1/decide", json=body, headers={"Origin": ALLOWED})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ALLOWED
    assert refused.headers["www-authenticate"] == "Bearer"


def test_decides_are_timed_by_route(client: TestClient, project: Project) -> None:
    before = _decides_timed()
    for user in ("a", "b", "c"):
        answer = client.post("/v1/decide", json={"user_id": user}, headers=_headers(project))
        assert answer.is_success
    assert _decides_timed() - before == 3


def test_bad_bodies_are_refused_with_the_reason(client: TestClient, project: Project) -> None:
    wrong = client.post("/v1/decide", json={"user_id": ["x"]}, headers=_headers(project))
    assert (wrong.status_code, wrong.json()) == (422, {"detail": "user_id: must be a string"})
    broken = client.post("/v1/decide", content=b"{", headers=_headers(project))
    assert broken.status_code == 422 and "not valid JSON" in broken.json()["detail"]


def test_an_internal_error_answers_the_default_content(
    client: TestClient, project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = client.app.state.decide  # type: ignore[attr-defined]

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(service.engine, "decide", broken)
    answer = client.post("/v1/decide", json={"user_id": "ada"}, headers=_headers(project))
    assert answer.status_code == 200
    placements = answer.json()["placements"]
    defined: dict[str, Any] = PLACEMENTS["placements"]  # type: ignore[assignment]
    assert set(placements) == set(defined)
    for key, shown in placements.items():
        assert shown["source"] == "default" and shown["reason"] == "error"
        assert shown["variant"] == defined[key]["default"]


def test_other_routes_still_go_through_the_stack(client: TestClient, project: Project) -> None:
    # the documented route answers too, e.g. for the defaults next to it
    defaults = client.get("/v1/decide/defaults", headers=_headers(project))
    assert defaults.status_code == 200
    defined: dict[str, Any] = PLACEMENTS["placements"]  # type: ignore[assignment]
    shown = defaults.json()["placements"]
    assert {k: (v["variant"], v["source"]) for k, v in shown.items()} == {
        k: (p["default"], "default") for k, p in defined.items()
    }
    assert not any("reason" in v for v in shown.values())  # nothing went wrong
    preflight = client.options(
        "/v1/decide",
        headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ALLOWED


def test_body_limits_hold_without_content_length_and_a_gone_client_gets_499(
    client: TestClient, project: Project
) -> None:
    app = client.app
    key = project.settings.ingest_keys[0].encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/decide",
        "query_string": b"",
        "headers": [(b"authorization", b"Bearer " + key)],
    }

    def answer(messages: list[dict[str, Any]]) -> tuple[int, bytes]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        client.portal.call(app, dict(scope), receive, send)  # type: ignore[union-attr, arg-type, call-arg]
        return sent[0]["status"], sent[1]["body"]

    chunk = {"type": "http.request", "body": b" " * 40_000, "more_body": True}
    status, body = answer([chunk, chunk])  # no Content-Length, streamed past the bound
    assert status == 413 and b"request body over" in body
    gone: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]
    assert answer(gone)[0] == 499
