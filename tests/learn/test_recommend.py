"""Recommendations: metrics by hand, the demo holdout table, the served model's contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tailorkit.learn.artifacts import ArtifactStore
from tailorkit.learn.recommend import Als, Interactions, ranking_metrics, top_k
from tailorkit.learn.recommender import (
    NAME,
    RecConfig,
    Recommender,
    RecResult,
    ServedRecommender,
    save,
    train_recommender,
)
from tests.learn.shop import demo_shop

SMALL_GRID = RecConfig(factors_grid=(16, 32), alpha_grid=(1.0,))


def test_ranking_metrics_by_hand() -> None:
    ranked = np.array([[4, 2, 9], [1, 0, 3]])
    relevant = [{2, 9, 7}, {5}]
    m = ranking_metrics(ranked, relevant, k=3)
    assert m["precision"] == pytest.approx((2 / 3 + 0) / 2, abs=1e-4)
    assert m["recall"] == pytest.approx((2 / 3 + 0) / 2, abs=1e-4)
    dcg = 1 / np.log2(3) + 1 / np.log2(4)
    idcg = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert m["ndcg"] == pytest.approx(dcg / idcg / 2, abs=1e-4)
    assert m["map"] == pytest.approx(((1 / 2 + 2 / 3) / 3) / 2, abs=1e-4)


def test_top_k_excludes() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.5]])
    assert top_k(scores, 2, sp.csr_matrix(np.array([[1, 0, 0, 0]]))).tolist() == [[1, 3]]


def test_fold_in_matches_implicit() -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    rng = np.random.default_rng(0)
    dense = (rng.random((60, 25)) < 0.2) * rng.integers(1, 4, (60, 25))
    frame = pd.DataFrame(
        [(f"u{u}", f"i{i:02d}", float(dense[u, i])) for u, i in zip(*dense.nonzero(), strict=True)],
        columns=["person_id", "product_id", "views"],
    )
    data = Interactions.from_frame(frame, users=[f"u{u}" for u in range(60)],
                                   items=[f"i{i:02d}" for i in range(25)])  # fmt: skip
    als = Als(factors=8, alpha=2.0, regularization=0.1, iterations=5).fit(data)
    reference = AlternatingLeastSquares(factors=8, alpha=2.0, regularization=0.1, use_cg=False)
    reference.item_factors = als.item_factors
    reference.user_factors = als.user_factors
    expected = reference.recalculate_user(3, data.matrix[3])
    np.testing.assert_allclose(
        als.fold_in(data.matrix[3]), np.atleast_2d(expected), rtol=1e-3, atol=1e-4
    )


@pytest.fixture(scope="module")
def trained() -> RecResult:
    shop = demo_shop()
    return train_recommender(shop.source, shop.end, SMALL_GRID)


def test_als_or_hybrid_beats_popularity_on_the_demo_holdout(trained: RecResult) -> None:
    table = {row["model"]: row for row in trained.report["warm"]}
    print({m: (r["precision"], r["ndcg"], r["coverage"]) for m, r in table.items()})
    assert set(table) == {"popularity", "als", "content", "hybrid"}
    best = max(table["als"]["ndcg"], table["hybrid"]["ndcg"])
    assert best > 1.3 * table["popularity"]["ndcg"]
    assert table["hybrid"]["coverage"] > table["popularity"]["coverage"]
    assert all(r["users"] == table["popularity"]["users"] > 200 for r in table.values())
    cold = {row["model"]: row for row in trained.report["cold"]}
    assert cold["hybrid"]["ndcg"] > cold["popularity"]["ndcg"]  # one product of history helps


@pytest.fixture(scope="module")
def served(trained: RecResult, tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    store = ArtifactStore(tmp_path_factory.mktemp("models"))
    with store.run(NAME) as run:
        save(trained, run.path)
        run.metrics = trained.report
    return Recommender.load(store)


def test_served_model_excludes_purchases_and_applies_filters(
    trained: RecResult, served: Recommender
) -> None:
    data = trained.suite.data
    buyers = np.flatnonzero(np.diff(data.purchased.indptr) > 0)
    person = data.users[int(buyers[0])]
    bought = {data.items[i] for i in data.purchased[int(buyers[0])].indices}
    recs = served.recommend(person, k=20)
    assert len(recs) == 20 and not bought & {p for p, _ in recs}
    scores = [s for _, s in recs]
    assert scores == sorted(scores, reverse=True)
    with_bought = served.recommend(person, k=400, exclude_purchased=False)
    assert bought <= {p for p, _ in with_bought}
    catalog = {item["product_id"]: item for item in served.items}
    shoes = served.recommend(person, k=5, filters={"in_stock": True, "category": "shoes"})
    assert len(shoes) == 5
    assert all(catalog[p]["category"] == "shoes" and catalog[p]["in_stock"] for p, _ in shoes)
    cheap = served.recommend(person, k=5, filters={"price": {"$lt": 20}})
    assert all(catalog[p]["price"] < 20 for p, _ in cheap)
    assert served.recommend(person, k=5, filters={"category": "no-such"}) == []


def test_cold_start_and_versions(trained: RecResult, served: Recommender) -> None:
    popular = served.recommend(None, k=5)
    assert popular == served.recommend("never-seen", k=5)
    order = np.argsort(-trained.suite.popularity.popularity)[:5]
    assert [p for p, _ in popular] == [trained.suite.data.items[i] for i in order]
    shoes = [i["product_id"] for i in served.items if i["category"] == "shoes"][:3]
    from_history = served.recommend("never-seen", k=10, history=shoes)
    assert from_history != popular
    catalog = {item["product_id"]: item for item in served.items}
    assert sum(catalog[p]["category"] == "shoes" for p, _ in from_history) >= 5
    similar = served.similar_items(shoes[0], k=5)
    assert shoes[0] not in {p for p, _ in similar} and len(similar) == 5
    assert served.model_version.startswith("recommendations@")
    with pytest.raises(ValueError, match="model must be one of"):
        served.recommend(None, model="magic")


def test_artifact_round_trip(trained: RecResult, tmp_path: Path) -> None:
    save(trained, tmp_path)
    loaded = Recommender.from_directory(tmp_path, "v1")
    users = np.arange(20)
    np.testing.assert_allclose(
        loaded.suite.hybrid.scores(users), trained.suite.hybrid.scores(users), rtol=1e-5, atol=1e-6
    )


def test_serving_swaps_versions_and_survives_a_broken_one(
    trained: RecResult, tmp_path: Path
) -> None:
    store = ArtifactStore(tmp_path)
    served_now = ServedRecommender(store, check_seconds=0)
    assert served_now.get() is None
    with store.run(NAME) as first:
        save(trained, first.path)
    current = served_now.get()
    assert current is not None and current.version == first.version
    with store.run(NAME) as broken:
        (broken.path / "model.json").write_text("{not json")
    assert store.current(NAME) == broken.version
    still = served_now.get()
    assert still is current  # the broken version is never served
    with store.run(NAME) as fixed:
        save(trained, fixed.path)
    newest = served_now.get()
    assert newest is not None and newest.version == fixed.version
    assert newest.recommend(None, k=3) == current.recommend(None, k=3)
