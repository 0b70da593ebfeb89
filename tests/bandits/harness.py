"""One description per bandit policy, so that a single contract test checks
every member of the family (in the spirit of river's ``check_estimator``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tailorkit.decide.bandits import (
    UCB1,
    EpsilonGreedy,
    LinearThompsonSampling,
    LinUCB,
    Policy,
    SegmentedPolicy,
    ThompsonSampling,
    UniformPolicy,
)

N_ARMS = 4
N_FEATURES = 3
SEGMENTS = ("new", "returning", "vip")


def no_context(rng: np.random.Generator) -> Any:
    return None


def segment_context(rng: np.random.Generator) -> Any:
    return SEGMENTS[int(rng.integers(len(SEGMENTS)))]


def feature_context(rng: np.random.Generator) -> Any:
    # Intercept first, so that a linear model can represent per-arm means.
    return [1.0, *rng.normal(size=N_FEATURES - 1).tolist()]


@dataclass(frozen=True)
class PolicySpec:
    """How to build a policy and draw contexts for it."""

    name: str
    make: Callable[[float, int], Policy]  # (floor, seed) -> policy
    context: Callable[[np.random.Generator], Any]
    learns: bool = True  # whether it should find the best arm

    def __str__(self) -> str:
        return self.name


SPECS = [
    PolicySpec("thompson", lambda f, s: ThompsonSampling(N_ARMS, floor=f, rng=s), no_context),
    PolicySpec(
        "thompson_top_two",
        lambda f, s: ThompsonSampling(N_ARMS, floor=f, top_two=0.5, rng=s),
        no_context,
    ),
    PolicySpec(
        "thompson_batched",
        lambda f, s: ThompsonSampling(N_ARMS, floor=f, rng=s, refresh_every=5),
        no_context,
    ),
    PolicySpec(
        "thompson_mc_20_arms",
        lambda f, s: ThompsonSampling(20, floor=f / 5, rng=s, refresh_every=10),
        no_context,
        learns=False,  # 20 arms need more rounds than the contract test runs
    ),
    PolicySpec("ucb1", lambda f, s: UCB1(N_ARMS, floor=f, rng=s), no_context),
    PolicySpec(
        "epsilon_greedy", lambda f, s: EpsilonGreedy(N_ARMS, 0.1, floor=f, rng=s), no_context
    ),
    PolicySpec("uniform", lambda f, s: UniformPolicy(N_ARMS, floor=f, rng=s), no_context, False),
    PolicySpec(
        "segmented_thompson",
        lambda f, s: SegmentedPolicy(ThompsonSampling(N_ARMS, floor=f), rng=s),
        segment_context,
    ),
    PolicySpec(
        "segmented_ucb1",
        lambda f, s: SegmentedPolicy(UCB1(N_ARMS, floor=f), rng=s),
        segment_context,
    ),
    PolicySpec(
        "linucb",
        lambda f, s: LinUCB(N_ARMS, N_FEATURES, alpha=0.5, floor=f, rng=s),
        feature_context,
    ),
    PolicySpec(
        "linear_thompson",
        lambda f, s: LinearThompsonSampling(N_ARMS, N_FEATURES, v=0.3, floor=f, rng=s),
        feature_context,
    ),
]

# Bernoulli environment used by the contract test: arm 2 is best everywhere.
ARM_MEANS = (0.2, 0.35, 0.7, 0.4)


def bernoulli_reward(arm: int, rng: np.random.Generator) -> float:
    means = ARM_MEANS + (0.2,) * 20  # extra arms for the 20-arm spec
    return float(rng.random() < means[arm])
