"""Unit tests of the bandit math and of policy-specific behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from tailorkit.decide.bandits import (
    UCB1,
    EpsilonGreedy,
    LinearThompsonSampling,
    RandomStream,
    SegmentedPolicy,
    ThompsonSampling,
    apply_floor,
    argmax_probabilities,
    gaussian_argmax_probabilities,
    rank_probabilities,
    top_two_probabilities,
)
from tailorkit.decide.bandits.thompson import _argmax_quadrature


def mc_argmax(alpha: list[float], beta: list[float], n: int = 400_000) -> np.ndarray:
    draws = np.random.default_rng(99).beta(alpha, beta, size=(n, len(alpha)))
    return np.bincount(draws.argmax(axis=1), minlength=len(alpha)) / n


@pytest.mark.parametrize(
    ("alpha", "beta"),
    [
        ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]),
        ([10.0, 20.0, 30.0, 40.0, 50.0], [90.0, 80.0, 70.0, 60.0, 50.0]),
        ([0.5, 3.0, 1.0], [0.5, 1.0, 0.2]),  # shapes below one: singular densities
        ([857.0, 3.0, 47.0, 8.0], [200_000.0, 500.0, 10_000.0, 300.0]),  # peaked + diffuse
        ([1000.0, 1001.0], [1000.0, 999.0]),
    ],
)
def test_argmax_probabilities_match_monte_carlo(alpha: list[float], beta: list[float]) -> None:
    exact = argmax_probabilities(alpha, beta)
    assert exact.sum() == pytest.approx(1.0)
    assert np.allclose(exact, mc_argmax(alpha, beta), atol=0.004)


def test_argmax_two_arms_closed_form() -> None:
    # P(Beta(2, 1) > U(0, 1)) = E[X^1] under U... = 2/3.
    assert argmax_probabilities([1.0, 2.0], [1.0, 1.0])[1] == pytest.approx(2 / 3, abs=1e-6)


def test_monte_carlo_path_for_many_arms_agrees_with_quadrature() -> None:
    rng = np.random.default_rng(0)
    alpha = rng.uniform(5, 50, size=20)
    beta = rng.uniform(50, 100, size=20)
    mc = argmax_probabilities(alpha, beta)  # 20 > QUADRATURE_MAX_ARMS: Monte Carlo
    quad = _argmax_quadrature(alpha, beta)
    assert np.allclose(mc, quad / quad.sum(), atol=0.01)
    assert np.array_equal(mc, argmax_probabilities(alpha, beta))  # fixed seed: reproducible


def test_rank_probabilities_form_a_slate() -> None:
    alpha, beta = [5.0, 6.0, 7.0, 8.0, 2.0], [10.0, 10.0, 10.0, 10.0, 10.0]
    p = rank_probabilities(alpha, beta, n_slots=3, n_draws=50_000, seed=1)
    assert p.shape == (5, 3)
    assert np.allclose(p.sum(axis=0), 1.0)
    assert np.all(p.sum(axis=1) <= 1.0 + 1e-12)  # an arm fills at most one slot
    assert np.allclose(p[:, 0], argmax_probabilities(alpha, beta), atol=0.01)


def test_top_two_formula_matches_the_resampling_procedure() -> None:
    alpha, beta = [3.0, 5.0, 8.0], [7.0, 5.0, 4.0]
    leader_prob = 0.5
    formula = top_two_probabilities(argmax_probabilities(alpha, beta), leader_prob)
    rng = np.random.default_rng(3)
    n = 40_000
    counts = np.zeros(3)
    for _ in range(n):
        leader = int(np.argmax(rng.beta(alpha, beta)))
        if rng.random() < leader_prob:
            counts[leader] += 1
            continue
        challenger = leader
        while challenger == leader:
            challenger = int(np.argmax(rng.beta(alpha, beta)))
        counts[challenger] += 1
    assert np.allclose(formula, counts / n, atol=0.01)


def test_gaussian_argmax_matches_monte_carlo() -> None:
    mean = np.array([0.1, 0.3, 0.25, -0.2])
    sd = np.array([0.2, 0.05, 0.3, 0.5])
    draws = np.random.default_rng(4).normal(mean, sd, size=(400_000, 4))
    mc = np.bincount(draws.argmax(axis=1), minlength=4) / len(draws)
    assert np.allclose(gaussian_argmax_probabilities(mean, sd), mc, atol=0.004)


def test_apply_floor_keeps_a_distribution() -> None:
    p = apply_floor([0.7, 0.3, 0.0, 0.0], 0.05)
    assert min(p) == pytest.approx(0.05)
    assert sum(p) == pytest.approx(1.0)


def test_priors_warm_start_thompson() -> None:
    policy = ThompsonSampling(2, prior_alpha=[2.0, 30.0], prior_beta=[30.0, 2.0])
    assert policy.probabilities()[1] > 0.999


def test_thompson_rejects_rewards_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ThompsonSampling(2).update(0, 2.0)


def test_refresh_every_batches_probability_updates() -> None:
    policy = ThompsonSampling(2, refresh_every=3)
    before = policy.probabilities()
    policy.update(1, 1.0)
    policy.update(1, 1.0)
    assert policy.probabilities() == before  # two pending updates: still cached
    policy.update(1, 1.0)
    assert policy.probabilities()[1] > before[1]


def test_ucb1_plays_unplayed_arms_first_and_then_the_best() -> None:
    policy = UCB1(3, rng=0)
    seen = set()
    for _ in range(3):
        d = policy.pull()
        seen.add(d.arm)
        policy.update(d.arm, 0.5)
    assert seen == {0, 1, 2}
    policy.update_many([0, 1, 2] * 50, [0.2, 0.4, 0.9] * 50)
    assert policy.pull().arm == 2


def test_epsilon_greedy_ties_share_the_greedy_mass() -> None:
    policy = EpsilonGreedy(4, epsilon=0.2)
    assert policy.probabilities() == pytest.approx((0.25, 0.25, 0.25, 0.25))


def test_segments_learn_independently_from_the_template_prior() -> None:
    policy = SegmentedPolicy(ThompsonSampling(2, prior_alpha=[1.0, 3.0]), rng=0)
    policy.update_many([0, 1] * 20, [1.0, 0.0] * 20, [{"segment": "vip"}] * 40)
    assert policy.probabilities("vip")[0] > 0.99
    assert policy.probabilities("new")[1] > 0.5  # fresh segment: template prior only
    assert set(policy.to_state()["segments"]) == {"vip", "new"}


def test_segmented_rejects_non_string_contexts() -> None:
    policy = SegmentedPolicy(ThompsonSampling(2))
    with pytest.raises(TypeError):
        policy.pull(3)
    with pytest.raises(ValueError, match="context"):
        policy.update_many([0], [1.0])


def test_segmented_needs_a_context_free_template() -> None:
    with pytest.raises(TypeError, match="context-free"):
        SegmentedPolicy(LinearThompsonSampling(2, n_features=3))


def test_linear_policy_checks_the_feature_dimension() -> None:
    policy = LinearThompsonSampling(2, n_features=3)
    with pytest.raises(ValueError, match="features"):
        policy.pull([1.0, 2.0])


def test_random_stream_is_reproducible() -> None:
    a, b = RandomStream(5, block=8), RandomStream(np.random.default_rng(5), block=3)
    assert [a.uniform() for _ in range(20)] == [b.uniform() for _ in range(20)]


def test_growthbook_payload_follows_the_contextual_bandit_format() -> None:
    policy = SegmentedPolicy(ThompsonSampling(3, floor=0.01), rng=0)
    policy.update_many([2] * 30, [1.0] * 30, ["pro"] * 30)
    payload = policy.to_growthbook([("pro", {"plan": "pro"}), ("rest", {})], version=7)
    assert payload["banditVersion"] == 7
    leaves = payload["contexts"]
    assert [leaf["leafId"] for leaf in leaves] == [1, 2]
    assert leaves[0]["condition"] == {"plan": "pro"} and leaves[1]["condition"] == {}
    assert leaves[0]["weights"] == list(policy.probabilities("pro"))
    assert leaves[0]["weights"][2] > 0.9 and sum(leaves[1]["weights"]) == pytest.approx(1.0)
    assert "banditVersion" not in policy.to_growthbook([("rest", {})])
