"""Off-policy evaluation on real logs: the Open Bandit Dataset (ZOZOTOWN) sample.

Estimates the value (click rate) of the production Bernoulli Thompson
sampling (BTS) policy from the logs of the uniform-random policy, and compares
it with the click rate actually observed while BTS was serving (the ``bts/``
logs of the same week). The BTS policy is rebuilt from ``prior_bts.yaml``
with tailorkit's own Thompson sampling code: draw theta ~ Beta(alpha, beta)
per item, rank the items, and the top three fill slots 1, 2, 3; the
probability of each (item, slot) pair is estimated with ``N_DRAWS`` draws.

Run: ``.venv/bin/python benchmarks/ope_open_bandit.py`` (prints a table, then
one JSON line). Data: ``$TAILORKIT_OBD_PATH`` or ``../shared/data/open-bandit-dataset``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import sparse, special

from tailorkit.decide.bandits import ThompsonSampling, rank_probabilities
from tailorkit.measure.ope import ESTIMATORS, OPEResult, evaluate_policy

CAMPAIGNS = ("all", "men", "women")
N_SLOTS = 3
N_DRAWS = 100_000  # as obp's default n_sim; Monte Carlo s.e. of a probability <= 0.0016
DEFAULT_PATH = Path(__file__).resolve().parents[1] / ".." / "shared/data/open-bandit-dataset"


def data_path() -> Path:
    """Folder of the dataset sample (``TAILORKIT_OBD_PATH`` overrides the default)."""
    if "TAILORKIT_OBD_PATH" in os.environ:
        return Path(os.environ["TAILORKIT_OBD_PATH"]).resolve()
    for root in (DEFAULT_PATH, Path("/work/shared/data/open-bandit-dataset")):
        if root.is_dir():  # a CI clone may not sit beside shared/
            return root.resolve()
    return DEFAULT_PATH.resolve()


def load_logs(root: Path, policy: str, campaign: str) -> pd.DataFrame:
    """One log file, sorted by time as obp does."""
    frame = pd.read_csv(root / policy / campaign / f"{campaign}.csv", index_col=0)
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def bts_policy(root: Path, campaign: str) -> ThompsonSampling:
    """The production BTS policy at the start of the week, from its priors."""
    with open(root / "prior_bts.yaml") as fh:
        prior = yaml.safe_load(fh)[campaign]
    n_items = len(prior["alpha"])
    return ThompsonSampling(n_items, prior_alpha=prior["alpha"], prior_beta=prior["beta"])


def slot_distribution(policy: ThompsonSampling, n_draws: int = N_DRAWS) -> np.ndarray:
    """``(n_items, 3)`` probability that the policy shows each item in each slot."""
    alpha, beta = policy.posterior()
    return rank_probabilities(alpha, beta, n_slots=N_SLOTS, n_draws=n_draws, seed=0)


def context_features(logs: pd.DataFrame) -> np.ndarray:
    """Reward-model context: one-hot user features and slot, then item affinities.

    The affinity block (one column per item) comes last so that
    :func:`obd_design` can pick the affinity of the item being scored.
    """
    users = pd.get_dummies(logs.filter(like="user_feature_").astype(str)).to_numpy(float)
    slots = pd.get_dummies(logs["position"].astype(str)).to_numpy(float)
    affinity = logs.filter(like="user-item_affinity_").to_numpy(float)
    return np.hstack([users, slots, affinity])


def obd_design(context: np.ndarray, action: np.ndarray, n_actions: int) -> sparse.csr_matrix:
    """Design for the reward model: user and slot one-hots, the item one-hot,
    and the user's past clicks on that very item (log1p).

    Sparse, because it is almost all one-hot columns: the Newton solver of the
    logistic model is ~5x faster on it.
    """
    rows = np.arange(len(action))
    base = context[:, :-n_actions]
    affinity = context[:, -n_actions:][rows, action]
    items = sparse.csr_matrix((np.ones(len(action)), (rows, action)), (len(action), n_actions))
    extra = sparse.csr_matrix(np.log1p(affinity)[:, None])
    return sparse.hstack([sparse.csr_matrix(base), items, extra], format="csr")


@dataclass(frozen=True)
class CampaignResult:
    """Estimates of the BTS click rate for one campaign, with the ground truth."""

    campaign: str
    truth: float
    truth_se: float
    random_ctr: float
    estimates: dict[str, OPEResult]
    policy_match: float  # corr(rebuilt BTS (item, slot) probs, logged BTS propensities)

    def z_score(self, name: str) -> float:
        """(estimate - truth) / combined standard error of both."""
        est = self.estimates[name]
        return (est.value - self.truth) / float(np.hypot(est.std_error, self.truth_se))


def evaluate_campaign(root: Path, campaign: str, n_draws: int = N_DRAWS) -> CampaignResult:
    """Estimate BTS's value from the random logs of ``campaign``."""
    random_logs = load_logs(root, "random", campaign)
    bts_logs = load_logs(root, "bts", campaign)
    dist = slot_distribution(bts_policy(root, campaign), n_draws)
    action = random_logs["item_id"].to_numpy()
    slot = random_logs["position"].to_numpy() - 1
    target = dist[:, slot].T  # row i: P(item | slot of row i) under BTS
    target = target / target.sum(axis=1, keepdims=True)
    estimates = evaluate_policy(
        context_features(random_logs),
        action,
        random_logs["click"].to_numpy(float),
        random_logs["propensity_score"].to_numpy(float),
        target,
        design=obd_design,
        random_state=0,
    )
    clicks = bts_logs["click"].to_numpy(float)
    rebuilt = dist[bts_logs["item_id"].to_numpy(), bts_logs["position"].to_numpy() - 1]
    return CampaignResult(
        campaign=campaign,
        truth=float(clicks.mean()),
        truth_se=float(clicks.std(ddof=1) / np.sqrt(len(clicks))),
        random_ctr=float(random_logs["click"].mean()),
        estimates=estimates,
        policy_match=float(np.corrcoef(rebuilt, bts_logs["propensity_score"])[0, 1]),
    )


