"""Bandit policies: pure cores that pick an arm and log its exact propensity.

Every policy has the same small API (river-style):

- ``pull(context) -> Decision`` with ``arm``, ``propensity`` (probability of
  the chosen arm) and ``probabilities`` (all arms);
- ``update(arm, reward, context)`` and ``update_many(arms, rewards, contexts)``
  for delayed, batched rewards;
- ``to_state()`` / ``from_state(state, rng)`` with JSON-serialisable state so
  a store or Redis adapter can persist and share it;
- a per-arm exploration ``floor`` and an injected, seeded numpy ``Generator``.

>>> from tailorkit.decide.bandits import SegmentedPolicy, ThompsonSampling
>>> policy = SegmentedPolicy(ThompsonSampling(n_arms=3, floor=0.02), rng=0)
>>> d = policy.pull("returning")
>>> policy.update(d.arm, 1.0, "returning")
>>> d.propensity == d.probabilities[d.arm]
True
"""

from tailorkit.decide.bandits.base import (
    Decision,
    Policy,
    RandomStream,
    apply_floor,
    policy_from_state,
)
from tailorkit.decide.bandits.classic import UCB1, EpsilonGreedy, UniformPolicy
from tailorkit.decide.bandits.linear import (
    LinearThompsonSampling,
    LinUCB,
    gaussian_argmax_probabilities,
)
from tailorkit.decide.bandits.segmented import SegmentedPolicy
from tailorkit.decide.bandits.thompson import (
    ThompsonSampling,
    argmax_probabilities,
    rank_probabilities,
    top_two_probabilities,
)

__all__ = [
    "UCB1",
    "Decision",
    "EpsilonGreedy",
    "LinUCB",
    "LinearThompsonSampling",
    "Policy",
    "RandomStream",
    "SegmentedPolicy",
    "ThompsonSampling",
    "UniformPolicy",
    "apply_floor",
    "argmax_probabilities",
    "gaussian_argmax_probabilities",
    "policy_from_state",
    "rank_probabilities",
    "top_two_probabilities",
]
