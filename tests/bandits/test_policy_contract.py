"""Contract every bandit policy must honour (see ``harness.SPECS``)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from tailorkit.decide.bandits import Decision, Policy, policy_from_state

from .harness import SPECS, PolicySpec, bernoulli_reward

FLOOR = 0.02


def play(
    policy: Policy, spec: PolicySpec, rounds: int, seed: int
) -> list[tuple[Any, Decision, float]]:
    """Pull and update ``rounds`` times; returns (context, decision, reward)."""
    env = np.random.default_rng(seed)
    log = []
    for _ in range(rounds):
        ctx = spec.context(env)
        decision = policy.pull(ctx)
        reward = bernoulli_reward(decision.arm, env)
        policy.update(decision.arm, reward, ctx)
        log.append((ctx, decision, reward))
    return log


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_probabilities_are_valid_and_propensity_matches(spec: PolicySpec) -> None:
    policy = spec.make(0.0, 1)
    for _, d, _ in play(policy, spec, 150, seed=2):
        assert len(d.probabilities) == policy.n_arms
        assert all(p >= 0.0 for p in d.probabilities)
        assert sum(d.probabilities) == pytest.approx(1.0, abs=1e-9)
        assert 0 <= d.arm < policy.n_arms
        assert d.propensity == d.probabilities[d.arm]
        assert d.propensity > 0.0  # an arm with probability 0 is never drawn


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_floor_is_respected_and_logged(spec: PolicySpec) -> None:
    policy = spec.make(FLOOR, 3)
    floor = policy.floor
    for ctx, d, _ in play(policy, spec, 150, seed=4):
        assert min(d.probabilities) >= floor - 1e-12
        assert policy.probabilities(ctx) is not None


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_floor_above_one_over_k_is_rejected(spec: PolicySpec) -> None:
    with pytest.raises(ValueError, match="floor"):
        spec.make(0.9, 0)


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_draws_follow_the_logged_probabilities(spec: PolicySpec) -> None:
    """Without updates the arm frequencies must match ``probabilities``."""
    policy = spec.make(FLOOR, 5)
    play(policy, spec, 60, seed=6)
    ctx = spec.context(np.random.default_rng(7))
    n = 20_000
    counts = np.bincount([policy.pull(ctx).arm for _ in range(n)], minlength=policy.n_arms)
    p = np.array(policy.probabilities(ctx))
    sd = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(counts / n - p) <= 5 * sd + 1e-9)


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_state_round_trip_gives_identical_decisions(spec: PolicySpec) -> None:
    original = spec.make(FLOOR, 8)
    play(original, spec, 80, seed=9)
    state = json.loads(json.dumps(original.to_state()))
    restored = policy_from_state(state, rng=123)
    original.set_rng(123)
    env_a, env_b = np.random.default_rng(10), np.random.default_rng(10)
    for _ in range(40):  # interleave pulls and updates after the restore
        ctx_a, ctx_b = spec.context(env_a), spec.context(env_b)
        da, db = original.pull(ctx_a), restored.pull(ctx_b)
        assert da == db
        original.update(da.arm, bernoulli_reward(da.arm, env_a), ctx_a)
        restored.update(db.arm, bernoulli_reward(db.arm, env_b), ctx_b)
    assert json.dumps(original.to_state()) == json.dumps(restored.to_state())


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_update_many_equals_sequential_updates(spec: PolicySpec) -> None:
    log = play(spec.make(0.0, 11), spec, 60, seed=12)
    contexts = [c for c, _, _ in log]
    arms = [d.arm for _, d, _ in log]
    rewards = [r for _, _, r in log]
    one, many = spec.make(0.0, 13), spec.make(0.0, 13)
    for ctx, arm, reward in zip(contexts, arms, rewards, strict=True):
        one.update(arm, reward, ctx)
    many.update_many(arms, rewards, None if contexts[0] is None else contexts)
    probe = spec.context(np.random.default_rng(14))
    assert one.probabilities(probe) == pytest.approx(many.probabilities(probe), abs=1e-9)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.learns], ids=str)
def test_learns_the_best_arm(spec: PolicySpec) -> None:
    policy = spec.make(0.0, 15)
    log = play(policy, spec, 1500, seed=16)
    late = np.bincount([d.arm for _, d, _ in log[-500:]], minlength=policy.n_arms)
    assert int(np.argmax(late)) == 2
    assert late[2] / 500 > 0.6


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_out_of_range_arm_is_rejected(spec: PolicySpec) -> None:
    policy = spec.make(0.0, 17)
    ctx = spec.context(np.random.default_rng(18))
    with pytest.raises(ValueError):
        policy.update(policy.n_arms, 1.0, ctx)


def test_unknown_state_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown policy kind"):
        policy_from_state({"kind": "nope"})
    state = SPECS[0].make(0.0, 0).to_state()
    with pytest.raises(ValueError, match="is not"):
        type(SPECS[4].make(0.0, 0)).from_state(state)
