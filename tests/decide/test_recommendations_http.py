"""Model-driven placements over real HTTP: recommendations and churn scores from `tailorkit build`.

A small seeded demo shop is loaded into its own PostgreSQL database (so that
``tailorkit build`` can train while the server runs, as in production), the
models are trained, and ``tailorkit serve`` answers ``POST /v1/decide``:

* a recommendation placement ranks with the served ``Recommender`` (same
  items as calling the artifact directly), hides purchased and out-of-stock
  products, honours category pages and cold-start history, and logs the
  model version with the exposure;
* ``churn_risk`` from ``profile_scores`` targets a placement rule and a segment;
* a failing training run (and an artifact that cannot be loaded) leaves the
  served version unchanged; a successful one is picked up without a restart,
  and so are new scores.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg2
import pytest
import yaml

from tailorkit.demo import generate_shop
from tailorkit.learn import build as build_module
from tailorkit.learn.artifacts import ArtifactStore
from tailorkit.learn.build import BuildOptions, build
from tailorkit.learn.propensity import TaskConfig
from tailorkit.learn.recommender import NAME, RecConfig, Recommender
from tailorkit.learn.scores import score_rows
from tailorkit.project import Project, load_project
from tailorkit.project.init import write_project
from tailorkit.segment.clusters import ClusterConfig
from tailorkit.store.warehouse import Warehouse
from tests.conftest import LiveServer, start_server
from tests.decide.test_decide_http import decide, until
from tests.learn.shop import load

pytestmark = pytest.mark.postgres

FAST = BuildOptions(
    only=("clusters", "churn", NAME),
    clusters=ClusterConfig(k=3),
    churn=TaskConfig(task="churn", folds=2),
    recommendations=RecConfig(tune=False),
)
SEGMENTS = {
    "profiles": {"sweep_seconds": 0.5},
    "features": {
        "product_views_7d": {"count": {"events": ["product_view"], "window": "7d"}},
        "churn_risk": {"model_score": "churn_risk"},
    },
    "segments": {"likely_churners": {"condition": {"churn_risk": {"$gt": 0.5}}}},
}
GRID = "{% for r in recommendations %}<li>{{ r.name }}|{{ r.id }}</li>{% endfor %}"
PLACEMENTS = {
    "settings": {"reload_seconds": 0.5, "exposure_dedup": "1s"},
    "recommendations": {
        "for_you": {
            "model": "hybrid",
            "filters": {"in_stock": True},
            "context_filters": {"category": "category"},
            "context_history": "viewed",
            "context_exclude": "product_id",
        }
    },
    "placements": {
        "recs": {
            "default": "empty",
            "variants": {"empty": {"content": "<ul></ul>"}, "grid": {"content": GRID}},
            "rules": [
                {
                    "id": "for_you",
                    "priority": 1,
                    "variant": "grid",
                    "recommendations": {"from": "for_you", "count": 4},
                }
            ],
        },
        "winback": {
            "default": "none",
            "variants": {"none": {"content": ""}, "coupon": {"content": "10% off"}},
            "rules": [
                {
                    "id": "churners",
                    "priority": 1,
                    "condition": {"churn_risk": {"$gt": 0.5}},
                    "variant": "coupon",
                }
            ],
        },
    },
}


@dataclass
class Shop:
    project: Project
    server: LiveServer
    end: datetime
    pg_url: str

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore.of_project(self.project.root)

    def recommender(self) -> Recommender:
        return Recommender.load(self.store)

    def scores(self, name: str) -> dict[str, float]:
        wh = Warehouse(self.pg_url)
        try:
            return {p: v[name] for p, v in score_rows(wh, [name]).items()}
        finally:
            wh.close()

    def churn(self) -> dict[str, float]:
        return self.scores("churn_risk")

    def decide(self, body: dict[str, Any]) -> dict[str, Any]:
        return decide(self.server, body)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A database of its own: the server and the build both write to it."""
    name = f"tk_recs_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="test")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    yield f"postgres://postgres@127.0.0.1:5432/{name}"
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Shop]:
    root = write_project(tmp_path_factory.mktemp("recs") / "shop")
    settings = yaml.safe_load((root / "tailorkit.yaml").read_text())
    settings["store"]["url"] = pg_url
    (root / "tailorkit.yaml").write_text(yaml.safe_dump(settings))
    (root / "segments.yaml").write_text(yaml.safe_dump(SEGMENTS))
    (root / "placements.yaml").write_text(yaml.safe_dump(PLACEMENTS, sort_keys=False))
    generated = generate_shop(n_users=300, days=30, seed=11)
    load(generated, pg_url).close()
    project = load_project(root)
    first = build(project, FAST)
    assert first["failed"] == [], first
    # the personas become segments: the clusters artifact's fragment merged into segments.yaml
    fragment = ArtifactStore.of_project(root).path("clusters") / "segments.yaml"
    personas = yaml.safe_load(fragment.read_text())
    merged = {
        **SEGMENTS,
        "features": {**SEGMENTS["features"], **personas["features"]},
        "segments": {**SEGMENTS["segments"], **personas["segments"]},
    }
    (root / "segments.yaml").write_text(yaml.safe_dump(merged))
    project = load_project(root)
    server = start_server(root, root.parent / "server.log")
    yield Shop(project, server, generated.end, pg_url)
    server.stop()


