"""Off-policy evaluation: estimate a new policy's value from logged decisions.

Inputs are plain arrays over ``n`` logged decisions:

- ``context``: ``(n, d)`` numeric features (only the model-based estimators use it);
- ``action``: ``(n,)`` integer arm played by the logging policy;
- ``reward``: ``(n,)`` observed reward;
- ``propensity``: ``(n,)`` probability with which the logging policy played
  that action (the propensity tailorkit logs with every decision);
- ``target``: ``(n, K)`` action distribution of the evaluation policy for each
  logged context (a ``(K,)`` vector is broadcast to every row).

Estimators (each returns an :class:`OPEResult` with a confidence interval):

- :func:`ips` — inverse propensity scoring, ``mean(w * r)`` with
  ``w = target[a] / propensity``; unbiased, high variance.
- :func:`snips` — self-normalised IPS, ``sum(w r) / sum(w)``; slightly biased,
  usually much lower variance.
- :func:`direct_method` — average of a reward model's prediction under the
  target policy; low variance, biased if the model is wrong.
- :func:`doubly_robust` — direct method plus an IPS correction of the model's
  residuals; unbiased if either the propensities or the model are right.

The reward model is cross-fitted: each row's prediction comes from a model
that did not see that row, which removes the own-observation bias of DR.

Intervals use a normal approximation on per-sample influence values
(``value +- z * sd(psi) / sqrt(n)``), or percentile bootstrap when
``n_bootstrap > 0``. The direct method's interval treats the fitted model as
fixed, so it ignores model-estimation error and tends to be too narrow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold

__all__ = [
    "ESTIMATORS",
    "OPEResult",
    "cross_fit_rewards",
    "direct_method",
    "doubly_robust",
    "evaluate_policy",
    "importance_weights",
    "interaction_design",
    "ips",
    "one_hot_design",
    "snips",
]

ArrayLike = np.ndarray | Sequence[float] | Sequence[int]
# (context, action, n_actions) -> model features: an array or a scipy.sparse matrix.
Design = Callable[[np.ndarray, np.ndarray, int], Any]
ESTIMATORS = ("ips", "snips", "dm", "dr")


@dataclass(frozen=True)
class OPEResult:
    """An off-policy estimate with its confidence interval.

    >>> r = OPEResult("ips", value=0.1, std_error=0.01, ci_low=0.08, ci_high=0.12, n=100)
    >>> r.contains(0.11), round(r.relative_error(0.125), 3)
    (True, 0.2)
    """

    estimator: str
    value: float
    std_error: float
    ci_low: float
    ci_high: float
    n: int
    alpha: float = 0.05
    ci_method: str = "normal"

    def contains(self, truth: float) -> bool:
        """Whether ``truth`` lies inside the interval."""
        return self.ci_low <= truth <= self.ci_high

    def relative_error(self, truth: float) -> float:
        """``|value - truth| / |truth|``."""
        return abs(self.value - truth) / abs(truth)


def _target_matrix(target: ArrayLike, n: int) -> np.ndarray:
    pi = np.asarray(target, dtype=float)
    if pi.ndim == 1:
        pi = np.broadcast_to(pi, (n, pi.shape[0]))
    if pi.ndim != 2 or pi.shape[0] != n:
        raise ValueError(f"target must be (n, K) or (K,), got shape {pi.shape}")
    if np.any(pi < 0) or not np.allclose(pi.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("each row of target must be a probability distribution")
    return pi


def _validate(
    action: ArrayLike, reward: ArrayLike, target: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.asarray(action)
    r = np.asarray(reward, dtype=float)
    if a.ndim != 1 or r.shape != a.shape or len(a) == 0:
        raise ValueError("action and reward must be non-empty 1-d arrays of equal length")
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.equal(np.mod(a, 1), 0)):
            raise ValueError("actions must be integers")
        a = a.astype(np.int64)
    pi = _target_matrix(target, len(a))
    if a.min() < 0 or a.max() >= pi.shape[1]:
        raise ValueError("actions must index the columns of target")
    return a, r, pi


def importance_weights(action: ArrayLike, propensity: ArrayLike, target: ArrayLike) -> np.ndarray:
    """``target[i, action_i] / propensity_i``: how much more (or less) likely the
    evaluation policy is to take the logged action than the logging policy.

    >>> importance_weights([0, 1], [0.5, 0.5], [[1.0, 0.0], [0.2, 0.8]]).tolist()
    [2.0, 1.6]
    """
    a = np.asarray(action, dtype=np.int64)
    p = np.asarray(propensity, dtype=float)
    if p.shape != a.shape or np.any(p <= 0) or np.any(p > 1):
        raise ValueError("propensity must have one value in (0, 1] per action")
    pi = _target_matrix(target, len(a))
    return np.asarray(pi[np.arange(len(a)), a] / p)


def _z(alpha: float) -> float:
    return float(special.ndtri(1.0 - alpha / 2.0))


def _bootstrap_ratio(
    num: np.ndarray, den: np.ndarray, n_bootstrap: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap replicates of ``sum(num) / sum(den)`` over resampled rows."""
    n = len(num)
    out = np.empty(n_bootstrap)
    chunk = max(1, 4_000_000 // n)  # keep each index matrix around 32 MB
    for start in range(0, n_bootstrap, chunk):
        stop = min(start + chunk, n_bootstrap)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = num[idx].sum(axis=1) / den[idx].sum(axis=1)
    return out


def _result(
    name: str,
    value: float,
    influence: np.ndarray,
    alpha: float,
    boot: tuple[np.ndarray, np.ndarray] | None,
    n_bootstrap: int,
    rng: np.random.Generator | int | None,
) -> OPEResult:
    """Interval from influence values, or percentile bootstrap of ``boot``."""
    n = len(influence)
    if n_bootstrap > 0 and boot is not None:
        reps = _bootstrap_ratio(boot[0], boot[1], n_bootstrap, np.random.default_rng(rng))
        lo, hi = np.quantile(reps, [alpha / 2.0, 1.0 - alpha / 2.0])
        se = float(reps.std(ddof=1))
        return OPEResult(name, value, se, float(lo), float(hi), n, alpha, "bootstrap")
    se = float(influence.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    half = _z(alpha) * se
    return OPEResult(name, value, se, value - half, value + half, n, alpha, "normal")


def ips(
    action: ArrayLike,
    reward: ArrayLike,
    propensity: ArrayLike,
    target: ArrayLike,
    *,
    clip: float | None = None,
    alpha: float = 0.05,
    n_bootstrap: int = 0,
    rng: np.random.Generator | int | None = None,
) -> OPEResult:
    """Inverse propensity scoring: ``mean(w_i * r_i)``.

    ``clip`` caps the weights (trading bias for variance).

    >>> est = ips([0, 1, 0, 1], [1.0, 0.0, 1.0, 1.0], [0.5] * 4, [1.0, 0.0])
    >>> est.value  # the always-arm-0 policy: both arm-0 rows clicked
    1.0
    """
    a, r, pi = _validate(action, reward, target)
    w = importance_weights(a, propensity, pi)
    if clip is not None:
        w = np.minimum(w, clip)
    psi = w * r
    return _result("ips", float(psi.mean()), psi, alpha, (psi, np.ones_like(psi)), n_bootstrap, rng)


def snips(
    action: ArrayLike,
    reward: ArrayLike,
    propensity: ArrayLike,
    target: ArrayLike,
    *,
    alpha: float = 0.05,
    n_bootstrap: int = 0,
    rng: np.random.Generator | int | None = None,
) -> OPEResult:
    """Self-normalised IPS: ``sum(w r) / sum(w)``.

    Its influence values are ``w_i (r_i - V) / mean(w)`` (delta method).

    >>> est = snips([0, 1, 0, 1], [1.0, 0.0, 0.0, 1.0], [0.5] * 4, [1.0, 0.0])
    >>> est.value
    0.5
    """
    a, r, pi = _validate(action, reward, target)
    w = importance_weights(a, propensity, pi)
    if w.sum() <= 0:
        raise ValueError("the target policy puts no weight on any logged action")
    value = float((w * r).sum() / w.sum())
    psi = w * (r - value) / w.mean()
    return _result("snips", value, psi, alpha, (w * r, w), n_bootstrap, rng)


def one_hot_design(context: np.ndarray, action: np.ndarray, n_actions: int) -> np.ndarray:
    """Default reward-model features: the context next to a one-hot action.

    >>> one_hot_design(np.array([[0.5], [2.0]]), np.array([1, 0]), 2).tolist()
    [[0.5, 0.0, 1.0], [2.0, 1.0, 0.0]]
    """
    onehot = np.zeros((len(action), n_actions))
    onehot[np.arange(len(action)), action] = 1.0
    return np.hstack([np.asarray(context, dtype=float).reshape(len(action), -1), onehot])


def interaction_design(context: np.ndarray, action: np.ndarray, n_actions: int) -> np.ndarray:
    """Reward-model features with one block of context columns per action
    (plus a per-action intercept), i.e. a separate linear model per action.

    >>> interaction_design(np.array([[0.5], [2.0]]), np.array([1, 0]), 2).tolist()
    [[0.0, 0.0, 1.0, 0.5], [1.0, 2.0, 0.0, 0.0]]
    """
    x = np.asarray(context, dtype=float).reshape(len(action), -1)
    block = np.hstack([np.ones((len(action), 1)), x])
    out = np.zeros((len(action), n_actions * block.shape[1]))
    width = block.shape[1]
    for k in range(n_actions):
        rows = action == k
        out[rows, k * width : (k + 1) * width] = block[rows]
    return out


def _is_binary(r: np.ndarray) -> bool:
    return bool(np.all((r == 0) | (r == 1)))


def _default_model(binary: bool) -> Any:
    # newton-cholesky: exact Newton steps, several times faster than lbfgs on
    # one-hot designs of a few hundred columns, and the intercept stays unpenalised.
    if binary:
        return LogisticRegression(solver="newton-cholesky", max_iter=200)
    return Ridge(alpha=1.0)


def _fit_predict(
    model: Any,
    design: Design,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    test_context: np.ndarray,
    n_actions: int,
) -> np.ndarray:
    """Fit on ``train`` and predict every action's reward for ``test_context``."""
    x, a, r = train
    m = len(test_context)
    if len(np.unique(r)) < 2:  # nothing to learn (e.g. a fold without clicks)
        return np.full((m, n_actions), float(r.mean()))
    fitted = clone(model).fit(design(x, a, n_actions), r)
    out = np.empty((m, n_actions))
    for k in range(n_actions):
        features = design(test_context, np.full(m, k), n_actions)
        if hasattr(fitted, "predict_proba"):
            positive = list(fitted.classes_).index(1)
            out[:, k] = fitted.predict_proba(features)[:, positive]
        else:
            out[:, k] = fitted.predict(features)
    return out


def cross_fit_rewards(
    context: ArrayLike,
    action: ArrayLike,
    reward: ArrayLike,
    n_actions: int,
    *,
    model: Any = None,
    design: Design = one_hot_design,
    n_folds: int = 5,
    random_state: int = 0,
) -> np.ndarray:
    """Cross-fitted predictions ``q[i, k]`` of the reward of action ``k`` in row ``i``.

    ``model`` is any scikit-learn classifier (binary rewards, uses
    ``predict_proba``) or regressor; by default logistic regression for 0/1
    rewards and ridge regression otherwise. ``design(context, action, K)``
    builds the model's feature matrix (dense or scipy.sparse). Folds are
    stratified on binary rewards so that rare clicks reach every training fold.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 1)); a = rng.integers(0, 2, 200)
    >>> q = cross_fit_rewards(x, a, 2.0 * a + x[:, 0], 2)
    >>> q.shape, bool(abs((q[:, 1] - q[:, 0]).mean() - 2.0) < 0.2)
    ((200, 2), True)
    """
    x = np.asarray(context, dtype=float).reshape(len(np.asarray(action)), -1)
    a = np.asarray(action, dtype=np.int64)
    r = np.asarray(reward, dtype=float)
    binary = _is_binary(r)
    base = model if model is not None else _default_model(binary)
    minority = min(int(r.sum()), int(len(r) - r.sum())) if binary else 0
    if binary and minority >= n_folds:
        splits = StratifiedKFold(n_folds, shuffle=True, random_state=random_state).split(x, r)
    else:
        splits = KFold(n_folds, shuffle=True, random_state=random_state).split(x)
    q = np.empty((len(a), n_actions))
    for train, test in splits:
        q[test] = _fit_predict(base, design, (x[train], a[train], r[train]), x[test], n_actions)
    return q


def _expected(
    context: ArrayLike | None,
    a: np.ndarray,
    r: np.ndarray,
    n_actions: int,
    expected_reward: ArrayLike | None,
    fit_options: dict[str, Any],
) -> np.ndarray:
    if expected_reward is not None:
        q = np.asarray(expected_reward, dtype=float)
        if q.shape != (len(a), n_actions):
            raise ValueError(f"expected_reward must have shape {(len(a), n_actions)}")
        return q
    if context is None:
        raise ValueError("give context (to fit a reward model) or expected_reward")
    return cross_fit_rewards(context, a, r, n_actions, **fit_options)


def direct_method(
    context: ArrayLike | None,
    action: ArrayLike,
    reward: ArrayLike,
    target: ArrayLike,
    *,
    expected_reward: ArrayLike | None = None,
    alpha: float = 0.05,
    n_bootstrap: int = 0,
    rng: np.random.Generator | int | None = None,
    **fit_options: Any,
) -> OPEResult:
    """Direct method: ``mean_i sum_k target[i, k] * q[i, k]``.

    ``q`` is ``expected_reward`` if given, else cross-fitted from ``context``
    (``fit_options`` go to :func:`cross_fit_rewards`). The interval treats
    ``q`` as fixed and is therefore optimistic.

    >>> q = np.array([[0.2, 0.6], [0.4, 0.8]])
    >>> direct_method(None, [0, 1], [0.0, 1.0], [0.0, 1.0], expected_reward=q).value
    0.7
    """
    a, r, pi = _validate(action, reward, target)
    q = _expected(context, a, r, pi.shape[1], expected_reward, fit_options)
    psi = (pi * q).sum(axis=1)
    return _result("dm", float(psi.mean()), psi, alpha, (psi, np.ones_like(psi)), n_bootstrap, rng)


def doubly_robust(
    context: ArrayLike | None,
    action: ArrayLike,
    reward: ArrayLike,
    propensity: ArrayLike,
    target: ArrayLike,
    *,
    expected_reward: ArrayLike | None = None,
    alpha: float = 0.05,
    n_bootstrap: int = 0,
    rng: np.random.Generator | int | None = None,
    **fit_options: Any,
) -> OPEResult:
    """Doubly robust: ``mean_i [sum_k target[i,k] q[i,k] + w_i (r_i - q[i, a_i])]``.

    With a cross-fitted ``q`` the per-row terms are (nearly) independent, so the
    normal interval on them is honest.

    >>> q = np.array([[0.5, 0.5], [0.5, 0.5]])
    >>> est = doubly_robust(None, [0, 1], [1.0, 0.0], [0.5, 0.5], [1.0, 0.0], expected_reward=q)
    >>> est.value  # = IPS here: 0.5 + mean([2 * 0.5, 0])
    1.0
    """
    a, r, pi = _validate(action, reward, target)
    q = _expected(context, a, r, pi.shape[1], expected_reward, fit_options)
    w = importance_weights(a, propensity, pi)
    rows = np.arange(len(a))
    psi = (pi * q).sum(axis=1) + w * (r - q[rows, a])
    return _result("dr", float(psi.mean()), psi, alpha, (psi, np.ones_like(psi)), n_bootstrap, rng)


def evaluate_policy(
    context: ArrayLike | None,
    action: ArrayLike,
    reward: ArrayLike,
    propensity: ArrayLike,
    target: ArrayLike,
    *,
    estimators: Sequence[str] = ESTIMATORS,
    expected_reward: ArrayLike | None = None,
    alpha: float = 0.05,
    n_bootstrap: int = 0,
    rng: np.random.Generator | int | None = None,
    **fit_options: Any,
) -> dict[str, OPEResult]:
    """Run several estimators on one log, sharing a single cross-fitted model.

    >>> rng = np.random.default_rng(1)
    >>> n = 2000; x = rng.normal(size=(n, 2)); a = rng.integers(0, 2, n)
    >>> r = (rng.random(n) < 0.3 + 0.4 * a).astype(float)
    >>> res = evaluate_policy(x, a, r, np.full(n, 0.5), [0.0, 1.0])
    >>> sorted(res), [res[k].contains(0.7) for k in ("ips", "snips", "dr")]
    (['dm', 'dr', 'ips', 'snips'], [True, True, True])
    """
    unknown = set(estimators) - set(ESTIMATORS)
    if unknown:
        raise ValueError(f"unknown estimators {sorted(unknown)}; choose from {ESTIMATORS}")
    a, r, pi = _validate(action, reward, target)
    q: np.ndarray | None = None
    if {"dm", "dr"} & set(estimators):
        q = _expected(context, a, r, pi.shape[1], expected_reward, fit_options)
    out: dict[str, OPEResult] = {}
    options: dict[str, Any] = {"alpha": alpha, "n_bootstrap": n_bootstrap, "rng": rng}
    for name in estimators:
        if name == "ips":
            out[name] = ips(a, r, propensity, pi, **options)
        elif name == "snips":
            out[name] = snips(a, r, propensity, pi, **options)
        elif name == "dm":
            out[name] = direct_method(None, a, r, pi, expected_reward=q, **options)
        else:
            out[name] = doubly_robust(None, a, r, propensity, pi, expected_reward=q, **options)
    return out
