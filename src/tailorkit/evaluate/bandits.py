"""GrowthBook contextual-bandit rules.

A contextual-bandit rule carries its variations under
``contextualVariations`` and names a bandit with ``contextualBanditRef``.
The payload's ``contextualBandits[ref]`` holds ``contexts``: leaves with a
targeting ``condition``, a ``leafId`` and ``weights``.  The first leaf whose
condition matches supplies the weights; when none matches (or the bandit has
no leaves) the rule's own weights are used and the leaf id is -1.  A
reference to a bandit missing from the payload runs the rule as a plain
experiment without bandit metadata.

Everything is resolved at compile time: each leaf becomes its own
:class:`~tailorkit.evaluate.experiments.CompiledExperiment`, so routing a
user is one condition check per leaf.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tailorkit.evaluate.conditions import Predicate, compile_condition
from tailorkit.evaluate.context import Context
from tailorkit.evaluate.experiments import CompiledExperiment, compile_experiment
from tailorkit.evaluate.hashing import normalized_weights

__all__ = ["FALLBACK_LEAF_ID", "BanditRouter", "compile_bandit_rule"]

#: ``leafId`` reported when no leaf supplied the weights.
FALLBACK_LEAF_ID = -1


class BanditRouter:
    """Picks the compiled experiment (leaf) for a user."""

    __slots__ = ("fallback", "leaves")

    def __init__(
        self, leaves: list[tuple[Predicate, CompiledExperiment]], fallback: CompiledExperiment
    ) -> None:
        self.leaves = leaves
        self.fallback = fallback

    def select(self, ctx: Context) -> CompiledExperiment:
        """The experiment of the first matching leaf, or the fallback (see
        :func:`compile_bandit_rule` for an example)."""
        attributes = ctx.attributes
        for condition, experiment in self.leaves:
            if condition(attributes):
                return experiment
        return self.fallback


def _valid_weights(weights: Any, count: int) -> bool:
    """A leaf's weights: one finite, non-negative number per arm, summing to ~1."""
    if not isinstance(weights, Sequence) or isinstance(weights, str) or len(weights) != count:
        return False
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            return False
        if not math.isfinite(weight) or weight < 0:
            return False
    return 0.99 <= sum(weights) <= 1.01


def _valid_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def compile_bandit_rule(
    exp: Mapping[str, Any],
    spec: Mapping[str, Any],
    definition: Any,
    saved_groups: Mapping[str, Any],
) -> CompiledExperiment | BanditRouter:
    """Compile a contextual-bandit rule's experiment against its definition.

    ``exp`` is the experiment built from the rule, ``spec`` what results
    report, ``definition`` the payload's ``contextualBandits[ref]``.

    >>> exp = {"key": "cb", "variations": ["a", "b"], "weights": [0.5, 0.5]}
    >>> leaf = {"leafId": 4, "condition": {"plan": "pro"}, "weights": [0, 1]}
    >>> router = compile_bandit_rule(exp, exp, {"contexts": [leaf]}, {})
    >>> router.select(Context({"plan": "pro"})).bandit
    {'leafId': 4, 'variationWeights': [0, 1]}
    """
    if not definition and not isinstance(definition, Mapping):
        return compile_experiment(exp, saved_groups, spec=spec, check_filters=False)
    if not isinstance(definition, Mapping):
        definition = {}
    count = len(exp.get("variations") or [])
    version = definition.get("banditVersion")
    extra = {"banditVersion": version} if _valid_id(version) else {}
    # Explicit ranges override weights, so no truthful propensities exist
    with_meta = exp.get("ranges") is None

    def variant(weights: list[float] | None, leaf_id: int) -> CompiledExperiment:
        leaf_exp = dict(exp) if weights is None else {**exp, "weights": weights}
        leaf_spec = dict(spec) if weights is None else {**spec, "weights": weights}
        used = normalized_weights(count, leaf_exp.get("weights"))
        meta = {"leafId": leaf_id, "variationWeights": used, **extra} if with_meta else None
        return compile_experiment(
            leaf_exp, saved_groups, spec=leaf_spec, bandit=meta, check_filters=False
        )

    fallback = variant(None, FALLBACK_LEAF_ID)
    leaves: list[tuple[Predicate, CompiledExperiment]] = []
    contexts = definition.get("contexts") or []
    for leaf in contexts if isinstance(contexts, Sequence) else [None]:
        if not isinstance(leaf, Mapping):
            leaves.append((lambda _: True, fallback))  # malformed: fall back
            break
        condition = compile_condition(leaf.get("condition") or {}, saved_groups)
        weights: Any = leaf.get("weights")
        leaf_id: Any = leaf.get("leafId")
        if _valid_weights(weights, count) and _valid_id(leaf_id):
            leaves.append((condition, variant(list(weights), leaf_id)))
        else:
            leaves.append((condition, fallback))
    return BanditRouter(leaves, fallback)
