"""Beta-Bernoulli Thompson sampling, with an optional top-two variant.

Thompson sampling draws one value from each arm's Beta posterior and plays
the argmax. Drawing the arm *directly* from the probability that each arm is
the argmax gives the same distribution of arms, and it hands us the exact
propensity to log. Those argmax probabilities are computed numerically
(Gauss-Legendre quadrature, error below 1e-4) for up to
``QUADRATURE_MAX_ARMS`` arms and by Monte Carlo with ``MC_DRAWS`` draws above
that; either way they are cached and only recomputed after updates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import special

from tailorkit.decide.bandits.base import CachedPolicy, RngLike, as_float_list

__all__ = [
    "MC_DRAWS",
    "QUADRATURE_MAX_ARMS",
    "ThompsonSampling",
    "argmax_probabilities",
    "rank_probabilities",
    "top_two_probabilities",
]

QUADRATURE_MAX_ARMS = 16
MC_DRAWS = 20_000
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(64)
# Tail mass left out of each arm's integration range in x-space.
_TAIL = 1e-10


def _quadrature_nodes(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes x[i, g] and weights w[i, g] so that sum_g w h(x) ~ E_{Beta_i}[h].

    Arms with both shapes >= 1 have a bounded density: integrate density x h
    over the central 1 - 2e-10 of their mass. Shapes below one make the
    density singular at the ends, so those arms integrate h(F^-1(u)) over u
    in (0, 1) instead, which is bounded and smooth enough for Gauss-Legendre.
    """
    lo = special.betaincinv(a, b, _TAIL)
    hi = special.betaincinv(a, b, 1.0 - _TAIL)
    half = (hi - lo) / 2.0
    x = (hi + lo)[:, None] / 2.0 + half[:, None] * _NODES[None, :]
    x = np.clip(x, 1e-300, 1.0 - 1e-16)
    log_pdf = (
        (a[:, None] - 1.0) * np.log(x)
        + (b[:, None] - 1.0) * np.log1p(-x)
        - special.betaln(a, b)[:, None]
    )
    w = half[:, None] * _WEIGHTS[None, :] * np.exp(log_pdf)
    singular = (a < 1.0) | (b < 1.0)
    if singular.any():
        u = (_NODES + 1.0) / 2.0
        x[singular] = special.betaincinv(a[singular, None], b[singular, None], u[None, :])
        w[singular] = _WEIGHTS / 2.0
    return x, w


