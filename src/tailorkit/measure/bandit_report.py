"""The bandit report: allocation over time, posteriors, and the reward against uniform.

Pure functions of a :class:`~tailorkit.measure.ope_logs.BanditLog` (the
decisions with their attributed rewards and propensities) and the bandit's
current posteriors:

- **allocation over time** — the share of each arm among the decisions of each
  of ``bins`` equal time slices;
- **posteriors** — per segment × arm a Beta posterior: Thompson sampling's own
  (priors included); for count-based policies (UCB1, ε-greedy, uniform)
  ``Beta(1 + reward sum, 1 + n - reward sum)``, the posterior under a uniform
  prior for rewards in [0, 1]. Mean and equal-tailed credible interval.
  Linear bandits have no per-arm posterior independent of the context and are
  left out of this table;
- **reward against uniform** — the cumulative reward the bandit earned, next to
  what uniform random allocation would have earned on the same traffic,
  estimated by inverse propensity scoring from the logged propensities:
  ``ψ_i = r_i / (K p_i)`` per decision, so ``Σ ψ_i`` estimates the uniform total
  without bias, with a normal interval ``± z sqrt(m) sd(ψ)`` after ``m``
  decisions. The gain ``Σ (r_i - ψ_i)`` gets its interval the same way (the
  observed rewards and their IPS weights come from the same rows).

>>> import numpy as np
>>> from tailorkit.measure.ope_logs import BanditLog, read_decision_log
>>> log = BanditLog(("a", "b"), np.array([0, 1, 1, 1]), np.array([0.0, 1.0, 1.0, 0.0]),
...                 np.array([0.5, 0.5, 0.8, 0.8]), timestamp=np.array([0.0, 1.0, 2.0, 3.0]))
>>> report = bandit_report(log, {"": ([1.0, 3.0], [2.0, 2.0])}, bins=2)
>>> report["allocation"]["series"]["b"], report["reward"]["total"]
([0.5, 1.0], 2.0)
>>> round(report["reward"]["uniform"]["value"], 4)  # (1/(2*0.5) + 1/(2*0.8)) = 1 + 0.625
1.625
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from scipy import special

from tailorkit.decide.bandits import SegmentedPolicy, ThompsonSampling
from tailorkit.decide.bandits.base import CachedPolicy
from tailorkit.measure.ope_logs import BanditLog, read_decision_log

__all__ = ["bandit_report", "posteriors_of", "report_for"]

Posteriors = Mapping[str, tuple[Sequence[float], Sequence[float]]]


def posteriors_of(policy: Any) -> dict[str, tuple[list[float], list[float]]]:
    """Beta posteriors ``{segment: (alpha per arm, beta per arm)}`` of a live policy.

    The segment is ``""`` for a bandit without segments; linear bandits give ``{}``.

    >>> from tailorkit.decide.bandits import SegmentedPolicy, ThompsonSampling, UCB1
    >>> ts = SegmentedPolicy(ThompsonSampling(n_arms=2))
    >>> ts.update(1, 1.0, "vip")
    >>> posteriors_of(ts)
    {'vip': ([1.0, 2.0], [1.0, 1.0])}
    >>> ucb = UCB1(n_arms=2)
    >>> ucb.update_many([0, 0], [1.0, 0.0])
    >>> posteriors_of(ucb)
    {'': ([2.0, 1.0], [2.0, 1.0])}
    """
    if isinstance(policy, SegmentedPolicy):
        return {seg: posteriors_of(p)[""] for seg, p in sorted(policy.segments.items())}
    if isinstance(policy, ThompsonSampling):
        return {"": policy.posterior()}
    if isinstance(policy, CachedPolicy):
        stats = policy.statistics()
        n = [stats.get(f"{a}|n", 0.0) for a in range(policy.n_arms)]
        r = [stats.get(f"{a}|r", 0.0) for a in range(policy.n_arms)]
        return {"": ([1.0 + x for x in r], [1.0 + m - x for m, x in zip(n, r, strict=True)])}
    return {}


def _posterior_rows(
    arms: Sequence[str], posteriors: Posteriors, alpha: float
) -> list[dict[str, Any]]:
    rows = []
    for segment, (a, b) in posteriors.items():
        a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        low = special.betaincinv(a_arr, b_arr, alpha / 2.0)
        high = special.betaincinv(a_arr, b_arr, 1.0 - alpha / 2.0)
        for i, arm in enumerate(arms):
            rows.append(
                {
                    "segment": segment,
                    "arm": arm,
                    "alpha": float(a_arr[i]),
                    "beta": float(b_arr[i]),
                    "mean": float(a_arr[i] / (a_arr[i] + b_arr[i])),
                    "ci_low": float(low[i]),
                    "ci_high": float(high[i]),
                }
            )
    return rows


def _bin_edges(stamps: np.ndarray, bins: int) -> np.ndarray:
    lo, hi = float(stamps.min()), float(stamps.max())
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, bins + 1)


def _allocation(log: BanditLog, bins: int) -> dict[str, Any]:
    assert log.timestamp is not None
    edges = _bin_edges(log.timestamp, bins)
    slot = np.clip(np.searchsorted(edges, log.timestamp, side="right") - 1, 0, bins - 1)
    counts = np.zeros((bins, len(log.arms)))
    np.add.at(counts, (slot, log.action), 1.0)
    totals = counts.sum(axis=1)
    keep = totals > 0  # empty slices have no allocation to show
    shares = counts[keep] / totals[keep, None]
    return {
        "labels": [_label(edges[i]) for i in range(bins) if keep[i]],
        "decisions": [int(t) for t in totals[keep]],
        "series": {arm: shares[:, k].tolist() for k, arm in enumerate(log.arms)},
    }


def _label(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="minutes")


def _total(values: np.ndarray, z: float) -> dict[str, float]:
    """Sum of ``values`` with a normal interval ``± z sqrt(n) sd``."""
    n = len(values)
    total = float(values.sum())
    se = float(values.std(ddof=1) * math.sqrt(n)) if n > 1 else math.inf
    return {"value": total, "std_error": se, "ci_low": total - z * se, "ci_high": total + z * se}


def _cumulative(values: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Running sums and running half-widths ``z sqrt(m) sd(values[:m])``."""
    m = np.arange(1, len(values) + 1)
    sums = np.cumsum(values)
    squares = np.cumsum(values**2)
    var = np.where(m > 1, (squares - sums**2 / m) / np.maximum(m - 1, 1), np.inf)
    return sums, z * np.sqrt(np.maximum(var, 0.0) * m)


