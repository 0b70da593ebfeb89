"""Count-based policies: UCB1, epsilon-greedy and the uniform baseline.

UCB1 and greedy choices are deterministic, so their propensities are 1 for
the chosen arm (shared evenly among tied arms) and 0 elsewhere, unless an
exploration floor is set. Off-policy evaluation needs every arm to have a
positive propensity, so give these policies a floor when their logs will be
used for OPE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

from tailorkit.decide.bandits.base import (
    CachedPolicy,
    RngLike,
    argmax_ties,
    as_float_list,
    uniform_over,
)

__all__ = ["UCB1", "EpsilonGreedy", "UniformPolicy"]

M = TypeVar("M", bound="_MeanPolicy")


class _MeanPolicy(CachedPolicy):
    """Keeps per-arm pull counts and reward sums (with optional warm start)."""

    def __init__(
        self,
        n_arms: int,
        floor: float = 0.0,
        rng: RngLike = None,
        refresh_every: int = 1,
        initial_counts: float | Sequence[float] = 0.0,
        initial_sums: float | Sequence[float] = 0.0,
    ) -> None:
        super().__init__(n_arms, floor, rng, refresh_every)
        self.initial_counts = as_float_list(initial_counts, n_arms, "initial_counts")
        self.initial_sums = as_float_list(initial_sums, n_arms, "initial_sums")
        self.counts = list(self.initial_counts)
        self.sums = list(self.initial_sums)

    def means(self) -> list[float]:
        """Empirical mean reward per arm (0 for arms never played)."""
        return [s / n if n > 0 else 0.0 for s, n in zip(self.sums, self.counts, strict=True)]

    def _record(self, arm: int, reward: float) -> None:
        self.counts[arm] += 1.0
        self.sums[arm] += reward

    def _totals(self) -> tuple[list[float], list[float]]:
        counts = [c - c0 for c, c0 in zip(self.counts, self.initial_counts, strict=True)]
        sums = [s - s0 for s, s0 in zip(self.sums, self.initial_sums, strict=True)]
        return counts, sums

    def _set_totals(self, counts: list[float], sums: list[float]) -> None:
        self.counts = [c0 + c for c0, c in zip(self.initial_counts, counts, strict=True)]
        self.sums = [s0 + s for s0, s in zip(self.initial_sums, sums, strict=True)]

    def _mean_state(self) -> dict[str, Any]:
        state = self._base_state()
        state.update(
            counts=list(self.counts),
            sums=list(self.sums),
            initial_counts=list(self.initial_counts),
            initial_sums=list(self.initial_sums),
        )
        return state

    def _restore_counts(self: M, state: dict[str, Any]) -> M:
        self.counts = [float(v) for v in state["counts"]]
        self.sums = [float(v) for v in state["sums"]]
        # states saved before the warm start was recorded count everything as learned
        zeros = [0.0] * self.n_arms
        self.initial_counts = [float(v) for v in state.get("initial_counts", zeros)]
        self.initial_sums = [float(v) for v in state.get("initial_sums", zeros)]
        return self


class UCB1(_MeanPolicy):
    """UCB1 (Auer et al., 2002): play the arm with the highest upper bound.

    Score = mean + ``c`` * sqrt(2 ln t / n); unplayed arms come first. Rewards
    are assumed to lie in [0, 1] for the bound to be calibrated. Warm start
    with ``initial_counts`` / ``initial_sums``.

    >>> policy = UCB1(n_arms=2, initial_counts=[10, 10], initial_sums=[2, 8], rng=0)
    >>> policy.pull().arm
    1
    >>> UCB1(n_arms=2, floor=0.1).probabilities()  # both unplayed: a tie
    (0.5, 0.5)
    """

    kind = "ucb1"

    def __init__(
        self,
        n_arms: int,
        c: float = 1.0,
        floor: float = 0.0,
        rng: RngLike = None,
        refresh_every: int = 1,
        initial_counts: float | Sequence[float] = 0.0,
        initial_sums: float | Sequence[float] = 0.0,
    ) -> None:
        super().__init__(n_arms, floor, rng, refresh_every, initial_counts, initial_sums)
        self.c = c

    def scores(self) -> list[float]:
        """Upper confidence bound per arm (``inf`` for unplayed arms)."""
        total = sum(self.counts)
        log_t = math.log(max(total, 1.0))
        return [
            s / n + self.c * math.sqrt(2.0 * log_t / n) if n > 0 else math.inf
            for s, n in zip(self.sums, self.counts, strict=True)
        ]

    def _compute(self) -> list[float]:
        scores = self.scores()
        if math.inf in scores:
            return uniform_over(self.n_arms, [i for i, v in enumerate(scores) if v == math.inf])
        return uniform_over(self.n_arms, argmax_ties(scores))

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable state: configuration and counts."""
        state = self._mean_state()
        state["c"] = self.c
        return state

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> UCB1:
        policy = cls(
            n_arms=state["n_arms"],
            c=state["c"],
            floor=state["floor"],
            refresh_every=state["refresh_every"],
        )
        return policy._restore_counts(state)


class EpsilonGreedy(_MeanPolicy):
    """Epsilon-greedy: the best empirical arm with probability 1 - epsilon,
    a uniformly random arm otherwise.

    The mixture is folded into one probability vector, so the propensity of
    every arm is at least ``epsilon / K`` (before any extra floor).

    >>> policy = EpsilonGreedy(n_arms=4, epsilon=0.2, rng=0)
    >>> policy.update_many([0, 1], [0.0, 1.0])
    >>> [round(p, 3) for p in policy.probabilities()]
    [0.05, 0.85, 0.05, 0.05]
    """

    kind = "epsilon_greedy"

    def __init__(
        self,
        n_arms: int,
        epsilon: float = 0.1,
        floor: float = 0.0,
        rng: RngLike = None,
        refresh_every: int = 1,
        initial_counts: float | Sequence[float] = 0.0,
        initial_sums: float | Sequence[float] = 0.0,
    ) -> None:
        super().__init__(n_arms, floor, rng, refresh_every, initial_counts, initial_sums)
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError("epsilon must be in [0, 1]")
        self.epsilon = epsilon

    def _compute(self) -> list[float]:
        greedy = uniform_over(self.n_arms, argmax_ties(self.means()))
        explore = self.epsilon / self.n_arms
        return [explore + (1.0 - self.epsilon) * g for g in greedy]

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable state: configuration and counts."""
        state = self._mean_state()
        state["epsilon"] = self.epsilon
        return state

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> EpsilonGreedy:
        policy = cls(
            n_arms=state["n_arms"],
            epsilon=state["epsilon"],
            floor=state["floor"],
            refresh_every=state["refresh_every"],
        )
        return policy._restore_counts(state)


class UniformPolicy(_MeanPolicy):
    """Uniform random allocation (the A/B/n baseline); still tracks means.

    >>> UniformPolicy(n_arms=4).probabilities()
    (0.25, 0.25, 0.25, 0.25)
    """

    kind = "uniform"

    def _compute(self) -> list[float]:
        return [1.0 / self.n_arms] * self.n_arms

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable state: configuration and counts."""
        return self._mean_state()

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> UniformPolicy:
        policy = cls(n_arms=state["n_arms"], floor=state["floor"])
        policy.refresh_every = state["refresh_every"]
        return policy._restore_counts(state)
