"""Sufficient statistics of every policy: additive, and enough to rebuild the policy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from tailorkit.decide.bandits import (
    UCB1,
    EpsilonGreedy,
    LinearThompsonSampling,
    LinUCB,
    Policy,
    SegmentedPolicy,
    ThompsonSampling,
    UniformPolicy,
    policy_from_state,
)

FACTORIES: dict[str, Callable[[], Policy]] = {
    "thompson": lambda: ThompsonSampling(3, prior_alpha=[1, 2, 3], floor=0.01),
    "ucb1": lambda: UCB1(3, initial_counts=[5, 5, 5], initial_sums=[1, 2, 3]),
    "epsilon": lambda: EpsilonGreedy(3, epsilon=0.2),
    "uniform": lambda: UniformPolicy(3),
    "segmented": lambda: SegmentedPolicy(ThompsonSampling(3)),
    "linucb": lambda: LinUCB(3, n_features=2, alpha=0.5),
    "lints": lambda: LinearThompsonSampling(3, n_features=2, v=0.3),
}


def batch(name: str, rng: np.random.Generator, n: int) -> tuple[list[int], list[float], list]:
    arms = rng.integers(0, 3, n).tolist()
    rewards = (rng.random(n) < 0.4).astype(float).tolist()
    if name == "segmented":
        contexts: list = rng.choice(["vip", "new"], n).tolist()
    elif name in ("linucb", "lints"):
        contexts = rng.normal(size=(n, 2)).tolist()
    else:
        contexts = [None] * n
    return arms, rewards, contexts


def probe(name: str) -> object:
    return {"segmented": "vip", "linucb": [0.3, -1.0], "lints": [0.3, -1.0]}.get(name)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_statistics_add_up_and_rebuild_the_policy(name: str) -> None:
    rng = np.random.default_rng(5)
    policy = FACTORIES[name]()
    first = batch(name, rng, 40)
    policy.update_many(*first)
    before = policy.statistics()
    second = batch(name, rng, 60)
    delta = policy.statistics_of(*second)
    policy.update_many(*second)
    after = policy.statistics()
    for field in set(before) | set(delta) | set(after):
        expected = before.get(field, 0.0) + delta.get(field, 0.0)
        assert after.get(field, 0.0) == pytest.approx(expected, abs=1e-8), field
    # counts are what was played: 100 observations in all
    counts = sum(v for k, v in after.items() if k.endswith("|n"))
    assert counts == pytest.approx(100.0)

    fresh = FACTORIES[name]()
    fresh.set_statistics(after)
    assert fresh.statistics().keys() >= {k for k, v in after.items() if v}
    np.testing.assert_allclose(
        fresh.probabilities(probe(name)), policy.probabilities(probe(name)), atol=1e-9
    )


def test_thompson_statistics_are_the_beta_counts() -> None:
    policy = ThompsonSampling(2, prior_alpha=2.0, prior_beta=3.0)
    policy.update_many([0, 0, 1, 0], [1.0, 0.0, 1.0, 1.0])
    fresh = ThompsonSampling(2, prior_alpha=2.0, prior_beta=3.0)
    fresh.set_statistics(policy.statistics())
    # alpha = prior + successes, beta = prior + failures
    assert fresh.posterior() == ([4.0, 3.0], [4.0, 3.0])


def test_warm_start_survives_a_state_round_trip() -> None:
    policy = UCB1(2, initial_counts=[10, 10], initial_sums=[2, 8])
    policy.update(0, 1.0)
    again = policy_from_state(policy.to_state())
    assert again.statistics() == {"0|n": 1.0, "0|r": 1.0, "1|n": 0.0, "1|r": 0.0}


def test_bad_statistics_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown statistic"):
        ThompsonSampling(2).set_statistics({"0|x": 1.0})
    with pytest.raises(ValueError, match="out of range"):
        ThompsonSampling(2).set_statistics({"5|n": 1.0})
