"""Recommendation placements in process: the served model, and every way it can be missing.

A tiny model is trained and published as ``tailorkit build`` does; the
engine reads it through :class:`ServedRecommender`. Without a model, or with
an artifact that cannot be used, a placement still answers: the list's static
items, popularity, or the default content, always with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tailorkit.decide.content import TemplateChecker
from tailorkit.decide.engine import DecideRequest, DecisionEngine
from tailorkit.decide.placements import compile_definitions
from tailorkit.learn.artifacts import ArtifactStore
from tailorkit.learn.recommend import Interactions
from tailorkit.learn.recommender import NAME, RecResult, ServedRecommender, fit_suite, save
from tailorkit.project.loader import schema

PRODUCTS = pd.DataFrame(
    {
        "product_id": ["p1", "p2", "p3", "p4", "p5", "p6"],
        "name": ["Red shoe", "Blue shoe", "Green lamp", "Desk lamp", "Sock", "Boot"],
        "category": ["shoes", "shoes", "home", "home", "shoes", "shoes"],
        "price": [50.0, 55.0, 20.0, 25.0, 5.0, 90.0],
        "in_stock": [True, True, True, True, True, False],
    }
)
INTERACTIONS = pd.DataFrame(
    {
        "person_id": ["a", "a", "b", "b", "c", "c", "d", "d", "e"],
        "product_id": ["p1", "p2", "p1", "p6", "p3", "p4", "p2", "p5", "p1"],
        "views": 1,
        "cart_adds": 0,
        "purchases": [1, 0, 0, 0, 1, 0, 0, 0, 0],
    }
)
GRID = "{% for r in recommendations %}[{{ r.name }}]{% endfor %}"


def placements(lists: dict[str, Any]) -> dict[str, Any]:
    return {
        "settings": {"exposure_dedup": "1h"},
        "recommendations": lists,
        "placements": {
            "recs": {
                "default": "empty",
                "variants": {"empty": {"content": "-"}, "grid": {"content": GRID}},
                "rules": [
                    {
                        "id": "model",
                        "priority": 1,
                        "variant": "grid",
                        "recommendations": {"from": "for_you", "count": 3},
                    }
                ],
            }
        },
    }


MODEL = {"model": "hybrid", "filters": {"in_stock": True}, "context_filters": {"category": "cat"}}


def publish(store: ArtifactStore) -> str:
    """Train the tiny suite and publish it as a recommendations version."""
    items = PRODUCTS.product_id.tolist()
    data = Interactions.from_frame(INTERACTIONS, items=items)
    suite = fit_suite(data, PRODUCTS.name.tolist(), {"factors": 2, "iterations": 3}, (1, 0.3, 0.2))
    with store.run(NAME) as run:
        save(RecResult(suite, PRODUCTS, PRODUCTS.name.tolist(), {}, {}), run.path)
    return run.version


def engine_for(lists: dict[str, Any], served: ServedRecommender) -> tuple[DecisionEngine, list]:
    definitions = compile_definitions(placements(lists), TemplateChecker())
    logged: list[dict[str, Any]] = []
    return DecisionEngine(definitions, exposures=logged.extend, recommender=served), logged


def recs(engine: DecisionEngine, **request: Any) -> dict[str, Any]:
    out: dict[str, Any] = engine.decide(DecideRequest(**request))["placements"]["recs"]
    return out


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "models")


def test_the_served_model_ranks_filters_and_is_logged(store: ArtifactStore) -> None:
    version = publish(store)
    served = ServedRecommender(store)
    served.refresh()
    engine, logged = engine_for({"for_you": MODEL}, served)
    out = recs(engine, user_id="a")
    assert out["source"] == "recommendation" and "reason" not in out
    assert out["model_version"] == f"{NAME}@{version}"
    rec = served.current()
    assert rec is not None
    assert out["items"] == [p for p, _ in rec.recommend("a", 3, filters={"in_stock": True})]
    assert "p1" not in out["items"] and "p6" not in out["items"]  # bought; out of stock
    assert out["content"] == "".join(f"[{rec.item(p)['name']}]" for p in out["items"])
    shoes = recs(engine, user_id="a", context={"cat": "shoes"})["items"]
    assert shoes and all(rec.item(p)["category"] == "shoes" for p in shoes)
    exposure = logged[0]["properties"]
    assert (exposure["kind"], exposure["model_version"]) == ("recommendation", rec.model_version)
    assert exposure["items"] == out["items"]
    assert len(logged) == 1  # same user, placement, variant and model: logged once per period
    newer = publish(store)
    served.refresh()
    assert recs(engine, user_id="a")["model_version"] == f"{NAME}@{newer}"
    assert [e["properties"]["model_version"] for e in logged][-1] == f"{NAME}@{newer}"


def test_without_a_model_the_static_list_or_the_default_is_served(store: ArtifactStore) -> None:
    served = ServedRecommender(store)
    served.refresh()
    static = {**MODEL, "items": [{"id": "s1", "name": "Bestseller"}]}
    engine, _ = engine_for({"for_you": static}, served)
    out = recs(engine, user_id="a")
    assert (out["source"], out["content"], out["items"]) == (
        "recommendation",
        "[Bestseller]",
        ["s1"],
    )
    assert out["reason"].startswith("no trained recommendation model")
    assert out["reason"].endswith("static list served") and "model_version" not in out
    bare, _ = engine_for({"for_you": MODEL}, served)
    out = recs(bare, user_id="a")
    assert (out["source"], out["variant"], out["content"]) == ("default", "empty", "-")
    assert out["reason"] == f"no rule matched ({served.problem})"
    assert served.problem == "no trained recommendation model (run `tailorkit build`)"
    alone, _ = engine_for({"for_you": MODEL}, None)  # type: ignore[arg-type]
    assert recs(alone, user_id="a")["reason"] == "no rule matched (no recommendation model)"


def test_nothing_passes_the_filters(store: ArtifactStore) -> None:
    publish(store)
    served = ServedRecommender(store)
    served.refresh()
    engine, _ = engine_for({"for_you": {**MODEL, "filters": {"price": {"$gt": 1000}}}}, served)
    out = recs(engine, anonymous_id="x")
    assert out["source"] == "default"
    assert out["reason"] == "no rule matched (no product passed the filters)"


def test_a_broken_model_falls_back_to_popularity(store: ArtifactStore) -> None:
    version = publish(store)
    arrays = store.path(NAME, version) / "arrays.npz"
    with np.load(arrays) as loaded:
        data = dict(loaded)
    data["item_factors"] = data["item_factors"][:, :1]  # factors of the wrong size
    np.savez_compressed(arrays, **data)
    served = ServedRecommender(store)
    served.refresh()
    engine, _ = engine_for({"for_you": MODEL}, served)
    out = recs(engine, user_id="a")
    rec = served.current()
    assert rec is not None
    expected = rec.recommend("a", 3, filters={"in_stock": True}, model="popularity")
    assert out["items"] == [p for p, _ in expected]
    assert out["reason"] == "hybrid failed (ValueError); popularity served"
    assert out["source"] == "recommendation"


def test_an_unloadable_version_keeps_the_previous_one(store: ArtifactStore) -> None:
    good = publish(store)
    served = ServedRecommender(store)
    assert served.refresh() is not None
    with store.run(NAME) as run:
        (run.path / "model.json").write_text("{broken")
    assert store.current(NAME) == run.version
    rec = served.refresh()
    assert rec is not None and rec.version == good
    assert served.problem is not None and run.version in served.problem
    assert served.refresh() is rec  # the broken version is not retried on every check


def test_schema_lists_the_served_models() -> None:
    from tailorkit.learn.recommender import MODELS

    lists = schema("definitions")["$defs"]["placements"]["definitions"]["recommendationList"]
    assert sorted(lists["properties"]["model"]["enum"]) == sorted(MODELS)
