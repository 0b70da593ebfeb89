"""tailorkit's statistics engine: pure functions of sufficient statistics.

No I/O, no data frames (except :func:`regression_adjustment`): SQL computes per
variation (× segment) ``n``, ``Σx``, ``Σx²`` and, for CUPED and ratio metrics,
``Σy``, ``Σy²``, ``Σxy``; everything here is a function of those numbers.
Functions broadcast over numpy arrays, so thousands of experiments (or
simulations) are analysed in one call. Methods and conventions are documented
in ``docs/statistics.md``.

>>> from tailorkit.measure.stats import SampleStats, analyze_metric, recommend
>>> a = analyze_metric([SampleStats.from_proportion(5000, 500),
...                     SampleStats.from_proportion(5000, 580)], "binomial")
>>> recommend(a).action
'ship'
"""

from tailorkit.measure.stats._types import Alternative, Real
from tailorkit.measure.stats.analysis import (
    Action,
    MetricAnalysis,
    Recommendation,
    VariationResult,
    analyze_metric,
    apply_correction,
    correct_jointly,
    recommend,
)
from tailorkit.measure.stats.bayesian import (
    BayesianResult,
    BetaPrior,
    GaussianPrior,
    beta_binomial,
    gaussian_model,
)
from tailorkit.measure.stats.factorial import FactorialEffect, factorial_effects
from tailorkit.measure.stats.frequentist import (
    Interval,
    LiftResult,
    TestResult,
    chi_square_test,
    confidence_interval,
    goodness_of_fit,
    lift,
    relative_lift,
    welch_t_test,
    z_test_proportions,
)
from tailorkit.measure.stats.health import (
    GuardrailResult,
    HealthCheck,
    SrmResult,
    guardrail_check,
    minimum_data_checks,
    multiple_exposure_check,
    srm_check,
)
from tailorkit.measure.stats.metrics import (
    Estimate,
    MetricType,
    as_estimate,
    binomial_estimate,
    estimate,
    mean_estimate,
    ratio_estimate,
)
from tailorkit.measure.stats.multiple import Correction, CorrectionResult, adjust_p_values, correct
from tailorkit.measure.stats.planning import (
    DurationEstimate,
    MdePlan,
    SampleSizePlan,
    expected_duration,
    mde_binomial,
    mde_mean,
    power_binomial,
    power_mean,
    sample_size_binomial,
    sample_size_mean,
)
from tailorkit.measure.stats.segments import HeterogeneityResult, SegmentLift, segment_lifts
from tailorkit.measure.stats.sequential import sequential_lift
from tailorkit.measure.stats.sufficient import PairedStats, SampleStats, percentile_cap, winsorize
from tailorkit.measure.stats.variance_reduction import (
    RegressionEffect,
    cuped_adjust,
    cuped_theta,
    expected_variance_reduction,
    regression_adjustment,
    regression_adjustment_cells,
)

__all__ = [
    "Action",
    "Alternative",
    "BayesianResult",
    "BetaPrior",
    "Correction",
    "CorrectionResult",
    "DurationEstimate",
    "Estimate",
    "FactorialEffect",
    "GaussianPrior",
    "GuardrailResult",
    "HealthCheck",
    "HeterogeneityResult",
    "Interval",
    "LiftResult",
    "MdePlan",
    "MetricAnalysis",
    "MetricType",
    "PairedStats",
    "Real",
    "Recommendation",
    "RegressionEffect",
    "SampleSizePlan",
    "SampleStats",
    "SegmentLift",
    "SrmResult",
    "TestResult",
    "VariationResult",
    "adjust_p_values",
    "analyze_metric",
    "apply_correction",
    "as_estimate",
    "beta_binomial",
    "binomial_estimate",
    "chi_square_test",
    "confidence_interval",
    "correct",
    "correct_jointly",
    "cuped_adjust",
    "cuped_theta",
    "estimate",
    "expected_duration",
    "expected_variance_reduction",
    "factorial_effects",
    "gaussian_model",
    "goodness_of_fit",
    "guardrail_check",
    "lift",
    "mde_binomial",
    "mde_mean",
    "mean_estimate",
    "minimum_data_checks",
    "multiple_exposure_check",
    "percentile_cap",
    "power_binomial",
    "power_mean",
    "ratio_estimate",
    "recommend",
    "regression_adjustment",
    "regression_adjustment_cells",
    "relative_lift",
    "sample_size_binomial",
    "sample_size_mean",
    "segment_lifts",
    "sequential_lift",
    "srm_check",
    "welch_t_test",
    "winsorize",
    "z_test_proportions",
]
