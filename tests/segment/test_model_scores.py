"""Model scores as profile features: declared, joined in batch, pushed online, and agreeing.

A ``segments.yaml`` with ``model_score`` features (churn risk, propensity,
cluster id) over the demo shop: scores are written to ``profile_scores`` as
``tailorkit build`` writes them, then the batch executor (Ibis join of the
latest scores) and the online executor (scores pushed by ``refresh_online``)
must agree on every feature and segment, before and after the scores change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tailorkit.collect.pipeline import Collector
from tailorkit.collect.quality import clean_events
from tailorkit.collect.raw import raw_from_arrow
from tailorkit.demo import generate_shop
from tailorkit.learn.scores import write_many
from tailorkit.profile.definitions import MODEL_SCORES
from tailorkit.project import ConfigError, load_project
from tailorkit.project.init import write_project
from tailorkit.project.loader import schema
from tailorkit.segment.batch import refresh_online
from tailorkit.segment.definitions import Definitions, parse_definitions
from tailorkit.segment.online import Change, SegmentEngine
from tailorkit.store.warehouse import Warehouse
from tests.segment.common import batch_rows, differences, online_rows, shop_document

RISKY = "at_risk_browsers"


def scored_document() -> dict[str, Any]:
    """The shop example plus model-score features and segments over them."""
    doc = shop_document()
    features = {
        **doc["features"],
        "churn_risk": {"model_score": "churn_risk"},
        "buy_propensity": {"model_score": "propensity_to_buy"},
        "persona": {"model_score": "cluster"},
        # a derived feature reading a model score: refreshed with it online
        "risk_weighted": {"score": {"weights": {"churn_risk": 10, "purchases_lifetime": 1}}},
    }
    segments = {
        **doc["segments"],
        RISKY: {"condition": {"churn_risk": {"$gt": 0.7}, "product_views_7d": {"$gte": 3}}},
        "likely_buyers": {"condition": {"buy_propensity": {"$gte": 0.5}}},
        "persona_2": {"condition": {"persona": 2}},
        "risky_value": {"condition": {"risk_weighted": {"$gte": 8}}},
    }
    return {**doc, "features": features, "segments": segments}


def fraction(person: str, salt: str) -> float:
    """A stable pseudo-random number in [0, 1) per person."""
    digest = hashlib.sha256(f"{salt}:{person}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def write_scores(wh: Warehouse, persons: list[str], salt: str) -> None:
    """Churn, propensity and cluster for most persons (every 7th unscored), plus strangers."""
    scored = [p for i, p in enumerate(sorted(persons)) if i % 7] + ["nobody-1", "nobody-2"]
    churn = pd.Series({p: fraction(p, f"churn{salt}") for p in scored})
    buy = pd.Series({p: fraction(p, f"buy{salt}") for p in scored})
    cluster = pd.Series({p: float(int(fraction(p, f"k{salt}") * 4)) for p in scored})
    write_many(wh, {"churn_risk": churn, "propensity_to_buy": buy}, f"churn@{salt}")
    write_many(wh, {"cluster": cluster}, f"clusters@{salt}")


@dataclass
class Scored:
    wh: Warehouse
    definitions: Definitions
    checks: list[tuple[dict[str, Any], dict[str, Any], list[Change]]]


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scored]:
    root = write_project(tmp_path_factory.mktemp("scores") / "shop")
    project = load_project(root)
    wh = Warehouse(project.settings.store_url)
    definitions = parse_definitions(scored_document())
    engine = SegmentEngine(definitions)
    collector = Collector(wh, project.settings, on_stored=engine.on_stored)
    shop = generate_shop(700, 14, 3)
    for start in range(0, shop.events.num_rows, 5000):
        collector.ingest(raw_from_arrow(shop.events.slice(start, 5000)), "demo")
    at = shop.end + timedelta(minutes=1)
    quality = project.settings.quality
    persons = list(batch_rows(definitions, clean_events(wh, quality), at))
    checks = []
    for salt in ("v1", "v2"):  # two training runs: the second changes every score
        write_scores(wh, persons, salt)
        seen: list[Change] = []
        engine.on_changes = seen.extend
        summary = refresh_online(engine, wh, quality, at)
        assert summary["scored_profiles"] > 0
        batch = batch_rows(definitions, clean_events(wh, quality), at)
        checks.append((batch, online_rows(engine), seen))
    yield Scored(wh, definitions, checks)
    wh.close()


@pytest.mark.parametrize("run", [0, 1])
def test_batch_and_online_agree_on_model_scores(scored: Scored, run: int) -> None:
    batch, online, _ = scored.checks[run]
    assert len(batch) > 400
    assert differences(scored.definitions, batch, online) == {}
    # not vacuous: scored and unscored persons, members and non-members
    risks = [r["churn_risk"] for r in batch.values()]
    assert any(r is None for r in risks) and any(r is not None and r > 0.7 for r in risks)
    members = [r[RISKY] for r in batch.values()]
    assert any(members) and not all(members)
    # the condition is what it says, on the batch side (null scores never match)
    for row in batch.values():
        expected = (row["churn_risk"] or 0) > 0.7 and row["product_views_7d"] >= 3
        assert row[RISKY] == expected
    assert {r["persona"] for r in batch.values()} == {None, 0, 1, 2, 3}
    assert all(isinstance(r["persona"], int | None) for r in online.values())
    assert "nobody-1" not in batch and "nobody-1" not in online  # scored, never seen: no profile


def test_new_scores_re_evaluate_segments_online(scored: Scored) -> None:
    before, _, _ = scored.checks[0]
    after, _, changes = scored.checks[1]
    moved = {p for p in after if before[p][RISKY] != after[p][RISKY]}
    assert moved
    reported = {c.person for c in changes if c.segment == RISKY}
    assert reported == moved
    assert {c.reason for c in changes} == {"batch"}


def test_unknown_score_names_are_refused_clearly(tmp_path: Path) -> None:
    root = write_project(tmp_path / "shop")
    doc = {"features": {"risk": {"model_score": "churn"}}}
    (root / "segments.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as caught:
        load_project(root)
    assert caught.value.file == "segments.yaml"
    assert caught.value.path == "features.risk.model_score"
    assert "'churn' is not one of" in caught.value.message
    with pytest.raises(ConfigError, match="unknown model score 'churn'"):
        parse_definitions(doc)  # without the schema check, parsing still refuses it
    feature = schema("definitions")["$defs"]["segments"]["definitions"]["feature"]
    assert feature["properties"]["model_score"]["enum"] == list(MODEL_SCORES)


def test_model_scores_are_typed_for_conditions() -> None:
    d = parse_definitions(scored_document())
    types = {n: d.features.value_type(n) for n in ("churn_risk", "buy_propensity", "persona")}
    assert types == {"churn_risk": "float", "buy_propensity": "float", "persona": "int"}
    assert d.segment(RISKY).inputs == ("churn_risk", "product_views_7d")
    with pytest.raises(ConfigError, match="unknown feature 'cluster'"):
        parse_definitions({"segments": {"x": {"condition": {"cluster": 1}}}})  # not declared