def buyer(rec: Recommender) -> str:
    """A person the model knows who bought something (so exclusion is tested)."""
    purchased = rec.suite.data.purchased
    return next(u for i, u in enumerate(rec.suite.data.users) if purchased[i].nnz)


def test_recommendations_come_from_the_served_model(shop: Shop) -> None:
    rec = shop.recommender()
    person = buyer(rec)
    out = shop.decide({"user_id": person, "placements": ["recs"]})["placements"]["recs"]
    assert out["source"] == "recommendation" and out["rule"] == "for_you"
    assert out["model_version"] == rec.model_version == f"{NAME}@{shop.store.current(NAME)}"
    expected = [p for p, _ in rec.recommend(person, 4, filters={"in_stock": True})]
    assert out["items"] == expected and len(expected) == 4
    names = "".join(f"<li>{rec.item(p)['name']}|{p}</li>" for p in expected)
    assert out["content"] == names
    data = rec.suite.data
    bought = {data.items[i] for i in data.purchased[data.users.index(person)].indices}
    assert bought and not bought & set(out["items"])
    assert all(rec.item(p)["in_stock"] for p in out["items"])


def test_category_pages_cold_start_and_the_page_product(shop: Shop) -> None:
    rec = shop.recommender()
    category = rec.item(rec.suite.data.items[0])["category"]
    page = shop.decide({"anonymous_id": "new-visitor", "context": {"category": category}})
    items = page["placements"]["recs"]["items"]
    assert items and all(rec.item(p)["category"] == category for p in items)
    viewed = list(rec.suite.data.items[5:7])
    body = {"anonymous_id": "new-visitor-2", "context": {"viewed": viewed, "product_id": viewed[0]}}
    cold = shop.decide(body)["placements"]["recs"]
    expected = rec.recommend(
        None, 4, history=viewed, exclude=[viewed[0]], filters={"in_stock": True}
    )
    assert cold["items"] == [p for p, _ in expected]
    popular = [p for p, _ in rec.recommend(None, 4, filters={"in_stock": True})]
    assert cold["items"] != popular  # the history changed the ranking
    assert viewed[0] not in cold["items"]


def test_exposures_record_the_model_version(shop: Shop) -> None:
    rec = shop.recommender()
    person = buyer(rec)
    shop.decide({"user_id": person, "placements": ["recs"]})

    def logged() -> list[tuple[Any, ...]]:
        con = psycopg2.connect(shop.pg_url.replace("postgres://", "postgresql://"))
        try:
            with con.cursor() as cur:
                cur.execute(
                    "SELECT properties FROM events WHERE type = 'exposure' AND user_id = %s",
                    (person,),
                )
                return [row[0] for row in cur.fetchall()]
        finally:
            con.close()

    rows = until(lambda: [r for r in logged() if "recommendation" in r], 20.0)
    assert rows, "no recommendation exposure was logged"
    props = json.loads(rows[0])
    assert props["kind"] == "recommendation" and props["placement"] == "recs"
    assert props["model_version"] == rec.model_version
    assert len(props["items"]) == 4 and props["propensity"] == 1.0


