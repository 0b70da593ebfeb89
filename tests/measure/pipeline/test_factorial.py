"""Factorial experiments: a 2 × 2 with a known interaction, end to end; the tests' error rate."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats as sps

from tailorkit.measure.analysis import load_spec, parse_experiment
from tailorkit.measure.analysis.html import render_html
from tailorkit.measure.analysis.pipeline import build_report
from tailorkit.measure.analysis.query import sufficient_stats
from tailorkit.measure.stats import BetaPrior, GaussianPrior, SampleStats, factorial_effects
from tailorkit.project import ConfigError, load_project
from tailorkit.project.init import write_project
from tailorkit.store.warehouse import Warehouse
from tests.measure.pipeline.conftest import METRICS, store, write_definitions
from tests.measure.pipeline.simulate import AT, Design, simulate

KEY = "grid"
# cells (headline, image): (0,0) 10%, (0,1) 12%, (1,0) 14%, (1,1) 26% → interaction +10 points
SIGNUP = (0.10, 0.12, 0.14, 0.26)
FEATURES = {
    "experiments": {
        KEY: {
            "factors": {"headline": 2, "image": 2},
            "metrics": {k: METRICS[k] for k in ("signup", "revenue", "ctr")},
        }
    }
}


def test_two_by_two_main_effects_and_interaction(tmp_path: Path) -> None:
    project = write_definitions(write_project(tmp_path / "shop"))
    design = Design(KEY, 4000, weights=(0.25,) * 4, signup=SIGNUP, purchase_rate=(1.0,) * 4,
                    ctr=(0.2,) * 4, seed=21)  # fmt: skip
    wh = Warehouse(project.settings.store_url)
    try:
        store(wh, project, simulate(design))
        spec = parse_experiment(FEATURES, KEY)
        table = sufficient_stats(wh, spec, project.settings.quality, AT)
    finally:
        wh.close()
    r = build_report(spec, table, AT, project.settings.quality)
    f = r["factorial"]
    assert f["cells"] == {"v0": [0, 0], "v1": [0, 1], "v2": [1, 0], "v3": [1, 1]}
    signup = next(m for m in r["metrics"] if m["key"] == "signup")
    means = [signup["control"]["mean"]] + [v["mean"] for v in signup["variations"]]
    users = [v["users"] for v in r["variations"]]
    effects = {e["name"]: e for e in f["metrics"][0]["effects"]}
    # the contrasts of the cell means, and z tests with the binomial variances
    var = [p * (1 - p) / n for p, n in zip(means, users, strict=True)]
    expected = {
        "headline": ((means[2] - means[0] + means[3] - means[1]) / 2, sum(var) / 4),
        "image": ((means[1] - means[0] + means[3] - means[2]) / 2, sum(var) / 4),
        "headline×image": (means[3] - means[2] - means[1] + means[0], sum(var)),
    }
    for name, (est, v) in expected.items():
        e = effects[name]
        assert e["estimate"] == pytest.approx(est, rel=1e-12)
        assert e["p_value"] == pytest.approx(2 * sps.norm.sf(abs(est) / math.sqrt(v)), rel=1e-9)
    inter = effects["headline×image"]
    assert inter["kind"] == "interaction" and inter["significant"]
    assert inter["ci"][0] < 0.10 < inter["ci"][1]
    # CTR did not move in any cell: no effect may be significant after correction
    ctr = next(m for m in f["metrics"] if m["metric"] == "ctr")
    assert not any(e["significant"] for e in ctr["effects"])
    assert "one family of 9 effects" in f["correction_description"]
    page = render_html(r)
    assert "Factorial effects" in page and "headline×image" in page


def test_factors_must_match_the_variations() -> None:
    doc = {"experiments": {KEY: {**FEATURES["experiments"][KEY], "variations": ["a", "b", "c"]}}}
    with pytest.raises(ConfigError, match="4 cells need 4 variations"):
        parse_experiment(doc, KEY)


def test_interaction_test_false_positive_rate_is_nominal() -> None:
    """No interaction (additive effects): the interaction test rejects 5% of the time.

    4,000 simulations: the Monte-Carlo SE of a 5% rate is 0.34 points, the band ±2.9 SE.
    """
    rng = np.random.default_rng(5)
    sims, n = 4_000, 400
    p = {(0, 0): 0.10, (0, 1): 0.13, (1, 0): 0.15, (1, 1): 0.18}  # additive
    counts = {cell: rng.binomial(n, q, sims) for cell, q in p.items()}
    rejected = 0
    for s in range(sims):
        cells = {c: SampleStats.from_proportion(n, int(k[s])) for c, k in counts.items()}
        inter = factorial_effects(cells, ["A", "B"], "binomial")[-1]
        rejected += inter.p_value <= 0.05
    assert 0.040 <= rejected / sims <= 0.060


def test_project_files_accept_factors_correction_family_and_priors(tmp_path: Path) -> None:
    root = write_project(tmp_path / "shop")
    doc = copy.deepcopy(FEATURES)
    doc["experiments"][KEY]["correction_family"] = "separate"
    doc["experiments"][KEY]["metrics"]["signup"]["prior"] = {"alpha": 2, "beta": 18}
    doc["experiments"][KEY]["metrics"]["revenue"]["prior"] = {"sd": 0.05}
    (root / "features.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = load_spec(load_project(root), KEY)
    assert spec.metrics[0].prior == BetaPrior(2.0, 18.0)
    assert spec.metrics[1].prior == GaussianPrior(0.0, 0.05**2, "relative")
    assert spec.factors == (("headline", 2), ("image", 2))
    assert spec.correction_family == "separate"
    doc["experiments"][KEY]["correction_family"] = "per_metric"
    (root / "features.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(ConfigError, match="correction_family"):
        load_project(root)