def format_table(results: list[CampaignResult]) -> str:
    """Markdown table: estimate, 95% interval and relative error per estimator."""
    z = float(special.ndtri(0.975))
    lines = [
        "| campaign | estimator | estimate | 95% interval | truth (BTS CTR) | rel. error | z |",
        "|---|---|---|---|---|---|---|",
    ]
    for res in results:
        t_lo, t_hi = res.truth - z * res.truth_se, res.truth + z * res.truth_se
        truth = f"{res.truth:.5f} [{t_lo:.5f}, {t_hi:.5f}]"
        for name, est in res.estimates.items():
            lines.append(
                f"| {res.campaign} | {name} | {est.value:.5f} | "
                f"[{est.ci_low:.5f}, {est.ci_high:.5f}] | {truth} | "
                f"{est.relative_error(res.truth):.1%} | {res.z_score(name):+.2f} |"
            )
    lines.append("")
    lines.append("| estimator | mean relative error over campaigns |")
    lines.append("|---|---|")
    for name in ESTIMATORS:
        errors = [r.estimates[name].relative_error(r.truth) for r in results]
        lines.append(f"| {name} | {np.mean(errors):.1%} |")
    lines.append("")
    for res in results:
        lines.append(
            f"{res.campaign}: random-policy CTR {res.random_ctr:.5f}; correlation of the "
            f"rebuilt BTS (item, slot) probabilities with the logged BTS propensities "
            f"{res.policy_match:.2f}"
        )
    return "\n".join(lines)


def main() -> int:
    root = data_path()
    if not (root / "prior_bts.yaml").exists():
        print(f"Open Bandit Dataset not found at {root}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    results = [evaluate_campaign(root, c) for c in CAMPAIGNS]
    print(format_table(results))
    mean_error = {
        name: float(np.mean([r.estimates[name].relative_error(r.truth) for r in results]))
        for name in ESTIMATORS
    }
    print(
        json.dumps(
            {
                "bench": "ope_open_bandit",
                "metric": "mean_relative_error_dr",
                "value": round(mean_error["dr"], 4),
                "baseline": round(mean_error["ips"], 4),
                "ratio": round(mean_error["dr"] / mean_error["ips"], 4),
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
