"""Shared pieces of the bandit family: the decision record, the random stream,
the exploration floor and the base class every policy derives from.

Every policy answers ``pull(context)`` with a :class:`Decision` whose
``propensity`` is *exactly* the probability with which the returned arm was
drawn: policies first compute a probability vector over arms, mix it with the
exploration floor, and then sample from that very vector with one uniform.
That is what makes the logs usable for off-policy evaluation.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np

__all__ = [
    "Decision",
    "Policy",
    "RandomStream",
    "RngLike",
    "apply_floor",
    "cumulative",
    "policy_from_state",
    "uniform_over",
]

RngLike = np.random.Generator | int | None
P = TypeVar("P", bound="Policy")
C = TypeVar("C", bound="CachedPolicy")

# Registry of policy kinds for ``policy_from_state``; filled by ``Policy.__init_subclass__``.
_REGISTRY: dict[str, type[Policy]] = {}


class Decision(NamedTuple):
    """One decision: the arm drawn, its propensity, and every arm's probability.

    A ``NamedTuple`` rather than a frozen dataclass because it is built on the
    hot path and is about twice as cheap to create.

    >>> d = Decision(arm=1, propensity=0.75, probabilities=(0.25, 0.75))
    >>> d.propensity == d.probabilities[d.arm]
    True
    """

    arm: int
    propensity: float
    probabilities: tuple[float, ...]


class RandomStream:
    """Uniform numbers from a numpy ``Generator``, drawn in blocks.

    One ``rng.random()`` call costs ~300 ns; indexing a pre-drawn Python list
    costs ~30 ns, so the hot path takes its uniforms from a block. The
    sequence is a pure function of the generator, so a seed reproduces it.

    >>> s = RandomStream(np.random.default_rng(0), block=4)
    >>> u = [s.uniform() for _ in range(6)]
    >>> u[:4] == np.random.default_rng(0).random(4).tolist()
    True
    """

    __slots__ = ("_block", "_buf", "_i", "rng")

    def __init__(self, rng: RngLike = None, block: int = 1024) -> None:
        self.rng = np.random.default_rng(rng)
        self._block = block
        self._buf: list[float] = []
        self._i = 0

    def uniform(self) -> float:
        """Next uniform number in [0, 1)."""
        i = self._i
        if i >= len(self._buf):
            self._buf = self.rng.random(self._block).tolist()
            i = 0
        self._i = i + 1
        return self._buf[i]


def apply_floor(probs: Sequence[float], floor: float) -> list[float]:
    """Mix ``probs`` with a per-arm exploration floor.

    Returns ``floor + (1 - K * floor) * p``: every arm keeps at least
    ``floor`` and the result still sums to one.

    >>> apply_floor([1.0, 0.0], 0.1)
    [0.9, 0.1]
    """
    if floor <= 0.0:
        return list(probs)
    scale = 1.0 - len(probs) * floor
    return [floor + scale * p for p in probs]


def cumulative(probs: Sequence[float]) -> list[float]:
    """Cumulative sums for one-uniform sampling, with the last entry pinned to 1.

    Pinning guards against rounding leaving a gap above the last sum.

    >>> cumulative([0.25, 0.25, 0.5])
    [0.25, 0.5, 1.0]
    """
    out: list[float] = []
    acc = 0.0
    for p in probs:
        acc += p
        out.append(acc)
    out[-1] = 1.0
    return out


def uniform_over(n_arms: int, arms: Sequence[int]) -> list[float]:
    """Probability vector spread evenly over ``arms`` (ties of an argmax).

    >>> uniform_over(4, [1, 3])
    [0.0, 0.5, 0.0, 0.5]
    """
    probs = [0.0] * n_arms
    share = 1.0 / len(arms)
    for a in arms:
        probs[a] = share
    return probs


def argmax_ties(values: Sequence[float], tol: float = 1e-12) -> list[int]:
    """All indices whose value is within ``tol`` of the maximum.

    >>> argmax_ties([1.0, 3.0, 3.0])
    [1, 2]
    """
    best = max(values)
    return [i for i, v in enumerate(values) if v >= best - tol]


def check_floor(floor: float, n_arms: int) -> None:
    """Reject floors that cannot be honoured (``K * floor`` above one)."""
    if not 0.0 <= floor <= 1.0 / n_arms:
        raise ValueError(f"floor must be in [0, 1/{n_arms}], got {floor}")


class Policy(ABC):
    """Base class of the bandit policies.

    Subclasses set ``kind`` (the tag stored in ``to_state``) and implement
    ``pull``, ``update``, ``probabilities``, ``to_state`` and ``_from_state``.
    ``update_many`` applies a batch of delayed rewards; subclasses may
    override it with a vectorised version.

    >>> from tailorkit.decide.bandits import ThompsonSampling
    >>> policy = ThompsonSampling(n_arms=3, rng=7)
    >>> d = policy.pull()
    >>> policy.update(d.arm, 1.0)
    >>> policy_from_state(policy.to_state()).n_arms
    3
    """

    kind: ClassVar[str] = ""
    n_arms: int
    floor: float

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _REGISTRY[cls.kind] = cls

    def __init__(self, n_arms: int, floor: float = 0.0, rng: RngLike = None) -> None:
        if n_arms < 1:
            raise ValueError("n_arms must be >= 1")
        check_floor(floor, n_arms)
        self.n_arms = n_arms
        self.floor = floor
        self._stream = RandomStream(rng)

    def set_rng(self, rng: RngLike) -> None:
        """Replace the random source (e.g. after restoring state on a replica)."""
        self._stream = RandomStream(rng)

    @abstractmethod
    def pull(self, context: Any = None) -> Decision:
        """Choose an arm for ``context`` and report its propensity."""

    @abstractmethod
    def update(self, arm: int, reward: float, context: Any = None) -> None:
        """Record the reward observed after playing ``arm`` in ``context``."""

    @abstractmethod
    def probabilities(self, context: Any = None) -> tuple[float, ...]:
        """Probability of each arm for ``context`` (floor included)."""

    def update_many(
        self,
        arms: Sequence[int],
        rewards: Sequence[float],
        contexts: Sequence[Any] | None = None,
    ) -> None:
        """Apply a batch of delayed rewards, in order."""
        if len(arms) != len(rewards):
            raise ValueError("arms and rewards must have the same length")
        if contexts is None:
            for arm, reward in zip(arms, rewards, strict=True):
                self.update(int(arm), float(reward))
            return
        for arm, reward, ctx in zip(arms, rewards, contexts, strict=True):
            self.update(int(arm), float(reward), ctx)

    @abstractmethod
    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable state (configuration and learned statistics)."""

    # Sufficient statistics: additive numbers by field name (priors and warm starts
    # excluded), so that replicas can sum what each learned, e.g. in a Redis hash.
    # For any batch: ``statistics()`` after ``update_many(batch)`` equals the
    # statistics before plus ``statistics_of(batch)``.

    @abstractmethod
    def statistics(self) -> dict[str, float]:
        """What this policy learned so far, as additive sufficient statistics."""

    @abstractmethod
    def statistics_of(
        self,
        arms: Sequence[int],
        rewards: Sequence[float],
        contexts: Sequence[Any] | None = None,
    ) -> dict[str, float]:
        """The statistics a batch of rewards adds (does not change the policy)."""

    @abstractmethod
    def set_statistics(self, stats: Mapping[str, float]) -> None:
        """Replace what was learned by ``stats`` (priors and configuration stay)."""

    @classmethod
    def from_state(cls: type[P], state: dict[str, Any], rng: RngLike = None) -> P:
        """Rebuild a policy from ``to_state()`` output."""
        if state.get("kind") != cls.kind:
            raise ValueError(f"state of kind {state.get('kind')!r} is not {cls.kind!r}")
        policy = cls._from_state(state)
        policy.set_rng(rng)
        return policy

    @classmethod
    @abstractmethod
    def _from_state(cls: type[P], state: dict[str, Any]) -> P:
        """Construct the policy from its state (without the random source)."""

    def _check_arm(self, arm: int) -> None:
        if not 0 <= arm < self.n_arms:
            raise ValueError(f"arm {arm} out of range 0..{self.n_arms - 1}")


