"""The outlier flags' robust z-score is the textbook one, on both backends.

The medians come from a histogram of the person-day counts
(:func:`histogram_median`); they are checked against Python's
``statistics.median``, and the flagged persons against the rule computed in
Python: ``z = (n - median) / max(1.4826 * MAD, 1) > threshold``.
"""

from __future__ import annotations

import random
import statistics
from datetime import date

import ibis
import pyarrow as pa
import pytest

from tailorkit.collect.quality import MAD_TO_SIGMA, flags_of, histogram_median
from tailorkit.project.loader import QualitySettings
from tailorkit.store.warehouse import Warehouse


@pytest.mark.parametrize("seed", range(6))
def test_histogram_median_is_the_median(warehouse: Warehouse, seed: int) -> None:
    rng = random.Random(seed)
    values = [float(rng.choice([1, 2, 2, 3, 5, 8, 40])) for _ in range(rng.randint(1, 30))]
    counts = {v: values.count(v) for v in values}
    hist = ibis.memtable(pa.table({"x": list(counts), "k": list(counts.values())}))
    got = warehouse.con.to_pyarrow(histogram_median(hist)).to_pylist()
    assert got == [{"median": statistics.median(values)}]


def test_outliers_follow_the_robust_z_score(warehouse: Warehouse) -> None:
    rng = random.Random(5)
    rows = []
    for p in range(300):
        for d in range(rng.randint(1, 4)):
            busy = rng.random() < 0.02
            n = rng.randint(40, 400) if busy else rng.randint(1, 12)
            rows.append({"person_id": f"p{p}", "day": date(2024, 5, 1 + d), "n": n})
    daily = ibis.memtable(pa.Table.from_pylist(rows))
    bots = ibis.memtable(pa.table({"person_id": pa.array(["p7"], pa.string())}))
    quality = QualitySettings(robust_z_threshold=6.0)
    got = warehouse.con.to_pyarrow(flags_of(bots, daily, quality)).to_pylist()

    counts = [r["n"] for r in rows]
    med = statistics.median(counts)
    mad = statistics.median([abs(n - med) for n in counts])
    scale = max(mad * MAD_TO_SIGMA, 1.0)
    outliers = {r["person_id"] for r in rows if (r["n"] - med) / scale > 6.0}
    expected = {("p7", "bot_user_agent")} | {(p, "extreme_event_rate") for p in outliers}
    assert outliers  # the rule flags someone, so the comparison means something
    assert {(r["person_id"], r["reason"]) for r in got} == expected
