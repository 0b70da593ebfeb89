"""Clusters and personas on the demo shop: the hidden personas are found, ids stay put."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from tailorkit.learn.data import behaviour_features, fetch
from tailorkit.segment.clusters import (
    NOISE,
    ClusterConfig,
    ClusterModel,
    agreement,
    align_ids,
    elbow,
    fit_clusters,
    persona_name,
    transitions,
)
from tailorkit.segment.definitions import parse_definitions
from tests.learn.shop import demo_shop


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    s = demo_shop()
    frame = fetch(s.wh, behaviour_features(s.events, s.end)).set_index("person_id")
    return frame[frame.index.isin(s.personas.index)]


@pytest.fixture(scope="module")
def truth(features: pd.DataFrame) -> pd.Series:
    return demo_shop().personas.reindex(features.index)


@pytest.fixture(scope="module")
def kmeans(features: pd.DataFrame) -> ClusterModel:
    return fit_clusters(features, ClusterConfig(k_range=(2, 8)))


def test_kmeans_recovers_the_hidden_personas(
    kmeans: ClusterModel, features: pd.DataFrame, truth: pd.Series
) -> None:
    ari = agreement(kmeans.assign(features), truth)
    print(f"k-means: k={kmeans.k}, ARI={ari:.3f}, selection={kmeans.selection['curve']}")
    assert ari >= 0.6, f"adjusted Rand index {ari:.3f}"
    selection = kmeans.selection
    assert [c["k"] for c in selection["curve"]] == list(range(2, 9))
    assert (
        selection["best_k"]
        == kmeans.k
        == max(selection["curve"], key=lambda c: c["silhouette"])["k"]
    )
    assert 2 <= selection["elbow_k"] <= 8


def test_ward_recovers_the_personas(features: pd.DataFrame, truth: pd.Series) -> None:
    model = fit_clusters(features, ClusterConfig(method="ward", k=5))
    ari = agreement(model.assign(features), truth)
    assert model.k == 5 and ari >= 0.6, f"Ward ARI {ari:.3f}"


def test_density_methods_report_noise_as_a_group(features: pd.DataFrame, truth: pd.Series) -> None:
    model = fit_clusters(features, ClusterConfig(method="hdbscan"))
    labels = model.assign(features)
    by_id = {p.id: p for p in model.personas}
    assert sum(p.size for p in model.personas) == len(features)
    if (labels == NOISE).any():
        assert by_id[NOISE].name == "unclustered (noise)"
        assert by_id[NOISE].size == int((labels == NOISE).sum())
    assert agreement(labels, truth) > 0.3
    dbscan = fit_clusters(features, ClusterConfig(method="dbscan", min_samples=5))
    assert dbscan.k >= 1 and sum(p.size for p in dbscan.personas) == len(features)


def test_personas_are_described_and_named(kmeans: ClusterModel, features: pd.DataFrame) -> None:
    labels = kmeans.assign(features)
    assert sum(p.size for p in kmeans.personas) == len(features)
    names = [p.name for p in kmeans.personas]
    assert len(set(names)) == len(names)
    for p in kmeans.personas:
        members = features[labels == p.id]
        assert p.size == len(members)
        assert p.typical["sessions"] == pytest.approx(members.sessions.median())
        diffs = list(p.distinguishing.values())
        assert abs(diffs[0]) == max(abs(d) for d in diffs)  # largest first
    most_mobile = max(kmeans.personas, key=lambda p: p.distinguishing["mobile_share"])
    most_searching = max(kmeans.personas, key=lambda p: p.distinguishing["search_share"])
    assert "mobile" in most_mobile.name
    assert "search-driven" in most_searching.name


def test_names_from_standardized_differences() -> None:
    assert persona_name({"mobile_share": -1.0, "purchases": -0.9}) == "desktop browsers"
    assert persona_name({"avg_view_price": 1.1, "revenue": 0.7}) == "premium, high-spend shoppers"
    assert persona_name({"unknown_feature": 2.0}) == "high-unknown_feature shoppers"


def test_ids_are_stable_across_retraining(
    kmeans: ClusterModel, features: pd.DataFrame, truth: pd.Series
) -> None:
    # retrain on a different sample, rows shuffled: k-means numbers clusters arbitrarily
    sample = features.sample(frac=0.8, random_state=7)
    fresh = fit_clusters(sample, ClusterConfig(k=kmeans.k, random_state=3))
    aligned = fit_clusters(sample, ClusterConfig(k=kmeans.k, random_state=3), previous=kmeans)
    old = pd.Series(kmeans.assign(sample), index=sample.index)
    new = pd.Series(aligned.assign(sample), index=sample.index)
    assert (old == new).mean() > 0.9  # same persons keep the same ids
    assert sorted(aligned.ids) == sorted(kmeans.ids)
    assert aligned.alignment["drift"]["max_psi"] < 0.1  # same population
    assert transitions(old.to_dict(), new.to_dict())["stayed_share"] > 0.9
    assert fresh.k == aligned.k


def test_drift_and_new_clusters_get_fresh_ids(kmeans: ClusterModel, features: pd.DataFrame) -> None:
    shifted = features.copy()
    shifted["sessions"] *= 4  # everyone comes back four times as often
    model = fit_clusters(shifted, ClusterConfig(k=kmeans.k + 1), previous=kmeans)
    drift = model.alignment["drift"]
    assert drift["features_psi"]["sessions"] > 0.25
    assert drift["features_psi"]["mobile_share"] < 0.1
    fresh = [i for i in model.ids if i > max(kmeans.ids)]
    assert fresh and min(fresh) == max(kmeans.ids) + 1
    assert drift["appeared"] == sorted(set(model.ids) - set(kmeans.ids))


def test_permuted_clusters_keep_their_ids(kmeans: ClusterModel, features: pd.DataFrame) -> None:
    # the same clusters, found again in another order under arbitrary new numbers
    rng = np.random.default_rng(1)
    order = rng.permutation(kmeans.k)
    permuted = ClusterModel.from_dict(kmeans.to_dict())
    permuted.ids = [100 + i for i in range(kmeans.k)]
    permuted.centroids = [kmeans.centroids[i] for i in order]
    mapping = align_ids(kmeans, permuted, max_distance=1.5)
    assert {new: mapping[new] for new in permuted.ids} == {
        100 + j: kmeans.ids[i] for j, i in enumerate(order)
    }
    # and a full retraining on shuffled rows assigns every person the id it had
    shuffled = features.sample(frac=1.0, random_state=5)
    again = fit_clusters(shuffled, ClusterConfig(k=kmeans.k, random_state=9), previous=kmeans)
    same = again.assign(features) == kmeans.assign(features)
    assert same.mean() > 0.97 and again.alignment["drift"]["appeared"] == []


def test_retired_ids_are_never_given_to_another_group(
    kmeans: ClusterModel, features: pd.DataFrame
) -> None:
    labels = kmeans.assign(features)
    gone = max(kmeans.ids)  # the group that leaves holds the highest id
    without = features[labels != gone]
    config = ClusterConfig(k=kmeans.k - 1, random_state=2)
    second = fit_clusters(without, config, previous=kmeans)
    assert gone not in second.ids and second.alignment["retired"] == [gone]
    third = fit_clusters(features, ClusterConfig(k=kmeans.k, random_state=2), previous=second)
    back = sorted(set(third.ids) - set(second.ids))
    assert back and gone not in third.ids and min(back) > gone
    assert third.alignment["retired"] == [gone]  # remembered over two trainings


def test_model_round_trips_and_becomes_segments(
    kmeans: ClusterModel, features: pd.DataFrame
) -> None:
    again = ClusterModel.from_dict(kmeans.to_dict())
    np.testing.assert_array_equal(again.assign(features), kmeans.assign(features))
    segments = kmeans.segments()
    assert len(segments) == kmeans.k
    first = kmeans.personas[0]
    assert segments[f"persona_{first.id}"]["condition"] == {"cluster": first.id}
    # the artifact's fragment parses as segments.yaml: personas are segments like any other
    definitions = parse_definitions(kmeans.segments_document("persona"))
    assert definitions.features.value_type("persona") == "int"
    assert definitions.segment(f"persona_{first.id}").inputs == ("persona",)


def test_configurable_features(features: pd.DataFrame, truth: pd.Series) -> None:
    config = replace(
        ClusterConfig(),
        features=("sessions", "views_per_session", "cart_adds_per_session",
                  "purchases_per_session", "avg_view_price", "mobile_share",
                  "searches_per_session"),
        log=("sessions", "views_per_session", "avg_view_price", "searches_per_session"),
        k=5,
    )  # fmt: skip
    model = fit_clusters(features, config)
    assert model.preprocessor.columns == list(config.features)
    assert agreement(model.assign(features), truth) >= 0.6
    with pytest.raises(KeyError, match="not in the data"):
        fit_clusters(features, replace(config, features=("nope",), log=()))


def test_elbow() -> None:
    assert elbow([2, 3, 4, 5, 6], [1000, 400, 150, 130, 120]) == 4
