"""GrowthBook-compatible evaluation core: conditions, hashing, features, experiments.

Pure (no I/O): definitions are compiled once into an :class:`Evaluator`, and
each request gets a cheap :class:`Context`.

>>> ev = Evaluator({"checkout": {"defaultValue": "v1", "rules": [
...     {"key": "checkout-test", "variations": ["v1", "v2"], "hashVersion": 2}]}})
>>> ev.eval_feature("checkout", ev.context({"id": "user-42"})).source
'experiment'
"""

from tailorkit.evaluate.bandits import FALLBACK_LEAF_ID
from tailorkit.evaluate.conditions import compile_condition, eval_condition, padded_version_string
from tailorkit.evaluate.context import Context
from tailorkit.evaluate.encryption import (
    DecryptionError,
    decrypt,
    decrypt_payload,
    encrypt,
    encrypt_payload,
)
from tailorkit.evaluate.experiments import CompiledExperiment, compile_experiment
from tailorkit.evaluate.features import Evaluator
from tailorkit.evaluate.hashing import (
    choose_variation,
    fnv1a32,
    get_bucket_ranges,
    get_equal_weights,
    get_query_string_override,
    hash,
    in_namespace,
)
from tailorkit.evaluate.results import ExperimentResult, ExposureRecord, FeatureResult
from tailorkit.evaluate.sticky import (
    InMemoryStickyBucketService,
    StickyAssignmentDoc,
    StickyBucketService,
)

__all__ = [
    "FALLBACK_LEAF_ID",
    "CompiledExperiment",
    "Context",
    "DecryptionError",
    "Evaluator",
    "ExperimentResult",
    "ExposureRecord",
    "FeatureResult",
    "InMemoryStickyBucketService",
    "StickyAssignmentDoc",
    "StickyBucketService",
    "choose_variation",
    "compile_condition",
    "compile_experiment",
    "decrypt",
    "decrypt_payload",
    "encrypt",
    "encrypt_payload",
    "eval_condition",
    "fnv1a32",
    "get_bucket_ranges",
    "get_equal_weights",
    "get_query_string_override",
    "hash",
    "in_namespace",
    "padded_version_string",
]
