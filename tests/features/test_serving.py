"""Serving features in-process: keys, caching, encryption, reloads, exposures, profiles.

The FastAPI app runs with its lifespan (``TestClient`` as a context
manager), so the collector, the profiles service and the feature service
with its watcher and exposure log are the ones ``tailorkit serve`` runs.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from growthbook import GrowthBook

from tailorkit.decide.features import sdk_payload
from tailorkit.evaluate import Evaluator
from tailorkit.project import Project, load_project
from tailorkit.server.app import create_app
from tests.features.catalog import DOCUMENT, FEATURES, users
from tests.features.conftest import write_features_project
from tests.features.test_python_clients import growthbook_outcome, tailorkit_outcome

ENCRYPTION_KEY = "Zvwv/+uhpFDznZ6SX28Yjg=="


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def catalog(tmp_path: Path) -> Project:
    """The catalog project, checking features.yaml every 0.1 s."""
    root = write_features_project(tmp_path / "shop")
    settings = root / "tailorkit.yaml"
    settings.write_text(settings.read_text().replace("watch_seconds: 2", "watch_seconds: 0.1"))
    return load_project(root)


@pytest.fixture
def client(catalog: Project) -> Iterator[TestClient]:
    with TestClient(create_app(catalog)) as test_client:
        yield test_client


# ------------------------------------------------------------------ payload


def test_client_keys(client: TestClient, catalog: Project) -> None:
    settings = catalog.settings
    for key in (settings.sdk_keys[0], settings.ingest_keys[0]):
        assert client.get(f"/api/features/{key}").status_code == 200
    unknown = client.get("/api/features/tk_sdk_0123456789abcdef")
    assert (unknown.status_code, unknown.json()) == (401, {"detail": "unknown client key"})
    assert client.get(f"/api/features/{settings.admin_keys[0]}").status_code == 403
    # An SDK client key may read the payload, not evaluate (exposures are events)
    ofrep = client.post("/ofrep/v1/evaluate/flags", json={}, headers=_bearer(settings.sdk_keys[0]))
    assert ofrep.status_code == 401


def test_payload_is_growthbooks_format_cached_by_etag(client: TestClient, catalog: Project) -> None:
    url = f"/api/features/{catalog.settings.sdk_keys[0]}"
    first = client.get(url)
    body = first.json()
    assert body["features"] == sdk_payload(DOCUMENT)["features"]
    assert body["savedGroups"] == DOCUMENT["savedGroups"]
    assert "description" not in body["features"]["dark-mode"]  # tailorkit-only key
    assert body["dateUpdated"] and body["status"] == 200
    assert first.headers["access-control-allow-origin"] == "*"
    again = client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert (again.status_code, again.content) == (304, b"")
    assert client.get(url, headers={"If-None-Match": '"stale"'}).status_code == 200


def test_encrypted_payload_decrypts_in_the_growthbook_sdk(tmp_path: Path) -> None:
    project = load_project(write_features_project(tmp_path / "x", encryption_key=ENCRYPTION_KEY))
    with TestClient(create_app(project)) as test_client:
        answer = test_client.get(f"/api/features/{project.settings.sdk_keys[0]}")
    body = answer.json()
    assert body["features"] == {} and "savedGroups" not in body
    assert body["encryptedFeatures"] and body["encryptedSavedGroups"]
    gb = GrowthBook(decryption_key=ENCRYPTION_KEY)
    gb.set_payload(body)  # the SDK's own decryption
    ours = Evaluator.from_payload(sdk_payload(DOCUMENT))
    for user in users(200, seed=5):
        gb.set_attributes(user)
        ctx = ours.context(user)
        for key in FEATURES:
            expected = tailorkit_outcome(ours.eval_feature(key, ctx))
            assert growthbook_outcome(gb.eval_feature(key)) == expected


def test_bad_encryption_key_is_a_config_error(tmp_path: Path) -> None:
    root = write_features_project(tmp_path / "x", encryption_key="bm90IGEga2V5")
    with pytest.raises(Exception, match=r"tailorkit.yaml: sdk.encryption_key"):
        load_project(root)


# ------------------------------------------------------------------ reloads


def _wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _ofrep_value(client: TestClient, project: Project, key: str, user: str = "u1") -> Any:
    answer = client.post(
        f"/ofrep/v1/evaluate/flags/{key}",
        json={"context": {"targetingKey": user}},
        headers=_bearer(project.settings.ingest_keys[0]),
    )
    return answer.json().get("value")


def test_file_changes_are_picked_up_and_invalid_files_refused(
    client: TestClient, catalog: Project
) -> None:
    url = f"/api/features/{catalog.settings.sdk_keys[0]}"
    etag = client.get(url).headers["etag"]
    changed = json.loads(json.dumps(DOCUMENT))
    changed["features"]["search-v2"] = {"defaultValue": "v3"}
    path = catalog.root / "features.yaml"
    path.write_text(yaml.safe_dump(changed))
    _wait_for(lambda: client.get(url).headers["etag"] != etag)
    assert _ofrep_value(client, catalog, "search-v2") == "v3"
    admin = _bearer(catalog.settings.admin_keys[0])
    version = client.get("/v1/admin/features", headers=admin).json()["version"]
    path.write_text("features:\n  search-v2: {defaultValue: 1, rules: [{condtion: {}}]}\n")
    _wait_for(lambda: client.get("/v1/admin/features", headers=admin).json()["last_error"])
    state = client.get("/v1/admin/features", headers=admin).json()
    assert state["version"] == version  # the previous definitions stay live
    assert "features.yaml: features.search-v2.rules.0.condtion" in state["last_error"]
    reload = client.post("/v1/admin/features/reload", headers=admin)
    assert reload.status_code == 422
    assert reload.json()["detail"] == {
        "file": "features.yaml",
        "path": "features.search-v2.rules.0.condtion",
        "message": "unknown rule key; did you mean 'condition'?",
    }
    assert _ofrep_value(client, catalog, "search-v2") == "v3"


def test_admin_put_replaces_and_persists(client: TestClient, catalog: Project) -> None:
    admin = _bearer(catalog.settings.admin_keys[0])
    path = catalog.root / "features.yaml"
    document = yaml.safe_load(path.read_text())
    document["experiments"] = {}  # kept by a PUT of the payload sections
    path.write_text(yaml.safe_dump(document))
    new = {"features": {"only": {"defaultValue": 7}}}
    answer = client.put("/v1/admin/features", json=new, headers=admin)
    assert answer.status_code == 200, answer.text
    assert _ofrep_value(client, catalog, "only") == 7
    written = yaml.safe_load(path.read_text())
    assert written["features"] == new["features"]
    assert written["savedGroups"] == DOCUMENT["savedGroups"]  # not in the body: kept
    bad = client.put("/v1/admin/features", json={"experiments": {}}, headers=admin)
    assert bad.status_code == 422 and bad.json()["detail"]["path"] == "experiments"
    typo = client.put("/v1/admin/features", json={"features": {"x": {"rules": [{"force": 1,
        "coverage": 2}]}}}, headers=admin)  # fmt: skip
    assert typo.json()["detail"]["path"] == "features.x.rules.0.coverage"
    assert client.put("/v1/admin/features", json=new).status_code == 401


# ---------------------------------------------------------------- exposures


def _stored_exposures(project: Project, client: TestClient) -> list[dict[str, Any]]:
    warehouse = client.app.state.tk.warehouse  # type: ignore[attr-defined]
    with warehouse.lock:
        table = warehouse.con.table("events").filter(lambda t: t.type == "exposure")
        rows = table.select("user_id", "source", "properties").to_pyarrow().to_pylist()
    for row in rows:
        row["properties"] = json.loads(row["properties"])
    return rows


def test_exposures_with_propensity_land_in_the_store(catalog: Project) -> None:
    app = create_app(catalog)
    people = [f"e{i}" for i in range(60)]
    ingest = _bearer(catalog.settings.ingest_keys[0])
    for _ in range(2):  # a restart the same day logs nothing again: the store dedups
        with TestClient(app) as test_client:
            for person in people:
                for _ in range(3):  # repeated evaluations of one user: one exposure a day
                    test_client.post(
                        "/ofrep/v1/evaluate/flags/homepage-hero",
                        json={"context": {"targetingKey": person}},
                        headers=ingest,
                    )
    with TestClient(app) as test_client:  # reopen to read what shutdown flushed
        rows = _stored_exposures(catalog, test_client)
    hero = [r for r in rows if r["properties"]["key"] == "hero-test"]
    ours = Evaluator.from_payload(sdk_payload(DOCUMENT))
    enrolled = {
        p for p in people if ours.evaluate("homepage-hero", {"id": p}).source == "experiment"
    }
    assert {r["user_id"] for r in hero} == enrolled and len(hero) == len(enrolled)
    weights = {"control": 0.5, "bold": 0.25, "minimal": 0.25}
    for row in hero:
        props = row["properties"]
        assert row["source"] == "decision" and props["kind"] == "experiment"
        assert props["feature"] == "homepage-hero" and props["hash_attribute"] == "id"
        assert props["propensity"] == pytest.approx(0.8 * weights[props["variation_key"]])
        assert props["enrollment_probability"] == pytest.approx(0.8)
        expected = ours.evaluate("homepage-hero", {"id": row["user_id"]}).experiment_result
        assert expected is not None and props["variation"] == expected.variation_id


# ----------------------------------------------------------------- profiles

SEGMENTS = {
    "features": {"purchases": {"count": {"events": ["purchase"]}}},
    "segments": {"buyers": {"condition": {"purchases": {"$gte": 1}}}},
}
PROFILE_FEATURES = {
    "features": {
        "buyer-banner": {
            "defaultValue": "none",
            "rules": [
                {"condition": {"segments": {"$elemMatch": {"$eq": "buyers"}}}, "force": "thanks"}
            ],
        },
        "loyal": {
            "defaultValue": False,
            "rules": [{"condition": {"purchases": {"$gte": 2}}, "force": True}],
        },
    }
}


def test_targeting_sees_the_profile_and_its_segments(tmp_path: Path) -> None:
    root = write_features_project(tmp_path / "p")
    (root / "segments.yaml").write_text(yaml.safe_dump(SEGMENTS))
    (root / "features.yaml").write_text(yaml.safe_dump(PROFILE_FEATURES))
    project = load_project(root)
    ingest = _bearer(project.settings.ingest_keys[0])
    now = datetime.now(UTC).isoformat()
    purchases = [
        {"event_id": str(uuid.uuid4()), "type": "purchase", "user_id": "buyer", "timestamp": now}
        for _ in range(2)
    ]
    with TestClient(create_app(project)) as test_client:
        stored = test_client.post("/v1/events", json=purchases, headers=ingest)
        assert stored.json()["accepted"] == 2

        def flags(person: str, **attributes: Any) -> dict[str, Any]:
            context = {"targetingKey": person, **attributes}
            answer = test_client.post(
                "/ofrep/v1/evaluate/flags", json={"context": context}, headers=ingest
            )
            return {f["key"]: f["value"] for f in answer.json()["flags"]}

        _wait_for(lambda: flags("buyer")["buyer-banner"] == "thanks")
        assert flags("buyer") == {"buyer-banner": "thanks", "loyal": True}
        # A client cannot claim a segment or a profile value: the profile wins
        assert flags("stranger", segments=["buyers"], purchases=5) == {
            "buyer-banner": "none",
            "loyal": False,
        }
