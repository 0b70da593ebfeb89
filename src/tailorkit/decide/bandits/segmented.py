"""Per-segment bandits: one independent policy (posterior) per segment x arm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tailorkit.decide.bandits.base import (
    CachedPolicy,
    Decision,
    Policy,
    RandomStream,
    RngLike,
    policy_from_state,
)

__all__ = ["SegmentedPolicy"]


def segment_key(context: Any) -> str:
    """The segment named by ``context``: a string, or a mapping's ``"segment"``.

    >>> segment_key("vip"), segment_key({"segment": "new", "country": "DE"})
    ('vip', 'new')
    """
    if isinstance(context, str):
        return context
    if isinstance(context, Mapping) and isinstance(context.get("segment"), str):
        return str(context["segment"])
    raise TypeError("segment context must be a str or a mapping with a str 'segment'")


class SegmentedPolicy(Policy):
    """Wraps a template policy and keeps one copy of it per segment.

    A segment seen for the first time starts from the template's state, so
    the template's priors (or counts) are the warm start of every segment.
    All segments draw from one shared random stream. The context of ``pull``
    and ``update`` is the segment key (or a mapping with a ``"segment"`` key).

    >>> from tailorkit.decide.bandits import ThompsonSampling
    >>> policy = SegmentedPolicy(ThompsonSampling(n_arms=2), rng=1)
    >>> policy.update_many([1, 1, 1], [1.0, 1.0, 1.0], ["vip", "vip", "vip"])
    >>> round(policy.probabilities("vip")[1], 4), policy.probabilities("new")
    (0.8, (0.5, 0.5))
    """

    kind = "segmented"

    def __init__(self, template: Policy, rng: RngLike = None) -> None:
        # The segment *is* the context, so the template must not need one.
        if not isinstance(template, CachedPolicy):
            raise TypeError("the template must be a context-free policy (TS, UCB1, ...)")
        super().__init__(template.n_arms, template.floor, rng)
        self.template = template
        self._template_state = template.to_state()
        self.segments: dict[str, Policy] = {}

    def set_rng(self, rng: RngLike) -> None:
        """Replace the random stream shared by every segment."""
        self._stream = RandomStream(rng)
        for policy in getattr(self, "segments", {}).values():
            policy._stream = self._stream

    def policy_for(self, segment: str) -> Policy:
        """The policy of ``segment``, created from the template on first use."""
        policy = self.segments.get(segment)
        if policy is None:
            policy = policy_from_state(self._template_state)
            policy._stream = self._stream
            self.segments[segment] = policy
        return policy

    def pull(self, context: Any = None) -> Decision:
        """Draw an arm with the policy of the context's segment."""
        key = context if type(context) is str else segment_key(context)
        policy = self.segments.get(key)
        if policy is None:
            policy = self.policy_for(key)
        return policy.pull()

    def update(self, arm: int, reward: float, context: Any = None) -> None:
        """Record a reward in the context's segment."""
        key = context if type(context) is str else segment_key(context)
        policy = self.segments.get(key)
        if policy is None:
            policy = self.policy_for(key)
        policy.update(arm, reward)

    def update_many(
        self,
        arms: Sequence[int],
        rewards: Sequence[float],
        contexts: Sequence[Any] | None = None,
    ) -> None:
        """Group a batch by segment and hand each group to its policy at once."""
        if contexts is None:
            raise ValueError("segmented updates need a context (segment) per reward")
        if not len(arms) == len(rewards) == len(contexts):
            raise ValueError("arms, rewards and contexts must have the same length")
        groups: dict[str, tuple[list[int], list[float]]] = {}
        for arm, reward, ctx in zip(arms, rewards, contexts, strict=True):
            group = groups.setdefault(segment_key(ctx), ([], []))
            group[0].append(int(arm))
            group[1].append(float(reward))
        for key, (seg_arms, seg_rewards) in groups.items():
            self.policy_for(key).update_many(seg_arms, seg_rewards)

    def statistics(self) -> dict[str, float]:
        """Every segment's statistics, as ``"<segment>|<arm>|<stat>"``.

        >>> from tailorkit.decide.bandits import ThompsonSampling
        >>> policy = SegmentedPolicy(ThompsonSampling(n_arms=2))
        >>> policy.update(1, 1.0, "vip")
        >>> policy.statistics()["vip|1|r"]
        1.0
        """
        return {
            f"{key}|{name}": value
            for key, policy in self.segments.items()
            for name, value in policy.statistics().items()
        }

    def statistics_of(
        self,
        arms: Sequence[int],
        rewards: Sequence[float],
        contexts: Sequence[Any] | None = None,
    ) -> dict[str, float]:
        """The statistics a batch adds, per segment."""
        if contexts is None:
            raise ValueError("segmented updates need a context (segment) per reward")
        out: dict[str, float] = {}
        for arm, reward, ctx in zip(arms, rewards, contexts, strict=True):
            key = segment_key(ctx)
            for name, value in self.template.statistics_of([arm], [reward]).items():
                field = f"{key}|{name}"
                out[field] = out.get(field, 0.0) + value
        return out

    def set_statistics(self, stats: Mapping[str, float]) -> None:
        """Replace every named segment's statistics (segments not named keep theirs)."""
        groups: dict[str, dict[str, float]] = {}
        for name, value in stats.items():
            key, arm, stat = name.rsplit("|", 2)
            groups.setdefault(key, {})[f"{arm}|{stat}"] = value
        for key, group in groups.items():
            self.policy_for(key).set_statistics(group)

    def probabilities(self, context: Any = None) -> tuple[float, ...]:
        """Arm probabilities in the context's segment."""
        return self.policy_for(segment_key(context)).probabilities()

    def to_growthbook(
        self, leaves: Sequence[tuple[str, Mapping[str, Any]]], version: int | None = None
    ) -> dict[str, Any]:
        """GrowthBook contextual-bandit payload: one leaf per segment.

        ``leaves`` lists ``(segment, condition)`` pairs in priority order (the
        SDK uses the first leaf whose condition matches; end with a catch-all
        ``{}``). Each leaf's ``weights`` are the segment's current arm
        probabilities, so the weight of the variation a GrowthBook SDK assigns
        is the propensity to log.

        >>> from tailorkit.decide.bandits import ThompsonSampling
        >>> policy = SegmentedPolicy(ThompsonSampling(n_arms=2))
        >>> policy.to_growthbook([("vip", {"plan": "pro"}), ("rest", {})], version=3)
        ... # doctest: +NORMALIZE_WHITESPACE
        {'banditVersion': 3, 'contexts': [{'leafId': 1, 'condition': {'plan': 'pro'},
        'weights': [0.5, 0.5]}, {'leafId': 2, 'condition': {}, 'weights': [0.5, 0.5]}]}
        """
        contexts = [
            {"leafId": i, "condition": dict(condition), "weights": list(self.probabilities(seg))}
            for i, (seg, condition) in enumerate(leaves, start=1)
        ]
        payload: dict[str, Any] = {} if version is None else {"banditVersion": version}
        payload["contexts"] = contexts
        return payload

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable state: the template and every segment's state."""
        return {
            "kind": self.kind,
            "template": self._template_state,
            "segments": {key: p.to_state() for key, p in self.segments.items()},
        }

    @classmethod
    def _from_state(cls, state: dict[str, Any]) -> SegmentedPolicy:
        policy = cls(policy_from_state(state["template"]))
        for key, seg_state in state["segments"].items():
            policy.segments[key] = policy_from_state(seg_state)
        return policy
