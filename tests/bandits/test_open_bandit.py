"""Off-policy evaluation on real logs (Open Bandit Dataset sample, ZOZOTOWN).

The value of the production Bernoulli-TS policy is estimated from the
uniform-random logs and compared with the click rate observed while BTS
served (the ``bts/`` logs). The work is done by ``benchmarks/ope_open_bandit.py``
(which prints the full table); this test checks its numbers.

Tolerance. Each log has only 38-69 clicks in 10,000 rows. The importance
weights under the rebuilt BTS policy leave an effective sample of ~1,600-2,500
rows, i.e. ~7-13 effective clicks, so the IPS-type estimates carry a standard
error of 25-45% of their value; the "truth" (on-policy CTR of 42-69 clicks)
has one of 12-15%. Two such noisy numbers routinely differ by 30-50%. On top
of that, the rebuilt policy is BTS at the *start* of the week (from
``prior_bts.yaml``), while the logged BTS kept learning during it. So the test
asks for what the data can support:

- every unbiased estimator (IPS, SNIPS, DR) agrees with the truth within two
  combined standard errors (|z| < 2) in every campaign;
- their relative error stays below 60% in every campaign and below 40% on
  average over the three campaigns;
- the direct method (whose interval ignores model error, so no z-test) stays
  within 60% of the truth.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "ope_open_bandit.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ope_open_bandit", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


obd = load_bench()
ROOT = obd.data_path()
pytestmark = pytest.mark.skipif(
    not (ROOT / "prior_bts.yaml").exists(), reason=f"Open Bandit Dataset not at {ROOT}"
)


@pytest.fixture(scope="module")
def results() -> list:
    return [obd.evaluate_campaign(ROOT, c) for c in obd.CAMPAIGNS]


def test_rebuilt_bts_policy_fills_three_slots() -> None:
    dist = obd.slot_distribution(obd.bts_policy(ROOT, "men"), n_draws=20_000)
    assert dist.shape == (34, 3)
    assert np.allclose(dist.sum(axis=0), 1.0)
    assert np.all(dist.sum(axis=1) <= 1.0 + 1e-12)


def test_rebuilt_policy_resembles_the_logged_bts(results: list) -> None:
    # Positive everywhere; strong only for "men", whose posterior moved least.
    assert all(r.policy_match > 0 for r in results)
    assert max(r.policy_match for r in results) > 0.5


@pytest.mark.parametrize("name", ["ips", "snips", "dr"])
def test_unbiased_estimators_agree_with_on_policy_ctr(results: list, name: str) -> None:
    errors = []
    for r in results:
        est = r.estimates[name]
        print(
            f"{r.campaign} {name}: {est.value:.5f} [{est.ci_low:.5f}, {est.ci_high:.5f}] "
            f"truth {r.truth:.5f} rel.err {est.relative_error(r.truth):.1%} "
            f"z {r.z_score(name):+.2f}"
        )
        assert abs(r.z_score(name)) < 2.0
        assert est.relative_error(r.truth) < 0.6
        errors.append(est.relative_error(r.truth))
    assert np.mean(errors) < 0.4


def test_direct_method_is_in_the_right_range(results: list) -> None:
    for r in results:
        assert r.estimates["dm"].relative_error(r.truth) < 0.6


def test_table_lists_every_campaign_and_estimator(results: list) -> None:
    table = obd.format_table(results)
    for campaign in obd.CAMPAIGNS:
        for name in ("ips", "snips", "dm", "dr"):
            assert f"| {campaign} | {name} |" in table