def test_churn_scores_target_rules_and_segments(shop: Shop) -> None:
    churn = shop.churn()
    with shop.server.client() as client:

        def profiled(person: str) -> dict[str, Any] | None:
            r = client.get(f"/v1/admin/profiles/{person}", headers=shop.server.admin_headers)
            return r.json() if r.status_code == 200 else None

        high = next(p for p, v in sorted(churn.items(), key=lambda kv: -kv[1]) if profiled(p))
        low = next(p for p, v in sorted(churn.items(), key=lambda kv: kv[1]) if profiled(p))
        profile = profiled(high)
    assert churn[high] > 0.5 > churn[low]
    assert profile is not None and profile["features"]["churn_risk"] == pytest.approx(churn[high])
    hot = shop.decide({"user_id": high, "placements": ["winback"]})
    cold = shop.decide({"user_id": low, "placements": ["winback"]})
    assert hot["placements"]["winback"]["variant"] == "coupon"
    assert "likely_churners" in hot["segments"]
    assert cold["placements"]["winback"]["variant"] == "none"
    assert "likely_churners" not in cold["segments"]


def test_personas_are_segments_for_targeting(shop: Shop) -> None:
    clusters = shop.scores("cluster")
    people = list(clusters)[:40]
    seen = set()
    for person in people:
        segments = shop.decide({"user_id": person, "placements": []})["segments"]
        personas = [s for s in segments if s.startswith("persona_")]
        if personas:  # scored persons without a profile (no consent) are in no segment
            assert personas == [f"persona_{int(clusters[person])}"]
            seen.add(personas[0])
    assert len(seen) >= 2


def test_a_failing_build_leaves_the_served_version(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = shop.store.current(NAME)
    served = f"{NAME}@{before}"

    def broken(ctx: Any, run: Any) -> dict[str, Any]:
        (run.path / "arrays.npz").write_bytes(b"half a model")
        raise MemoryError("killed while training")

    with monkeypatch.context() as patch:
        patch.setitem(build_module.RUNNERS, NAME, broken)
        summary = build(shop.project, BuildOptions(only=(NAME,)))
    assert summary["failed"] == [NAME] and shop.store.current(NAME) == before
    # a published version that cannot be loaded: the server keeps the one in memory
    with shop.store.run(NAME) as run:
        (run.path / "model.json").write_text("{not json")
    assert shop.store.current(NAME) == run.version
    time.sleep(1.5)  # several model checks of the server's watch thread
    person = buyer(Recommender.from_directory(shop.store.path(NAME, before), before))
    out = shop.decide({"user_id": person, "placements": ["recs"]})["placements"]["recs"]
    assert (out["source"], out["model_version"]) == ("recommendation", served)
    # a successful run is served without a restart
    fresh = build(shop.project, BuildOptions(only=(NAME,), recommendations=FAST.recommendations))
    assert fresh["failed"] == []

    def new_version() -> bool:
        answer = shop.decide({"user_id": person, "placements": ["recs"]})["placements"]["recs"]
        return bool(answer["model_version"] == f"{NAME}@{fresh['steps'][NAME]['version']}")

    assert until(new_version, 20.0)


def test_new_scores_reach_profiles_without_a_restart(shop: Shop) -> None:
    old = shop.churn()
    options = BuildOptions(only=("churn",), at=shop.end - timedelta(days=3), churn=FAST.churn)
    assert build(shop.project, options)["failed"] == []
    new = shop.churn()
    changed = [p for p in new if p in old and abs(new[p] - old[p]) > 1e-6]
    assert changed
    with shop.server.client() as client:

        def refreshed() -> bool:
            for person in changed[:20]:
                r = client.get(f"/v1/admin/profiles/{person}", headers=shop.server.admin_headers)
                if r.status_code == 200:
                    value = r.json()["features"]["churn_risk"]
                    return value is not None and abs(value - new[person]) < 1e-9
            return False

        assert until(refreshed, 20.0)
