"""A small worked example for docstrings: an experiment and its query result.

:func:`example_spec` is a two-variation experiment with a conversion metric
(primary), a CUPED-adjusted revenue metric and one segment;
:func:`example_table` is what :func:`~tailorkit.measure.analysis.query.sufficient_stats`
would return for it: 2,000 users per variation over two days, 10% vs 13%
conversion, revenue with a correlated pre-period, a handful of excluded users.

>>> example_table().num_rows
10
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow as pa

from tailorkit.measure.analysis.spec import ExperimentSpec, parse_experiment

AS_OF = datetime(2026, 3, 3, tzinfo=UTC)
FEATURES = {
    "experiments": {
        "checkout": {
            "name": "New checkout",
            "variations": ["control", "new checkout"],
            "segments": ["mobile"],
            "metrics": {
                "purchase": {"type": "binomial", "event": "purchase", "window_hours": 72},
                "revenue": {"type": "mean", "event": "purchase", "value": "revenue",
                            "cuped": True},
            },
        }
    }
}  # fmt: skip


def example_spec() -> ExperimentSpec:
    """The example experiment.

    >>> [m.key for m in example_spec().metrics]
    ['purchase', 'revenue']
    """
    return parse_experiment(FEATURES, "checkout", {"mobile"})


def _group(v: int, mask: int, day: int, n: int, conv: int, rev: float) -> dict[str, object]:
    """One row: ``n`` users converting ``conv`` times, revenue ``rev`` per converter."""
    pre = rev * 0.8  # pre-period revenue of the same users: correlated, as CUPED needs
    return {
        "variation": v, "multi": False, "flagged": False, "mask": mask,
        "day": date(2026, 3, 1 + day), "n": n, "vkey": str(v),
        "x0": float(conv), "xx0": float(conv),
        "x1": conv * rev, "xx1": conv * rev * rev * 1.5,
        "y1": conv * pre + 0.1 * n, "yy1": conv * pre * pre * 1.5 + 0.1 * n,
        "xy1": conv * rev * pre * 1.2,
    }  # fmt: skip


def example_table() -> pa.Table:
    """Sufficient statistics of the example (two days, half of the users on mobile).

    >>> t = example_table()
    >>> sum(t.column("n").to_pylist()), t.column("x0").to_pylist()[:4]
    (4010, [50.0, 50.0, 50.0, 50.0])
    """
    rows = [
        _group(v, mask, day, 500, conv, 40.0)
        for v, rates in ((0, (50, 50)), (1, (70, 60)))
        for day in (0, 1)
        for mask, conv in zip((0, 1), rates, strict=True)
    ]
    excluded = {**_group(0, 0, 0, 7, 1, 40.0), "multi": True}
    flagged = {**_group(1, 0, 1, 3, 0, 40.0), "flagged": True}
    return pa.Table.from_pylist([*rows, excluded, flagged])
