"""Experiment analysis: warehouse → sufficient statistics → engine → report.

``experiments:`` in ``features.yaml`` defines what to measure
(:mod:`~tailorkit.measure.analysis.spec`); one Ibis query computes the
sufficient statistics on any backend (:mod:`~tailorkit.measure.analysis.query`);
the statistics engine (:mod:`tailorkit.measure.stats`) does the rest
(:mod:`~tailorkit.measure.analysis.report`,
:mod:`~tailorkit.measure.analysis.breakdown`). See ``docs/experiments.md``.
"""

from tailorkit.measure.analysis.pipeline import analyze_experiment, build_report, load_spec
from tailorkit.measure.analysis.spec import ExperimentSpec, MetricSpec, parse_experiment

__all__ = [
    "ExperimentSpec",
    "MetricSpec",
    "analyze_experiment",
    "build_report",
    "load_spec",
    "parse_experiment",
]
