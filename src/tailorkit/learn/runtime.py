"""How many threads training may use, in one place.

These machines are small and shared, and OpenMP/BLAS pools oversubscribe
badly when another process is busy (k-means on 1,400 rows took seconds
instead of milliseconds with two busy-waiting OpenMP threads). Every
learner runs inside :func:`limited_threads` and passes :func:`ml_threads`
to libraries with their own pools (LightGBM ``n_jobs``, implicit
``num_threads``). ``TAILORKIT_ML_THREADS`` raises the limit.

>>> with limited_threads(1):
...     ml_threads() >= 1
True
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from threadpoolctl import threadpool_limits

P = ParamSpec("P")
R = TypeVar("R")


def ml_threads() -> int:
    """Threads for training (``TAILORKIT_ML_THREADS``, default 1)."""
    try:
        return max(1, int(os.environ.get("TAILORKIT_ML_THREADS", "1")))
    except ValueError:
        return 1


@contextmanager
def limited_threads(n: int | None = None) -> Iterator[None]:
    """Cap OpenMP and BLAS thread pools at ``n`` (default :func:`ml_threads`)."""
    with threadpool_limits(limits=n or ml_threads()):
        yield


def single_pool(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator: run ``fn`` inside :func:`limited_threads`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with limited_threads():
            return fn(*args, **kwargs)

    return wrapper
