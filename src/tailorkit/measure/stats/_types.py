"""Shared numeric types.

Every engine function broadcasts: it accepts plain floats for a single
comparison or numpy arrays for many at once (the simulation suite analyses
10,000 simulated experiments in one call). Results come back as ``float`` when
the inputs were scalars and as arrays otherwise.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Real = float | FloatArray
"""A scalar or an array of values that broadcast together."""

Alternative = Literal["two-sided", "greater", "less"]
"""``greater``: the treatment is higher than the control (H1: diff > 0)."""


def as_array(x: npt.ArrayLike) -> FloatArray:
    """Return ``x`` as a float64 array (0-d for scalars)."""
    return np.asarray(x, dtype=np.float64)


def unwrap(x: npt.ArrayLike) -> Real:
    """Return a plain ``float`` for 0-d input, the float64 array otherwise."""
    arr = as_array(x)
    return float(arr) if arr.ndim == 0 else arr


def check_alpha(alpha: float) -> None:
    """Reject significance levels outside (0, 1) early, with a clear message."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
