"""Public data sets for checking the learners on real behaviour (fetched, never committed).

Neither file may be redistributed with tailorkit, so they are read straight
from the PyPI wheels that ship them, downloaded with ``pip download --no-deps``
into a cache outside the repository (``~/.cache/tailorkit-data``, or
``TAILORKIT_DATA_CACHE``):

* MovieLens-100k (100,000 ratings, 943 users, 1,682 movies) from ``recbole==1.2.1``
  (``recbole/dataset_example/ml-100k/ml-100k.{inter,item}``);
* CDNOW (69,659 purchases of 23,570 customers, January 1997 - June 1998) from
  ``Lifetimes==0.11.3`` (``lifetimes/datasets/CDNOW_master.txt``).

:class:`DatasetUnavailable` says why a data set could not be had (no network,
no pip) so that tests and benchmarks can skip with that message.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd

RECBOLE = ("recbole", "1.2.1")
LIFETIMES = ("Lifetimes", "0.11.3")
ML100K = "recbole/dataset_example/ml-100k/ml-100k"
CDNOW = "lifetimes/datasets/CDNOW_master.txt"


class DatasetUnavailable(RuntimeError):
    """The wheel could not be downloaded or read."""


def cache_dir() -> Path:
    """Where wheels are kept (created on demand).

    >>> cache_dir().name in ("tailorkit-data", os.environ.get("TAILORKIT_DATA_CACHE", "")[-20:])
    True
    """
    default = Path.home() / ".cache" / "tailorkit-data"
    return Path(os.environ.get("TAILORKIT_DATA_CACHE", default))


def fetch_wheel(name: str, version: str, timeout: float = 120.0) -> Path:
    """The cached wheel of ``name==version``, downloaded with pip when missing."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"{name.lower()}-{version}-"
    for wheel in folder.glob("*.whl"):
        if wheel.name.lower().startswith(prefix):
            return wheel
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", f"{name}=={version}", "-d", str(folder)]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatasetUnavailable(f"pip download {name}=={version} failed: {exc}") from exc
    for wheel in folder.glob("*.whl"):
        if wheel.name.lower().startswith(prefix):
            return wheel
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    raise DatasetUnavailable(f"pip download {name}=={version} (registry unreachable?): {tail[0]}")


def _read(wheel: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(member)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DatasetUnavailable(f"{wheel.name}: cannot read {member}: {exc}") from exc


def movielens_100k() -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(ratings, movies)``: ``user_id, item_id, rating, timestamp`` and
    ``item_id, title, year, genres``."""
    wheel = fetch_wheel(*RECBOLE)
    ratings = pd.read_csv(io.BytesIO(_read(wheel, f"{ML100K}.inter")), sep="\t")
    ratings.columns = ["user_id", "item_id", "rating", "timestamp"]
    movies = pd.read_csv(io.BytesIO(_read(wheel, f"{ML100K}.item")), sep="\t", dtype=str)
    movies.columns = ["item_id", "title", "year", "genres"]
    for frame in (ratings, movies):
        frame["item_id"] = frame["item_id"].astype(str)
    ratings["user_id"] = ratings["user_id"].astype(str)
    return ratings, movies.fillna("")


def cdnow() -> pd.DataFrame:
    """``customer_id, date, cds, amount``, one row per purchase."""
    wheel = fetch_wheel(*LIFETIMES)
    text = _read(wheel, CDNOW).decode()
    frame = pd.read_csv(io.StringIO(text), sep=r"\s+", header=0, dtype=str,
                        names=["customer_id", "date", "cds", "amount"])  # fmt: skip
    return pd.DataFrame(
        {
            "customer_id": frame.customer_id,
            "date": pd.to_datetime(frame.date, format="%Y%m%d", utc=True),
            "cds": frame.cds.astype(int),
            "amount": frame.amount.astype(float),
        }
    )
