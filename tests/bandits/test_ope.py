"""Off-policy estimators: unit checks and interval coverage on a known policy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from tailorkit.measure.ope import (
    cross_fit_rewards,
    direct_method,
    doubly_robust,
    evaluate_policy,
    importance_weights,
    interaction_design,
    ips,
    one_hot_design,
    snips,
)

K = 3
D = 2


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class World:
    """Contexts x ~ N(0, I); click probability sigmoid(x . beta_a + c_a).

    The logging policy is a softmax mixed with 10% uniform (so every action has
    a propensity of at least 1/30); the target policy is a sharper softmax that
    prefers different actions.
    """

    beta = np.array([[1.0, -0.5], [-0.5, 1.0], [0.3, 0.3]])
    intercept = np.array([-1.0, -0.8, -1.2])
    w_log = np.array([[0.5, 0.0], [0.0, 0.5], [0.0, 0.0]])
    w_target = np.array([[2.0, -1.0], [-1.0, 2.0], [0.5, 0.5]])

    def click_prob(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(x @ self.beta.T + self.intercept)))

    def logging(self, x: np.ndarray) -> np.ndarray:
        return 0.9 * softmax(x @ self.w_log.T) + 0.1 / K

    def target(self, x: np.ndarray) -> np.ndarray:
        return softmax(x @ self.w_target.T)

    def true_value(self) -> float:
        x = np.random.default_rng(12345).normal(size=(1_000_000, D))
        return float((self.target(x) * self.click_prob(x)).sum(axis=1).mean())

    def log(self, n: int, seed: int) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(n, D))
        p_log = self.logging(x)
        u = rng.random(n)
        a = (u[:, None] > p_log.cumsum(axis=1)).sum(axis=1)
        r = (rng.random(n) < self.click_prob(x)[np.arange(n), a]).astype(float)
        return x, a, r, p_log[np.arange(n), a], self.target(x)


WORLD = World()
TRUTH = WORLD.true_value()


def test_importance_weights_validate_propensities() -> None:
    with pytest.raises(ValueError, match="propensity"):
        importance_weights([0], [0.0], [[1.0, 0.0]])
    with pytest.raises(ValueError, match="probability distribution"):
        ips([0], [1.0], [0.5], [[0.7, 0.7]])
    with pytest.raises(ValueError, match="columns"):
        ips([2], [1.0], [0.5], [[0.5, 0.5]])


def test_on_policy_ips_is_the_sample_mean() -> None:
    x, a, r, p, _ = WORLD.log(5000, 0)
    same = WORLD.logging(x)  # target = logging policy: every weight is 1
    assert ips(a, r, p, same).value == pytest.approx(r.mean())
    assert snips(a, r, p, same).value == pytest.approx(r.mean())


def test_snips_is_invariant_to_scaling_propensities() -> None:
    _, a, r, p, pi = WORLD.log(2000, 1)
    assert snips(a, r, p, pi).value == pytest.approx(snips(a, r, p / 2, pi).value)


def test_dr_with_zero_model_is_ips_and_dm_with_true_model_is_exact() -> None:
    x, a, r, p, pi = WORLD.log(2000, 2)
    zero = np.zeros((len(a), K))
    assert doubly_robust(None, a, r, p, pi, expected_reward=zero).value == pytest.approx(
        ips(a, r, p, pi).value
    )
    true_q = WORLD.click_prob(x)
    dm = direct_method(None, a, r, pi, expected_reward=true_q)
    assert dm.value == pytest.approx((pi * true_q).sum(axis=1).mean())


def test_cross_fitted_model_never_sees_its_own_row() -> None:
    # Pure-noise rewards with many features: a model fitted on all rows
    # "predicts" its own rows, a cross-fitted one cannot.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 60))
    a = rng.integers(0, 2, 300)
    r = rng.normal(size=300)
    design = one_hot_design(x, a, 2)
    in_sample = Ridge(alpha=1.0).fit(design, r).predict(design)
    crossed = cross_fit_rewards(x, a, r, 2)[np.arange(300), a]
    assert np.corrcoef(in_sample, r)[0, 1] > 0.3
    assert abs(np.corrcoef(crossed, r)[0, 1]) < 0.15


def test_cross_fit_handles_folds_without_clicks() -> None:
    a = np.zeros(50, dtype=int)
    r = np.zeros(50)
    r[0] = 1.0  # a single click: most training folds see one class only
    q = cross_fit_rewards(np.ones((50, 1)), a, r, 2, model=LogisticRegression())
    assert np.all((q >= 0) & (q <= 1))


def test_bootstrap_interval_agrees_with_normal_interval() -> None:
    _, a, r, p, pi = WORLD.log(3000, 4)
    for estimator in (ips, snips):
        normal = estimator(a, r, p, pi)
        boot = estimator(a, r, p, pi, n_bootstrap=400, rng=0)
        assert boot.ci_method == "bootstrap"
        assert boot.value == normal.value
        assert boot.std_error == pytest.approx(normal.std_error, rel=0.15)


def test_all_estimators_are_close_to_the_truth_on_a_large_log() -> None:
    x, a, r, p, pi = WORLD.log(20_000, 5)
    # One logistic model per action is the true reward model of WORLD.
    results = evaluate_policy(x, a, r, p, pi, design=interaction_design)
    for est in results.values():
        assert est.relative_error(TRUTH) < 0.05, est


def test_dr_survives_a_misspecified_model_where_dm_does_not() -> None:
    x, a, r, p, pi = WORLD.log(20_000, 6)
    # The default design is additive in context and action: it cannot express
    # that each action responds to a different feature.
    results = evaluate_policy(x, a, r, p, pi, estimators=["dm", "dr"])
    assert results["dm"].relative_error(TRUTH) > 0.1
    assert not results["dm"].contains(TRUTH)
    assert results["dr"].contains(TRUTH)


def coverage(estimator: str, replications: int, n: int) -> float:
    hits = 0
    for rep in range(replications):
        x, a, r, p, pi = WORLD.log(n, 100 + rep)
        # A linear-probability reward model keeps DR fast; DR needs the
        # propensities, not the model, to be right.
        res = evaluate_policy(
            x, a, r, p, pi, estimators=[estimator], n_folds=3, model=Ridge(alpha=1.0)
        )
        hits += res[estimator].contains(TRUTH)
    return hits / replications


@pytest.mark.parametrize(("estimator", "replications"), [("ips", 400), ("snips", 400), ("dr", 200)])
def test_intervals_cover_at_about_the_nominal_rate(estimator: str, replications: int) -> None:
    rate = coverage(estimator, replications, 1000)
    print(f"{estimator} 95% interval coverage over {replications} logs: {rate:.3f}")
    # Binomial noise of the coverage estimate: 3 sd is 0.033 (400) / 0.046 (200).
    slack = 3 * np.sqrt(0.95 * 0.05 / replications)
    assert 0.95 - slack <= rate <= min(1.0, 0.95 + slack)
