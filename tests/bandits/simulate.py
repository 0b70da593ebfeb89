"""Seeded bandit environments and a runner that measures pseudo-regret."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tailorkit.decide.bandits import Policy


@dataclass(frozen=True)
class Environment:
    """Draws a context and reports every arm's expected reward in it."""

    n_arms: int
    draw_context: Callable[[np.random.Generator], tuple[Any, np.ndarray]]
    bernoulli: bool = True

    def reward(self, means: np.ndarray, arm: int, rng: np.random.Generator) -> float:
        if self.bernoulli:
            return float(rng.random() < means[arm])
        return float(means[arm] + 0.1 * rng.normal())


def bernoulli_env(means: tuple[float, ...]) -> Environment:
    """Context-free Bernoulli arms."""
    mu = np.array(means)
    return Environment(len(means), lambda rng: (None, mu))


def segment_env(means: np.ndarray) -> Environment:
    """One row of Bernoulli means per segment; the segment is uniformly random."""
    names = [f"s{i}" for i in range(means.shape[0])]

    def draw(rng: np.random.Generator) -> tuple[Any, np.ndarray]:
        s = int(rng.integers(len(names)))
        return names[s], means[s]

    return Environment(means.shape[1], draw)


def linear_env(theta: np.ndarray) -> Environment:
    """Rewards theta_a . x + N(0, 0.1^2) with x = (1, z), z ~ N(0, I)."""

    def draw(rng: np.random.Generator) -> tuple[Any, np.ndarray]:
        x = np.concatenate([[1.0], rng.normal(size=theta.shape[1] - 1)])
        return x, theta @ x

    return Environment(theta.shape[0], draw, bernoulli=False)


def run(policy: Policy, env: Environment, horizon: int, seed: int) -> np.ndarray:
    """Cumulative pseudo-regret (sum of best mean minus chosen mean) per round."""
    rng = np.random.default_rng(seed)
    regret = np.empty(horizon)
    for t in range(horizon):
        ctx, means = env.draw_context(rng)
        arm = policy.pull(ctx).arm
        regret[t] = means.max() - means[arm]
        policy.update(arm, env.reward(means, arm, rng), ctx)
    return np.cumsum(regret)


def mean_regret(
    make: Callable[[int], Policy], env: Environment, horizon: int, seeds: range
) -> np.ndarray:
    """Cumulative regret averaged over seeds (``make(seed)`` builds a policy)."""
    return np.mean([run(make(s), env, horizon, 1000 + s) for s in seeds], axis=0)