def _rewards(log: BanditLog, bins: int, z: float) -> dict[str, Any]:
    assert log.timestamp is not None
    order = np.argsort(log.timestamp, kind="stable")
    r = log.reward[order]
    psi = r / (len(log.arms) * log.propensity[order])
    bandit, _ = _cumulative(r, z)
    uniform, half = _cumulative(psi, z)
    edges = _bin_edges(log.timestamp, bins)
    # the last decision of each slice
    ends = np.searchsorted(log.timestamp[order], edges[1:], side="right") - 1
    points = sorted({int(e) for e in ends if e >= 0})
    return {
        "n": log.n,
        "total": float(r.sum()),
        "mean": float(r.mean()),
        "uniform": _total(psi, z),
        "gain": _total(r - psi, z),
        "cumulative": {
            "labels": [_label(log.timestamp[order][i]) for i in points],
            "decisions": [i + 1 for i in points],
            "bandit": [float(bandit[i]) for i in points],
            "uniform": [float(uniform[i]) for i in points],
            "uniform_low": [float(uniform[i] - half[i]) for i in points],
            "uniform_high": [float(uniform[i] + half[i]) for i in points],
        },
    }


def bandit_report(
    log: BanditLog | None,
    posteriors: Posteriors,
    *,
    arms: Sequence[str] | None = None,
    bins: int = 24,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The report of one bandit as a JSON-ready dict.

    ``log`` may be ``None`` (no decision with a closed window yet): then only
    the posteriors are reported. ``arms`` names the arms when there is no log.
    """
    if bins < 1:
        raise ValueError("bins must be >= 1")
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be in (0, 1)")
    names = tuple(log.arms) if log is not None else tuple(arms or ())
    z = float(special.ndtri(1.0 - alpha / 2.0))
    out: dict[str, Any] = {
        "arms": list(names),
        "alpha": alpha,
        "posteriors": _posterior_rows(names, posteriors, alpha),
        "allocation": None,
        "reward": None,
    }
    if log is not None and log.n > 0:
        if log.timestamp is None:
            raise ValueError("the report needs the decisions' timestamps")
        out["allocation"] = _allocation(log, bins)
        out["reward"] = _rewards(log, bins, z)
    return out


def report_for(
    warehouse: Any,
    spec: Any,
    policy: Any,
    *,
    since: datetime | None = None,
    bins: int = 24,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """The report of live bandit ``spec`` from the decision log in ``warehouse``.

    When the log cannot be used (no decision whose window closed yet, no
    reward event, arms of an older definition) the report still has the
    posteriors, and ``log_error`` says why the rest is missing.
    """
    log: BanditLog | None = None
    problem = None
    try:
        log = read_decision_log(warehouse, spec, since=since)
    except ValueError as exc:
        problem = str(exc)
    report = bandit_report(log, posteriors_of(policy), arms=spec.arms, bins=bins, alpha=alpha)
    return {"bandit": spec.key, "policy": spec.policy, **report, "log_error": problem}