class CachedPolicy(Policy):
    """A context-free policy whose arm probabilities are cached between updates.

    ``update`` only touches counters and marks the cache stale once
    ``refresh_every`` updates are pending; the next ``pull`` recomputes the
    probabilities (``_compute``), mixes in the floor and rebuilds the
    cumulative table. Drawing an arm is then one uniform and one bisection.
    With ``refresh_every > 1`` the policy serves slightly stale probabilities
    between refreshes, but the logged propensity is still exactly the
    probability that was used to draw.
    """

    def __init__(
        self,
        n_arms: int,
        floor: float = 0.0,
        rng: RngLike = None,
        refresh_every: int = 1,
    ) -> None:
        super().__init__(n_arms, floor, rng)
        if refresh_every < 1:
            raise ValueError("refresh_every must be >= 1")
        self.refresh_every = refresh_every
        self._pending = 0
        self._stale = True
        self._probs: tuple[float, ...] = ()
        self._cum: list[float] = []

    @abstractmethod
    def _compute(self) -> list[float]:
        """Arm probabilities before the floor, from the current statistics."""

    @abstractmethod
    def _record(self, arm: int, reward: float) -> None:
        """Add one observation to the statistics."""

    def _refresh(self) -> None:
        probs = apply_floor(self._compute(), self.floor)
        total = math.fsum(probs)
        self._probs = tuple(p / total for p in probs)
        self._cum = cumulative(self._probs)
        self._stale = False
        self._pending = 0

    def _touched(self, n: int = 1) -> None:
        self._pending += n
        if self._pending >= self.refresh_every:
            self._stale = True

    def pull(self, context: Any = None) -> Decision:
        """Draw an arm (``context`` is ignored by context-free policies)."""
        if self._stale:
            self._refresh()
        probs = self._probs
        arm = bisect_right(self._cum, self._stream.uniform())
        return Decision(arm, probs[arm], probs)

    def probabilities(self, context: Any = None) -> tuple[float, ...]:
        """Current arm probabilities, floor included."""
        if self._stale:
            self._refresh()
        return self._probs

    def update(self, arm: int, reward: float, context: Any = None) -> None:
        """Record one reward; probabilities refresh lazily on the next pull."""
        self._check_arm(arm)
        self._record(arm, reward)
        self._touched()

    def update_many(
        self,
        arms: Sequence[int],
        rewards: Sequence[float],
        contexts: Sequence[Any] | None = None,
    ) -> None:
        """Apply a batch of rewards with a single cache invalidation."""
        if len(arms) != len(rewards):
            raise ValueError("arms and rewards must have the same length")
        for arm, reward in zip(arms, rewards, strict=True):
            a = int(arm)
            self._check_arm(a)
            self._record(a, float(reward))
        self._touched(len(arms))

    @abstractmethod
    def _totals(self) -> tuple[list[float], list[float]]:
        """Learned observation count and reward sum per arm."""

    @abstractmethod
    def _set_totals(self, counts: list[float], sums: list[float]) -> None:
        """Replace the learned counts and reward sums per arm."""

    def statistics(self) -> dict[str, float]:
        """``{"<arm>|n": count, "<arm>|r": reward sum}`` per arm.

        >>> from tailorkit.decide.bandits import ThompsonSampling
        >>> policy = ThompsonSampling(n_arms=2)
        >>> policy.update_many([1, 1], [1.0, 0.0])
        >>> policy.statistics()
        {'0|n': 0.0, '0|r': 0.0, '1|n': 2.0, '1|r': 1.0}
        """
        counts, sums = self._totals()
        out: dict[str, float] = {}
        for arm, (n, r) in enumerate(zip(counts, sums, strict=True)):
            out[f"{arm}|n"] = n
            out[f"{arm}|r"] = r
        return out

    def statistics_of(
        self,
        arms: Sequence[int],
        rewards: Sequence[float],
        contexts: Sequence[Any] | None = None,
    ) -> dict[str, float]:
        """Count and reward sum per arm of a batch."""
        out: dict[str, float] = {}
        for arm, reward in zip(arms, rewards, strict=True):
            a = int(arm)
            self._check_arm(a)
            out[f"{a}|n"] = out.get(f"{a}|n", 0.0) + 1.0
            out[f"{a}|r"] = out.get(f"{a}|r", 0.0) + float(reward)
        return out

    def set_statistics(self, stats: Mapping[str, float]) -> None:
        """Replace the learned counts and sums; probabilities refresh on the next pull."""
        counts = [0.0] * self.n_arms
        sums = [0.0] * self.n_arms
        for name, value in stats.items():
            arm, _, stat = name.partition("|")
            a = int(arm)
            self._check_arm(a)
            if stat == "n":
                counts[a] = float(value)
            elif stat == "r":
                sums[a] = float(value)
            else:
                raise ValueError(f"unknown statistic {name!r}")
        self._set_totals(counts, sums)
        self._stale = True
        self._pending = 0

    def _base_state(self) -> dict[str, Any]:
        # The cached probabilities travel with the state: with refresh_every > 1
        # they may lag the counts, and a replica must serve the same ones.
        return {
            "kind": self.kind,
            "n_arms": self.n_arms,
            "floor": self.floor,
            "refresh_every": self.refresh_every,
            "pending": self._pending,
            "cached": None if self._stale else list(self._probs),
        }

    @classmethod
    def from_state(cls: type[C], state: dict[str, Any], rng: RngLike = None) -> C:
        """Rebuild the policy, including probabilities cached but not yet refreshed."""
        policy = super().from_state(state, rng)
        policy._pending = int(state.get("pending", 0))
        cached = state.get("cached")
        if cached is not None:
            policy._probs = tuple(float(p) for p in cached)
            policy._cum = cumulative(policy._probs)
            policy._stale = False
        return policy


def policy_from_state(state: dict[str, Any], rng: RngLike = None) -> Policy:
    """Rebuild any policy from its ``to_state()`` output, dispatching on ``kind``.

    >>> from tailorkit.decide.bandits import UCB1
    >>> type(policy_from_state(UCB1(n_arms=2).to_state())).__name__
    'UCB1'
    """
    kind = state.get("kind")
    if kind not in _REGISTRY:
        raise ValueError(f"unknown policy kind {kind!r}")
    return _REGISTRY[kind].from_state(state, rng)


def as_float_list(value: float | Sequence[float], n: int, name: str) -> list[float]:
    """Broadcast a scalar or check a per-arm sequence of length ``n``."""
    if isinstance(value, int | float):
        return [float(value)] * n
    out = [float(v) for v in value]
    if len(out) != n:
        raise ValueError(f"{name} must have {n} entries, got {len(out)}")
    return out
