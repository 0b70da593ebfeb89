"""Evaluation results and exposure records.

The ``to_dict`` methods give GrowthBook's JSON result shapes (``FeatureResult``
and ``Result`` in the SDKs), as the cross-SDK suite compares them.  Result
objects may share their ``value`` with the compiled definitions: treat them as
read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tailorkit.evaluate.jsvalues import js_truthy

if TYPE_CHECKING:
    from tailorkit.evaluate.experiments import CompiledExperiment

__all__ = ["ExperimentResult", "ExposureRecord", "FeatureResult"]


@dataclass(slots=True, eq=False)
class ExperimentResult:
    """The outcome of running an experiment for one user.

    >>> ExperimentResult("b", 1, True, True, "id", "u1", "f", "1", bucket=0.61).to_dict()["key"]
    '1'
    """

    value: Any
    variation_id: int
    in_experiment: bool
    hash_used: bool
    hash_attribute: str
    hash_value: Any
    feature_id: str | None
    key: str
    name: str | None = None
    bucket: float | None = None
    passthrough: bool = False
    sticky_bucket_used: bool = False
    leaf_id: int | None = None
    variation_weights: list[float] | None = None
    bandit_version: int | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExperimentResult):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """GrowthBook's ``Result`` JSON shape."""
        out: dict[str, Any] = {
            "featureId": self.feature_id,
            "value": self.value,
            "variationId": self.variation_id,
            "inExperiment": self.in_experiment,
            "hashUsed": self.hash_used,
            "hashAttribute": self.hash_attribute,
            "hashValue": self.hash_value,
            "key": self.key,
            "stickyBucketUsed": self.sticky_bucket_used,
        }
        if self.name:
            out["name"] = self.name
        if self.bucket is not None:
            out["bucket"] = self.bucket
        if self.passthrough:
            out["passthrough"] = True
        if self.leaf_id is not None:
            out["leafId"] = self.leaf_id
        if self.variation_weights is not None:
            out["variationWeights"] = self.variation_weights
        if self.bandit_version is not None:
            out["banditVersion"] = self.bandit_version
        return out


@dataclass(slots=True, eq=False)
class FeatureResult:
    """The value of a feature for one user, and where it came from.

    ``source`` is one of ``defaultValue``, ``force``, ``experiment``,
    ``override``, ``unknownFeature``, ``prerequisite`` and
    ``cyclicPrerequisite``.

    >>> FeatureResult("blue", "force", "r1").to_dict()
    {'value': 'blue', 'on': True, 'off': False, 'source': 'force', 'ruleId': 'r1'}
    """

    value: Any
    source: str
    rule_id: str = ""
    experiment: CompiledExperiment | None = None
    experiment_result: ExperimentResult | None = None

    @property
    def on(self) -> bool:
        """JavaScript truthiness of the value."""
        return js_truthy(self.value)

    @property
    def off(self) -> bool:
        """The opposite of :attr:`on`."""
        return not js_truthy(self.value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureResult):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """GrowthBook's ``FeatureResult`` JSON shape."""
        on = js_truthy(self.value)
        out: dict[str, Any] = {
            "value": self.value,
            "on": on,
            "off": not on,
            "source": self.source,
            "ruleId": self.rule_id,
        }
        result = self.experiment_result
        if self.experiment is not None:
            bandit = result is not None and result.hash_used and result.in_experiment
            out["experiment"] = self.experiment.to_dict(include_bandit=bandit)
        if result is not None:
            out["experimentResult"] = result.to_dict()
        return out


@dataclass(slots=True)
class ExposureRecord:
    """One user put into an experiment variation by hashing (an exposure).

    ``propensity`` is the probability that an *eligible* user (one who passed
    targeting, filters, namespace and prerequisites and has a hash value)
    gets this variation: the length of the variation's bucket range, i.e.
    ``coverage × weight`` with computed ranges (explicit ``ranges``: their
    length), under a uniform hash on [0, 1).  ``enrollment_probability`` is
    the total length of all ranges (the coverage), so
    ``propensity / enrollment_probability`` is the probability of this
    variation given enrollment.  Sticky-bucketed users report the current
    ranges' figures with ``sticky_bucket_used`` set, since their variation
    came from an earlier assignment.
    """

    experiment_key: str
    variation_id: int
    variation_key: str
    hash_attribute: str
    hash_value: Any
    feature_key: str | None
    propensity: float
    enrollment_probability: float
    bucket: float | None = None
    sticky_bucket_used: bool = False
    leaf_id: int | None = None
    bandit_version: int | None = None

    def as_tuple(self) -> tuple[Any, ...]:
        """The fields in declaration order (``ExposureRecord(*fields)`` rebuilds the record).

        A tuple of them is what caches and queues hold: the garbage collector
        stops tracking it at its first look, a record it scans until it dies.

        >>> from dataclasses import fields
        >>> r = ExposureRecord("exp", 1, "b", "id", "u1", "f", 0.25, 0.5, 0.1, True, 3, 2)
        >>> ExposureRecord(*r.as_tuple()) == r, len(r.as_tuple()) == len(fields(r))
        (True, True)
        """
        # not dataclasses.astuple: it deep-copies every value
        return (
            self.experiment_key, self.variation_id, self.variation_key, self.hash_attribute,
            self.hash_value, self.feature_key, self.propensity, self.enrollment_probability,
            self.bucket, self.sticky_bucket_used, self.leaf_id, self.bandit_version,
        )  # fmt: skip