def _argmax_quadrature(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """P(arm i has the largest draw) = E_{x ~ Beta_i}[prod_{j != i} F_j(x)]."""
    k = len(a)
    x, w = _quadrature_nodes(a, b)
    cdf = special.betainc(a[:, None, None], b[:, None, None], x[None, :, :])  # j, i, g
    log_cdf = np.log(np.maximum(cdf, 1e-300))
    others = log_cdf.sum(axis=0) - log_cdf[np.arange(k), np.arange(k)]
    return np.asarray((w * np.exp(others)).sum(axis=1))


def rank_probabilities(
    alpha: Sequence[float] | np.ndarray,
    beta: Sequence[float] | np.ndarray,
    n_slots: int = 1,
    n_draws: int = MC_DRAWS,
    seed: int = 0,
) -> np.ndarray:
    """Monte Carlo probability that each arm lands in each of the top slots.

    Returns a ``(K, n_slots)`` array: column ``s`` is the probability that
    the arm has the ``s``-th largest posterior draw (slot 0 = argmax). Used
    for slate policies such as ZOZOTOWN's three-slot widget. The seed is fixed
    so that replicas sharing a state compute the same probabilities.

    >>> p = rank_probabilities([1, 1, 1], [1, 1, 1], n_slots=2, n_draws=30_000)
    >>> bool(np.allclose(p, 1 / 3, atol=0.02)), bool(np.allclose(p.sum(axis=0), 1.0))
    (True, True)
    """
    a = np.asarray(alpha, dtype=float)
    b = np.asarray(beta, dtype=float)
    k = len(a)
    rng = np.random.default_rng(seed)
    out = np.zeros((k, n_slots))
    chunk = max(1, 2_000_000 // max(k, 1))  # bound memory at ~16 MB per chunk
    done = 0
    while done < n_draws:
        m = min(chunk, n_draws - done)
        draws = rng.beta(a, b, size=(m, k))
        if n_slots == 1:
            top = draws.argmax(axis=1)[:, None]
        else:
            # argpartition finds the top slots in O(K); only they get sorted.
            part = np.argpartition(-draws, n_slots - 1, axis=1)[:, :n_slots]
            order = np.argsort(-np.take_along_axis(draws, part, axis=1), axis=1)
            top = np.take_along_axis(part, order, axis=1)
        for s in range(n_slots):
            out[:, s] += np.bincount(top[:, s], minlength=k)
        done += m
    return out / n_draws


def argmax_probabilities(
    alpha: Sequence[float] | np.ndarray,
    beta: Sequence[float] | np.ndarray,
    n_draws: int = MC_DRAWS,
) -> np.ndarray:
    """Probability that each arm's Beta(alpha, beta) draw is the largest.

    Numerical quadrature for up to ``QUADRATURE_MAX_ARMS`` arms (deterministic,
    error below 1e-4), Monte Carlo with ``n_draws`` draws and a fixed seed above.

    >>> p = argmax_probabilities([1.0, 2.0], [1.0, 1.0])
    >>> [round(float(v), 4) for v in p]  # P(X1 > X0) = 2/3 for Beta(2,1) vs U(0,1)
    [0.3333, 0.6667]
    """
    a = np.asarray(alpha, dtype=float)
    b = np.asarray(beta, dtype=float)
    if len(a) == 1:
        return np.ones(1)
    if len(a) <= QUADRATURE_MAX_ARMS:
        p = _argmax_quadrature(a, b)
    else:
        p = rank_probabilities(a, b, 1, n_draws)[:, 0]
    p = np.maximum(p, 0.0)
    return np.asarray(p / p.sum())


def top_two_probabilities(p: Sequence[float] | np.ndarray, leader_prob: float) -> np.ndarray:
    """Arm probabilities of top-two Thompson sampling (Russo, 2016).

    With probability ``leader_prob`` TTTS plays the posterior argmax, otherwise
    it re-samples until a different arm wins (the challenger). Given the
    argmax probabilities ``p``, arm ``i`` is played with probability
    ``p_i * (leader_prob + (1 - leader_prob) * sum_{j != i} p_j / (1 - p_j))``.

    >>> [round(float(v), 3) for v in top_two_probabilities([0.5, 0.5], 0.5)]
    [0.5, 0.5]
    >>> [round(float(v), 3) for v in top_two_probabilities([0.9, 0.1], 0.5)]
    [0.5, 0.5]
    """
    q = np.asarray(p, dtype=float)
    ratio = q / np.maximum(1.0 - q, 1e-12)
    psi = q * (leader_prob + (1.0 - leader_prob) * (ratio.sum() - ratio))
    total = psi.sum()
    return np.asarray(psi / total) if total > 0 else q


class ThompsonSampling(CachedPolicy):
    """Beta-Bernoulli Thompson sampling with exact propensities.

    Rewards must lie in [0, 1]; a fractional reward ``r`` adds ``r`` to alpha
    and ``1 - r`` to beta. Priors (scalar or per arm) double as a warm start,
    e.g. ``prior_alpha = 1 + past clicks``, ``prior_beta = 1 + past misses``.
    ``top_two`` turns on top-two Thompson sampling with that leader
    probability (0.5 is the usual choice), which explores more for
    best-arm identification.

    >>> policy = ThompsonSampling(n_arms=3, floor=0.05, rng=42)
    >>> policy.update_many([0, 0, 1, 2], [1.0, 1.0, 0.0, 0.0])
    >>> d = policy.pull()
    >>> d.propensity == d.probabilities[d.arm] and min(d.probabilities) >= 0.05
    True
    >>> max(range(3), key=lambda a: d.probabilities[a])
    0
    """

    kind = "thompson"

    def __init__(
        self,
        n_arms: int,
        prior_alpha: float | Sequence[float] = 1.0,
        prior_beta: float | Sequence[float] = 1.0,
        floor: float = 0.0,
        top_two: float | None = None,
        rng: RngLike = None,
        refresh_every: int = 1,
    ) -> None:
        super().__init__(n_arms, floor, rng, refresh_every)
        self.prior_alpha = as_float_list(prior_alpha, n_arms, "prior_alpha")
        self.prior_beta = as_float_list(prior_beta, n_arms, "prior_beta")
        if min(self.prior_alpha) <= 0 or min(self.prior_beta) <= 0:
            raise ValueError("Beta priors must be positive")
        if top_two is not None and not 0.0 < top_two < 1.0:
            raise ValueError("top_two (leader probability) must be in (0, 1)")
        self.top_two = top_two
        self.successes = [0.0] * n_arms
        self.failures = [0.0] * n_arms

    def posterior(self) -> tuple[list[float], list[float]]:
        """Current Beta parameters (alpha, beta) per arm."""
        alpha = [p + s for p, s in zip(self.prior_alpha, self.successes, strict=True)]
        beta = [p + f for p, f in zip(self.prior_beta, self.failures, strict=True)]
        return alpha, beta

    def _compute(self) -> list[float]:
        alpha, beta = self.posterior()
        p = argmax_probabilities(alpha, beta)
        if self.top_two is not None:
            p = top_two_probabilities(p, self.top_two)
        return [float(v) for v in p]

    def update(self, arm: int, reward: float, context: Any = None) -> None:
        """Record one reward in [0, 1]; probabilities refresh lazily on the next pull."""
        # Inlined (_check_arm, _record, _touched): this is the update hot path.
        if not 0 <= arm < self.n_arms:
            raise ValueError(f"arm {arm} out of range 0..{self.n_arms - 1}")
        if not 0.0 <= reward <= 1.0:
            raise ValueError(f"Thompson sampling rewards must be in [0, 1], got {reward}")
        self.successes[arm] += reward
        self.failures[arm] += 1.0 - reward
        self._pending += 1
        if self._pending >= self.refresh_every:
            self._stale = True

    def _record(self, arm: int, reward: float) -> None:
        if not 0.0 <= reward <= 1.0:
            raise ValueError(f"Thompson sampling rewards must be in [0, 1], got {reward}")
        self.successes[arm] += reward
        self.failures[arm] += 1.0 - reward

    def _totals(self) -> tuple[list[float], list[float]]:
        counts = [s + f for s, f in zip(self.successes, self.failures, strict=True)]
        return counts, list(self.successes)

    def _set_totals(self, counts: list[float], sums: list[float]) -> None:
        self.successes = list(sums)
        self.failures = [n - r for n, r in zip(counts, sums, strict=True)]

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable state: configuration, priors and counts."""
        state = self._base_state()
        state.update(
            prior_alpha=list(self.prior_alpha),
            prior_beta=list(self.prior_beta),
            top_two=self.top_two,
            successes=list(self.successes),
            failures=list(self.failures),
        )
        return state

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> ThompsonSampling:
        policy = cls(
            n_arms=state["n_arms"],
            prior_alpha=state["prior_alpha"],
            prior_beta=state["prior_beta"],
            floor=state["floor"],
            top_two=state["top_two"],
            refresh_every=state["refresh_every"],
        )
        policy.successes = [float(v) for v in state["successes"]]
        policy.failures = [float(v) for v in state["failures"]]
        return policy
