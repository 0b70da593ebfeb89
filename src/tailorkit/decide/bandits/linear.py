"""Linear contextual bandits on a numeric feature vector: LinUCB and linear
Thompson sampling (disjoint models: one ridge regression per arm).

The context of ``pull`` and ``update`` is the feature vector (any sequence of
``n_features`` floats, e.g. profile features). Each arm keeps ``A^-1`` (kept
up to date with Sherman-Morrison rank-one updates) and ``b``; the ridge
estimate is ``theta = A^-1 b``.
"""

from __future__ import annotations

from abc import abstractmethod
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from scipy import special

from tailorkit.decide.bandits.base import (
    Decision,
    Policy,
    RngLike,
    apply_floor,
    argmax_ties,
    cumulative,
    uniform_over,
)

__all__ = ["LinUCB", "LinearThompsonSampling", "gaussian_argmax_probabilities"]

L = TypeVar("L", bound="_LinearPolicy")
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(64)
# Standard normal quantiles at the Gauss-Legendre nodes mapped to (0, 1).
_Z = special.ndtri((_NODES + 1.0) / 2.0)


def gaussian_argmax_probabilities(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """P(arm i has the largest draw) for independent N(mean_i, sd_i^2) arms.

    Computes E_z[prod_{j != i} Phi((mean_i + sd_i z - mean_j) / sd_j)] with
    64-point Gauss-Legendre quadrature in quantile space (bounded integrand).

    >>> p = gaussian_argmax_probabilities(np.array([0.0, 0.0]), np.array([1.0, 1.0]))
    >>> [round(float(v), 4) for v in p]
    [0.5, 0.5]
    """
    k = len(mean)
    sd = np.maximum(sd, 1e-12)
    x = mean[:, None] + sd[:, None] * _Z[None, :]  # i, g
    cdf = special.ndtr((x[None, :, :] - mean[:, None, None]) / sd[:, None, None])  # j, i, g
    log_cdf = np.log(np.maximum(cdf, 1e-300))
    others = log_cdf.sum(axis=0) - log_cdf[np.arange(k), np.arange(k)]
    p = np.maximum((_WEIGHTS[None, :] / 2.0 * np.exp(others)).sum(axis=1), 0.0)
    return np.asarray(p / p.sum())


class _LinearPolicy(Policy):
    """Per-arm ridge regression statistics shared by LinUCB and linear TS."""

    def __init__(
        self,
        n_arms: int,
        n_features: int,
        ridge: float = 1.0,
        floor: float = 0.0,
        rng: RngLike = None,
    ) -> None:
        super().__init__(n_arms, floor, rng)
        if ridge <= 0:
            raise ValueError("ridge must be positive")
        self.n_features = n_features
        self.ridge = ridge
        self.a_inv = np.tile(np.eye(n_features) / ridge, (n_arms, 1, 1))
        self.b = np.zeros((n_arms, n_features))
        self.theta = np.zeros((n_arms, n_features))
        self._counts = np.zeros(n_arms)

    def _features(self, context: Any) -> np.ndarray:
        x = np.asarray(context, dtype=float).reshape(-1)
        if x.shape[0] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got {x.shape[0]}")
        return x

    def _mean_and_var(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted reward and its (scaled) variance x' A^-1 x per arm."""
        ax = self.a_inv @ x  # k, d
        return self.theta @ x, np.maximum(ax @ x, 0.0)

    @abstractmethod
    def _choice_probabilities(self, x: np.ndarray) -> list[float]:
        """Arm probabilities for features ``x`` before the floor."""

    def probabilities(self, context: Any = None) -> tuple[float, ...]:
        """Arm probabilities for the feature vector ``context``, floor included."""
        probs = apply_floor(self._choice_probabilities(self._features(context)), self.floor)
        total = sum(probs)
        return tuple(p / total for p in probs)

    def pull(self, context: Any = None) -> Decision:
        """Draw an arm for the feature vector ``context``."""
        probs = self.probabilities(context)
        arm = bisect_right(cumulative(probs), self._stream.uniform())
        return Decision(arm, probs[arm], probs)

    def update(self, arm: int, reward: float, context: Any = None) -> None:
        """Rank-one update of arm ``arm``'s ridge regression."""
        self._check_arm(arm)
        x = self._features(context)
        ax = self.a_inv[arm] @ x
        self.a_inv[arm] -= np.outer(ax, ax) / (1.0 + x @ ax)
        self.b[arm] += reward * x
        self.theta[arm] = self.a_inv[arm] @ self.b[arm]
        self._counts[arm] += 1.0

    def statistics(self) -> dict[str, float]:
        """Per arm: ``n``, the Gram matrix ``A|i|j`` (sum of x x') and ``b|i`` (sum of r x)."""
        out: dict[str, float] = {}
        ridge = np.eye(self.n_features) * self.ridge
        for arm in range(self.n_arms):
            gram = np.linalg.inv(self.a_inv[arm]) - ridge
            out.update(self._fields(arm, self._counts[arm], gram, self.b[arm]))
        return out

    def _fields(self, arm: int, n: float, gram: np.ndarray, b: np.ndarray) -> dict[str, float]:
        out = {f"{arm}|n": float(n)}
        d = self.n_features
        for i in range(d):
            out[f"{arm}|b|{i}"] = float(b[i])
            for j in range(d):
                out[f"{arm}|A|{i}|{j}"] = float(gram[i, j])
        return out

    def statistics_of(
        self,
        arms: Sequence[int],
        rewards: Sequence[float],
        contexts: Sequence[Any] | None = None,
    ) -> dict[str, float]:
        """Count, Gram matrix and reward-weighted feature sum per arm of a batch."""
        if contexts is None:
            raise ValueError("linear bandits need the feature vector of every reward")
        d = self.n_features
        n = np.zeros(self.n_arms)
        gram = np.zeros((self.n_arms, d, d))
        b = np.zeros((self.n_arms, d))
        for arm, reward, ctx in zip(arms, rewards, contexts, strict=True):
            a = int(arm)
            self._check_arm(a)
            x = self._features(ctx)
            n[a] += 1.0
            gram[a] += np.outer(x, x)
            b[a] += float(reward) * x
        out: dict[str, float] = {}
        for arm in np.flatnonzero(n).tolist():
            out.update(self._fields(arm, n[arm], gram[arm], b[arm]))
        return out

    def set_statistics(self, stats: Mapping[str, float]) -> None:
        """Rebuild each arm's ridge regression from its Gram matrix and ``b``."""
        d = self.n_features
        n = np.zeros(self.n_arms)
        gram = np.zeros((self.n_arms, d, d))
        b = np.zeros((self.n_arms, d))
        for name, value in stats.items():
            parts = name.split("|")
            a = int(parts[0])
            self._check_arm(a)
            if parts[1:] == ["n"]:
                n[a] = value
            elif parts[1] == "A" and len(parts) == 4:
                gram[a, int(parts[2]), int(parts[3])] = value
            elif parts[1] == "b" and len(parts) == 3:
                b[a, int(parts[2])] = value
            else:
                raise ValueError(f"unknown statistic {name!r}")
        ridge = np.eye(d) * self.ridge
        self.a_inv = np.asarray(np.linalg.inv(gram + ridge), dtype=float)
        self.b = b
        self.theta = np.einsum("kij,kj->ki", self.a_inv, b)
        self._counts = n

    def _linear_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "n_arms": self.n_arms,
            "n_features": self.n_features,
            "ridge": self.ridge,
            "floor": self.floor,
            "a_inv": self.a_inv.tolist(),
            "b": self.b.tolist(),
            "theta": self.theta.tolist(),
            "counts": self._counts.tolist(),
        }

    def _restore(self: L, state: dict[str, Any]) -> L:
        self.a_inv = np.asarray(state["a_inv"], dtype=float)
        self.b = np.asarray(state["b"], dtype=float)
        # theta is stored rather than recomputed so that a restored policy
        # reproduces the original's scores bit for bit.
        self.theta = np.asarray(state["theta"], dtype=float)
        self._counts = np.asarray(state.get("counts", np.zeros(self.n_arms)), dtype=float)
        return self


class LinUCB(_LinearPolicy):
    """LinUCB (Li et al., 2010), disjoint model: play argmax of
    ``theta_a . x + alpha * sqrt(x' A_a^-1 x)``; ties share the probability.

    >>> policy = LinUCB(n_arms=2, n_features=2, alpha=0.1, rng=0)
    >>> for _ in range(20):
    ...     policy.update(0, 1.0, [1.0, 0.0])
    ...     policy.update(1, 1.0, [0.0, 1.0])
    >>> policy.pull([1.0, 0.0]).arm, policy.pull([0.0, 1.0]).arm
    (0, 1)
    """

    kind = "linucb"

    def __init__(
        self,
        n_arms: int,
        n_features: int,
        alpha: float = 1.0,
        ridge: float = 1.0,
        floor: float = 0.0,
        rng: RngLike = None,
    ) -> None:
        super().__init__(n_arms, n_features, ridge, floor, rng)
        self.alpha = alpha

    def _choice_probabilities(self, x: np.ndarray) -> list[float]:
        mean, var = self._mean_and_var(x)
        scores = (mean + self.alpha * np.sqrt(var)).tolist()
        return uniform_over(self.n_arms, argmax_ties(scores))

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable state: configuration and ridge statistics."""
        state = self._linear_state()
        state["alpha"] = self.alpha
        return state

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> LinUCB:
        policy = cls(
            n_arms=state["n_arms"],
            n_features=state["n_features"],
            alpha=state["alpha"],
            ridge=state["ridge"],
            floor=state["floor"],
        )
        return policy._restore(state)


class LinearThompsonSampling(_LinearPolicy):
    """Linear Thompson sampling (Agrawal & Goyal, 2013), disjoint model.

    Thompson sampling would draw ``theta_a ~ N(theta_hat_a, v^2 A_a^-1)`` and
    play the argmax of ``theta_a . x``. For a given ``x`` those scores are
    independent normals, so the probability of each arm being the argmax is
    computed by quadrature and the arm is drawn from it: same distribution,
    exact propensity.

    >>> policy = LinearThompsonSampling(n_arms=2, n_features=1, v=0.1, rng=0)
    >>> for _ in range(30):
    ...     policy.update(0, 0.2, [1.0])
    ...     policy.update(1, 0.8, [1.0])
    >>> p = policy.probabilities([1.0])
    >>> p[1] > 0.99 and abs(sum(p) - 1.0) < 1e-12
    True
    """

    kind = "linear_thompson"

    def __init__(
        self,
        n_arms: int,
        n_features: int,
        v: float = 0.5,
        ridge: float = 1.0,
        floor: float = 0.0,
        rng: RngLike = None,
    ) -> None:
        super().__init__(n_arms, n_features, ridge, floor, rng)
        if v <= 0:
            raise ValueError("v must be positive")
        self.v = v

    def _choice_probabilities(self, x: np.ndarray) -> list[float]:
        mean, var = self._mean_and_var(x)
        p = gaussian_argmax_probabilities(mean, self.v * np.sqrt(var))
        return [float(q) for q in p]

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable state: configuration and ridge statistics."""
        state = self._linear_state()
        state["v"] = self.v
        return state

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> LinearThompsonSampling:
        policy = cls(
            n_arms=state["n_arms"],
            n_features=state["n_features"],
            v=state["v"],
            ridge=state["ridge"],
            floor=state["floor"],
        )
        return policy._restore(state)
