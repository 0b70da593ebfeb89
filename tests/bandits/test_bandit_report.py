"""The bandit report against independent computations (scipy, pandas, simulation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tailorkit.decide.bandits import UCB1, SegmentedPolicy, ThompsonSampling
from tailorkit.measure.bandit_report import bandit_report, posteriors_of
from tailorkit.measure.ope_logs import BanditLog

MEANS = np.array([0.05, 0.10, 0.20])


def run_bandit(n: int, seed: int) -> BanditLog:
    """A floored Thompson sampler in a Bernoulli world, logged as the server logs it."""
    rng = np.random.default_rng(seed)
    policy = ThompsonSampling(3, floor=0.05, rng=seed + 1000, refresh_every=20)
    arms, rewards, props = [], [], []
    for _ in range(n):
        d = policy.pull()
        reward = float(rng.random() < MEANS[d.arm])
        policy.update(d.arm, reward)
        arms.append(d.arm)
        rewards.append(reward)
        props.append(d.propensity)
    return BanditLog(
        ("a", "b", "c"), np.array(arms), np.array(rewards), np.array(props),
        timestamp=1_700_000_000.0 + np.arange(n) * 60.0,
    )  # fmt: skip


def test_posteriors_match_scipy() -> None:
    posteriors = {"vip": ([3.0, 1.5], [7.0, 40.0]), "other": ([1.0, 12.0], [1.0, 2.0])}
    report = bandit_report(None, posteriors, arms=["x", "y"], alpha=0.1)
    assert report["allocation"] is None and report["reward"] is None
    for row in report["posteriors"]:
        a, b = posteriors[row["segment"]][0], posteriors[row["segment"]][1]
        i = ["x", "y"].index(row["arm"])
        dist = stats.beta(a[i], b[i])
        assert row["mean"] == pytest.approx(dist.mean(), rel=1e-12)
        assert row["ci_low"] == pytest.approx(dist.ppf(0.05), rel=1e-9)
        assert row["ci_high"] == pytest.approx(dist.ppf(0.95), rel=1e-9)
    assert len(report["posteriors"]) == 4


def test_posteriors_of_live_policies() -> None:
    ts = SegmentedPolicy(ThompsonSampling(2, prior_alpha=2.0))
    ts.update_many([0, 0, 1], [1.0, 0.0, 1.0], ["vip", "vip", "new"])
    assert posteriors_of(ts) == {"new": ([2.0, 3.0], [1.0, 1.0]), "vip": ([3.0, 2.0], [2.0, 1.0])}
    ucb = UCB1(2, initial_counts=[10, 10], initial_sums=[5, 5])  # warm start is not evidence
    ucb.update_many([1, 1, 1], [1.0, 1.0, 0.0])
    assert posteriors_of(ucb) == {"": ([1.0, 3.0], [1.0, 2.0])}


def test_allocation_over_time_matches_pandas() -> None:
    log = run_bandit(1200, seed=1)
    report = bandit_report(log, posteriors_of(ThompsonSampling(3)), bins=12)
    frame = pd.DataFrame({"t": log.timestamp, "arm": log.action})
    edges = np.linspace(log.timestamp.min(), log.timestamp.max(), 13)
    frame["bin"] = pd.cut(frame.t, edges, right=False, labels=False).fillna(11).astype(int)
    shares = pd.crosstab(frame.bin, frame.arm, normalize="index")
    allocation = report["allocation"]
    assert allocation["decisions"] == frame.groupby("bin").size().tolist()
    for k, arm in enumerate(log.arms):
        np.testing.assert_allclose(allocation["series"][arm], shares[k].to_numpy(), atol=1e-12)
    # Thompson sampling moves traffic to the best arm
    assert allocation["series"]["c"][-1] > allocation["series"]["c"][0]


def test_reward_against_uniform_by_ips() -> None:
    log = run_bandit(3000, seed=2)
    report = bandit_report(log, {}, bins=10)["reward"]
    psi = log.reward / (3 * log.propensity)
    assert report["total"] == log.reward.sum()
    assert report["uniform"]["value"] == pytest.approx(psi.sum())
    se = psi.std(ddof=1) * np.sqrt(len(psi))
    assert report["uniform"]["ci_high"] - report["uniform"]["value"] == pytest.approx(
        stats.norm.ppf(0.975) * se
    )
    truth = len(psi) * MEANS.mean()  # what uniform allocation earns on average
    assert report["uniform"]["ci_low"] <= truth <= report["uniform"]["ci_high"]
    expected_gain = MEANS[log.action].sum() - truth
    assert report["gain"]["ci_low"] <= expected_gain <= report["gain"]["ci_high"]
    assert report["gain"]["ci_low"] > 0  # the bandit beat uniform, visibly
    cumulative = report["cumulative"]
    assert cumulative["decisions"][-1] == 3000 and len(cumulative["decisions"]) == 10
    assert cumulative["bandit"][-1] == report["total"]
    assert cumulative["uniform"][-1] == pytest.approx(report["uniform"]["value"])
    assert cumulative["uniform_high"][-1] == pytest.approx(report["uniform"]["ci_high"])
    m = cumulative["decisions"][3]
    assert cumulative["uniform"][3] == pytest.approx(psi[:m].sum())


def test_uniform_interval_covers_at_its_nominal_rate() -> None:
    """200 replicates of a fixed logging policy: the 95% interval covers about 95%."""
    rng = np.random.default_rng(3)
    logging = np.array([0.6, 0.3, 0.1])
    covered = 0
    for _ in range(200):
        n = 400
        action = rng.choice(3, n, p=logging)
        reward = (rng.random(n) < MEANS[action]).astype(float)
        log = BanditLog(("a", "b", "c"), action, reward, logging[action],
                        timestamp=np.arange(n, dtype=float))  # fmt: skip
        est = bandit_report(log, {}, bins=1)["reward"]["uniform"]
        covered += est["ci_low"] <= n * MEANS.mean() <= est["ci_high"]
    assert 0.90 <= covered / 200 <= 0.99


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="bins"):
        bandit_report(None, {}, bins=0)
    with pytest.raises(ValueError, match="alpha"):
        bandit_report(None, {}, alpha=1.0)
