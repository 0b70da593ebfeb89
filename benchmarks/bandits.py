"""Bandit hot path: in-process decisions/s and reward updates/s.

Setup: 20 segments x 5 arms, Beta-Bernoulli Thompson sampling per segment
(``SegmentedPolicy(ThompsonSampling(5, floor=0.01))``), segments drawn at
random per call. Baselines, in the same process on the same segment sequence:

- decisions: ``rng.choice(5, p=p)`` per call from a fixed NumPy distribution
  (the segment's current arm probabilities);
- updates: incrementing Beta counts in a NumPy ``(20, 5)`` array per call.

A third line measures a realistic serving loop: batches of 2,000 decisions,
then their rewards applied with ``update_many`` (delayed, batched feedback);
each batch makes the next pull of every segment recompute its probabilities.

Run: ``.venv/bin/python benchmarks/bandits.py``. Prints JSON lines; the
decisions line is last.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np

from tailorkit.decide.bandits import SegmentedPolicy, ThompsonSampling

N_SEGMENTS = 20
N_ARMS = 5
N_CALLS = 100_000
REPEATS = 3
BATCH = 2_000


def best_rate(run: Callable[[], int]) -> float:
    """Calls per second of ``run`` (returns its call count), best of REPEATS."""
    best = 0.0
    for _ in range(REPEATS):
        start = time.perf_counter()
        calls = run()
        best = max(best, calls / (time.perf_counter() - start))
    return best


def make_policy(segments: list[str]) -> SegmentedPolicy:
    """A warmed-up policy: some history per segment, probabilities cached."""
    policy = SegmentedPolicy(ThompsonSampling(N_ARMS, floor=0.01), rng=0)
    rng = np.random.default_rng(1)
    means = rng.uniform(0.02, 0.1, size=(N_SEGMENTS, N_ARMS))
    for s, seg in enumerate(segments):
        arms = rng.integers(0, N_ARMS, 500)
        rewards = (rng.random(500) < means[s, arms]).astype(float)
        policy.update_many(arms.tolist(), rewards.tolist(), [seg] * 500)
        policy.pull(seg)
    return policy


def line(metric: str, value: float, baseline: float) -> str:
    return json.dumps(
        {
            "bench": "bandits",
            "metric": metric,
            "value": round(value),
            "baseline": round(baseline),
            "ratio": round(value / baseline, 2),
        }
    )


def main() -> None:
    segments = [f"segment-{i}" for i in range(N_SEGMENTS)]
    rng = np.random.default_rng(2)
    keys = [segments[i] for i in rng.integers(0, N_SEGMENTS, N_CALLS)]
    arms = rng.integers(0, N_ARMS, N_CALLS).tolist()
    rewards = (rng.random(N_CALLS) < 0.05).astype(float).tolist()
    policy = make_policy(segments)
    probs = {seg: np.array(policy.probabilities(seg)) for seg in segments}
    index = {seg: i for i, seg in enumerate(segments)}

    def decide() -> int:
        pull = policy.pull
        for key in keys:
            pull(key)
        return N_CALLS

    def decide_baseline() -> int:
        choice = np.random.default_rng(3).choice
        for key in keys:
            choice(N_ARMS, p=probs[key])
        return N_CALLS

    def update() -> int:
        upd = policy.update
        for key, arm, reward in zip(keys, arms, rewards, strict=True):
            upd(arm, reward, key)
        return N_CALLS

    def update_baseline() -> int:
        alpha = np.ones((N_SEGMENTS, N_ARMS))
        beta = np.ones((N_SEGMENTS, N_ARMS))
        for key, arm, reward in zip(keys, arms, rewards, strict=True):
            s = index[key]
            alpha[s, arm] += reward
            beta[s, arm] += 1.0 - reward
        return N_CALLS

    def serve_batched() -> int:
        pull = policy.pull
        for start in range(0, N_CALLS, BATCH):
            batch = keys[start : start + BATCH]
            chosen = [pull(key).arm for key in batch]
            policy.update_many(chosen, rewards[start : start + BATCH], batch)
        return N_CALLS

    decisions = best_rate(decide)
    decisions_base = best_rate(decide_baseline)
    updates = best_rate(update)
    updates_base = best_rate(update_baseline)
    batched = best_rate(serve_batched)

    sample = policy.pull(segments[0])
    assert sample.propensity == sample.probabilities[sample.arm]
    print(line("batched_serve_decisions_per_s", batched, decisions_base))
    print(line("updates_per_s", updates, updates_base))
    print(line("decisions_per_s", decisions, decisions_base))


if __name__ == "__main__":
    main()
