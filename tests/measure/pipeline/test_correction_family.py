"""The report's multiple-comparison correction equals statsmodels' on the same p-values.

By default one family spans variations × metrics × segments (the overall
comparisons and every segment's); ``correction_family: separate`` makes the
overall comparisons one family and the segment breakdown another.
Guardrails stay uncorrected in both.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from statsmodels.stats.multitest import multipletests

from tailorkit.measure.analysis import load_spec
from tailorkit.measure.analysis.pipeline import build_report
from tailorkit.measure.analysis.query import sufficient_stats
from tailorkit.measure.analysis.spec import ExperimentSpec
from tailorkit.measure.stats.multiple import CORRECTION_NAMES
from tailorkit.project.loader import QualitySettings
from tailorkit.store.warehouse import Warehouse
from tests.measure.pipeline.conftest import Stored
from tests.measure.pipeline.simulate import AT

METHODS = {"bonferroni": "bonferroni", "holm": "holm", "bh": "fdr_bh"}
KEYS = ("signup_flow", "hetero")


@pytest.fixture(scope="module")
def analysed(stored: Stored) -> dict[str, tuple[ExperimentSpec, pa.Table]]:
    """Spec and sufficient statistics of the experiments with segments (one query each)."""
    out = {}
    wh = Warehouse(stored.project.settings.store_url)
    try:
        for key in KEYS:
            spec = load_spec(stored.project, key)
            out[key] = spec, sufficient_stats(wh, spec, stored.project.settings.quality, AT)
    finally:
        wh.close()
    return out


def overall_rows(report: dict[str, Any], guardrails: bool) -> list[dict[str, Any]]:
    roles = ("guardrail",) if guardrails else ("primary", "secondary")
    return [v for m in report["metrics"] if m["role"] in roles for v in m.get("variations", [])]


def segment_rows(report: dict[str, Any], guardrails: set[str], is_guardrail: bool) -> list[Any]:
    return [r for r in report["segments"]["rows"] if (r["metric"] in guardrails) == is_guardrail]


def adjusted(rows: list[dict[str, Any]]) -> list[float]:
    return [r["adjusted_p_value"] for r in rows]


def reference(rows: list[dict[str, Any]], method: str) -> list[float]:
    return list(multipletests([r["p_value"] for r in rows], method=METHODS[method])[1])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("key", KEYS)
def test_one_family_across_variations_metrics_and_segments(
    analysed: dict[str, tuple[ExperimentSpec, pa.Table]], key: str, method: str
) -> None:
    spec, table = analysed[key]
    spec = replace(spec, correction=method)  # type: ignore[arg-type]
    r = build_report(spec, table, AT, QualitySettings())
    guardrails = {m.key for m in spec.metrics if m.role == "guardrail"}
    family = overall_rows(r, False) + segment_rows(r, guardrails, False)
    assert len(family) == r["settings"]["correction_family_sizes"]["all"] > 10
    np.testing.assert_allclose(adjusted(family), reference(family, method), rtol=1e-12)
    for row in family:
        assert row["significant"] == (row["adjusted_p_value"] <= spec.alpha)
    # guardrails: judged on their raw p-values, overall and per segment
    for row in overall_rows(r, True) + segment_rows(r, guardrails, True):
        assert row["adjusted_p_value"] == row["p_value"]
    described = r["settings"]["correction_description"]
    assert f"one family of {len(family)} comparisons" in described
    assert described.startswith(CORRECTION_NAMES[method]) and "guardrails uncorrected" in described
    assert r["segments"]["correction_description"] == described


@pytest.mark.parametrize("method", METHODS)
def test_separate_families_when_configured(
    analysed: dict[str, tuple[ExperimentSpec, pa.Table]], method: str
) -> None:
    spec, table = analysed["hetero"]
    spec = replace(spec, correction=method, correction_family="separate")  # type: ignore[arg-type]
    r = build_report(spec, table, AT, QualitySettings())
    overall, segments = overall_rows(r, False), segment_rows(r, set(), False)
    np.testing.assert_allclose(adjusted(overall), reference(overall, method), rtol=1e-12)
    np.testing.assert_allclose(adjusted(segments), reference(segments, method), rtol=1e-12)
    sizes = r["settings"]["correction_family_sizes"]
    assert sizes == {"overall": len(overall), "segments": len(segments)}
    assert (
        f"{len(segments)} across variations × metrics × segments"
        in (r["settings"]["correction_description"])
    )


def test_one_family_is_stricter_than_separate_families(
    analysed: dict[str, tuple[ExperimentSpec, pa.Table]],
) -> None:
    spec, table = analysed["signup_flow"]
    one = build_report(spec, table, AT, QualitySettings())
    two = build_report(replace(spec, correction_family="separate"), table, AT, QualitySettings())
    a, b = adjusted(overall_rows(one, False)), adjusted(overall_rows(two, False))
    assert all(x >= y for x, y in zip(a, b, strict=True)) and a != b


def test_no_sign_disagreement_when_segments_agree(
    analysed: dict[str, tuple[ExperimentSpec, pa.Table]],
) -> None:
    spec, table = analysed["signup_flow"]  # the same +4 points in every segment
    r = build_report(spec, table, AT, QualitySettings())
    het = {h["metric"]: h for h in r["segments"]["heterogeneity"]}
    assert het["signup"]["better_segments"] and not het["signup"]["worse_segments"]
    assert not any(h["sign_disagreement"] for h in het.values())
    assert "disagree" not in r["recommendation"]["reason"]
