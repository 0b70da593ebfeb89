"""Pool the query's groups into per-variation sufficient statistics.

The query returns one row per variation × segment mask × exposure day ×
flags. Sums are additive, so the overall result, each segment (rows whose
mask has the segment's bit) and the cumulative results by day are all
``np.bincount`` over those rows — no further SQL.

>>> import pyarrow as pa
>>> from datetime import date, timedelta
>>> t = pa.table({"variation": [0, 1, 1], "multi": [False, False, True],
...     "flagged": [False] * 3, "mask": [1, 0, 1], "day": [date(2026, 3, 2)] * 3,
...     "n": [10, 12, 1], "vkey": ["a", "b", "b"], "x0": [3.0, 5.0, 1.0], "xx0": [3.0, 5.0, 1.0]})
>>> g = Groups.from_arrow(t, 2)
>>> g.pooled("x0").tolist(), g.pooled("n", segment=0).tolist(), g.n_multi
([3.0, 5.0], [10.0, 0.0], 1)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt
import pyarrow as pa

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Groups:
    """Column arrays of the included groups (single exposure, not flagged)."""

    n_variations: int
    variation: npt.NDArray[np.int64]
    mask: npt.NDArray[np.int64]
    day: npt.NDArray[np.int64]
    days: tuple[date, ...]
    columns: dict[str, Floats]
    variation_keys: dict[int, str]
    n_multi: int
    n_flagged: int
    n_unknown_variation: int
    #: covariate levels of the included groups by query column (``cov_device``, ...)
    levels: dict[str, npt.NDArray[np.object_]] = field(default_factory=dict)

    @classmethod
    def from_arrow(cls, table: pa.Table, n_variations: int) -> Groups:
        """Split the query result into included groups and the counts of excluded users."""
        cols = {
            name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names
        }
        n = cols["n"].astype(np.float64)
        multi, flagged = cols["multi"].astype(bool), cols["flagged"].astype(bool)
        variation = cols["variation"].astype(np.int64)
        known = (variation >= 0) & (variation < n_variations)
        keep = ~multi & ~flagged & known
        all_days = [_as_date(d) for d in table.column("day").to_pylist()]
        days = tuple(sorted({d for d, k in zip(all_days, keep.tolist(), strict=True) if k}))
        day_index = {d: i for i, d in enumerate(days)}
        skip = {"variation", "multi", "flagged", "mask", "day", "vkey"}
        keys = {int(v): str(k) for v, k in zip(variation, cols["vkey"], strict=True) if k}
        return cls(
            n_variations=n_variations,
            variation=variation[keep],
            mask=cols["mask"].astype(np.int64)[keep],
            day=np.array(
                [day_index[d] for d, k in zip(all_days, keep.tolist(), strict=True) if k],
                dtype=np.int64,
            ),
            days=days,
            columns={
                k: np.asarray(v, dtype=np.float64)[keep]
                for k, v in cols.items()
                if k not in skip and not k.startswith("cov_")
            },
            variation_keys=keys,
            n_multi=int(n[multi & ~flagged].sum()),
            n_flagged=int(n[flagged].sum()),
            n_unknown_variation=int(n[~known & ~multi & ~flagged].sum()),
            levels={
                k: np.asarray(v, dtype=object)[keep]
                for k, v in cols.items()
                if k.startswith("cov_")
            },
        )

    def _rows(self, segment: int | None) -> npt.NDArray[np.bool_]:
        if segment is None:
            return np.ones(self.variation.shape, dtype=bool)
        return ((self.mask >> segment) & 1).astype(bool)

    def pooled(self, column: str, segment: int | None = None) -> Floats:
        """Sum of ``column`` per variation (in segment bit ``segment``, if given)."""
        rows = self._rows(segment)
        return np.bincount(
            self.variation[rows], weights=self.columns[column][rows], minlength=self.n_variations
        ).astype(np.float64)

    def weekdays(self) -> npt.NDArray[np.int64]:
        """Weekday (Monday 0) of each group's first-exposure day (UTC)."""
        return np.array([d.weekday() for d in self.days], dtype=np.int64)[self.day]

    def cumulative(self, column: str) -> Floats:
        """``(variations, days)`` running sums of ``column`` by first-exposure day."""
        flat = self.variation * len(self.days) + self.day
        total = np.bincount(
            flat, weights=self.columns[column], minlength=self.n_variations * len(self.days)
        )
        return np.cumsum(total.reshape(self.n_variations, len(self.days)), axis=1)


def _as_date(day: date | int) -> date:
    """The query's day number (days since 1970-01-01, UTC) as a date."""
    return day if isinstance(day, date) else date(1970, 1, 1) + timedelta(days=day)
