"""Versioned model artifacts in the project folder; serving never sees a half-written model.

Layout::

    models/<name>/<version>/        the model's files + metrics.json
    models/<name>/CURRENT           the served version (replaced atomically)
    models/<name>/last_failure.json the latest failed run, if any

A training run writes into a hidden staging folder (:meth:`ArtifactStore.run`).
Only when it completes is the folder renamed to its version and ``CURRENT``
replaced (write-then-``os.replace``), so a run that fails — an exception, a
crash, a killed process — leaves the previous version served. Old versions
beyond ``keep`` are pruned; the served one never is.

Artifacts are plain files (JSON, ``.npz`` without pickles, LightGBM text):
nothing in the project folder can run code when it is loaded.

>>> import tempfile
>>> store = ArtifactStore(Path(tempfile.mkdtemp()))
>>> with store.run("demo") as run:
...     _ = (run.path / "weights.json").write_text("[1, 2]")
...     run.metrics = {"auc": 0.8}
>>> store.current("demo") == run.version, store.metrics("demo")["auc"]
(True, 0.8)
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MODELS_DIR = "models"
CURRENT = "CURRENT"
METRICS = "metrics.json"
FAILURE = "last_failure.json"


@dataclass
class Run:
    """One training run: write files into ``path``, set ``metrics``."""

    name: str
    version: str
    path: Path
    metrics: dict[str, Any] = field(default_factory=dict)


class ArtifactStore:
    """``models/`` of a project (or any folder)."""

    def __init__(self, root: Path, keep: int = 5) -> None:
        self.root = Path(root)
        self.keep = keep

    @classmethod
    def of_project(cls, project_root: Path) -> ArtifactStore:
        """The store inside a project folder (``<project>/models``)."""
        return cls(Path(project_root) / MODELS_DIR)

    def folder(self, name: str) -> Path:
        """Folder of one model's versions."""
        return self.root / name

    def _new_version(self, name: str) -> str:
        """A UTC timestamp to the microsecond, later than every version so far.

        Fixed width, so that string order is time order; never reused, even
        after the earlier version was pruned.
        """
        folder = self.folder(name)
        names = (
            [p.name.removeprefix(".staging-") for p in folder.iterdir()] if folder.is_dir() else []
        )
        # only version folders count (not CURRENT or last_failure.json)
        latest = max((n for n in names if n[:1].isdigit()), default="")
        moment = datetime.now(UTC)
        while (version := moment.strftime("%Y%m%dT%H%M%S%fZ")) <= latest:
            moment += timedelta(microseconds=1)
        return version

    @contextmanager
    def run(self, name: str) -> Iterator[Run]:
        """Stage a new version; publish it only if the block completes."""
        version = self._new_version(name)
        staging = self.folder(name) / f".staging-{version}"
        staging.mkdir(parents=True)
        run = Run(name, version, staging)
        started = time.perf_counter()
        try:
            yield run
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            self._record_failure(name, version, exc)
            raise
        run.metrics.setdefault("version", version)
        run.metrics.setdefault("trained_at", datetime.now(UTC).isoformat())
        run.metrics.setdefault("seconds", round(time.perf_counter() - started, 3))
        (staging / METRICS).write_text(json.dumps(run.metrics, indent=2, default=_json))
        final = self.folder(name) / version
        staging.rename(final)
        run.path = final
        self._point(name, version)
        self.prune(name)

    def _point(self, name: str, version: str) -> None:
        pointer = self.folder(name) / CURRENT
        tmp = pointer.with_suffix(".tmp")
        tmp.write_text(version + "\n")
        os.replace(tmp, pointer)  # atomic: readers see the old or the new version

    def _record_failure(self, name: str, version: str, exc: BaseException) -> None:
        doc = {
            "version": version,
            "failed_at": datetime.now(UTC).isoformat(),
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exception(exc)[-5:],
            "serving": self.current(name),
        }
        (self.folder(name) / FAILURE).write_text(json.dumps(doc, indent=2))

    def current(self, name: str) -> str | None:
        """The served version, or None before the first successful run."""
        pointer = self.folder(name) / CURRENT
        try:
            version = pointer.read_text().strip()
        except FileNotFoundError:
            return None
        return version if (self.folder(name) / version).is_dir() else None

    def path(self, name: str, version: str | None = None) -> Path:
        """Folder of ``version`` (default: the served one); KeyError when there is none."""
        version = version or self.current(name)
        if version is None:
            raise KeyError(f"no trained {name!r} model in {self.root}")
        return self.folder(name) / version

    def metrics(self, name: str, version: str | None = None) -> dict[str, Any]:
        """``metrics.json`` of a version (default: the served one)."""
        loaded: dict[str, Any] = json.loads((self.path(name, version) / METRICS).read_text())
        return loaded

    def versions(self, name: str) -> list[str]:
        """Published versions, oldest first."""
        folder = self.folder(name)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def last_failure(self, name: str) -> dict[str, Any] | None:
        """The latest failed run of ``name``, if it failed after its last success."""
        path = self.folder(name) / FAILURE
        if not path.exists():
            return None
        doc: dict[str, Any] = json.loads(path.read_text())
        current = self.current(name)
        return doc if current is None or doc["version"] > current else None

    def prune(self, name: str) -> list[str]:
        """Delete versions beyond ``keep`` (oldest first), never the served one."""
        versions = self.versions(name)
        excess = len(versions) - self.keep
        if excess <= 0:
            return []
        served = self.current(name)
        removed = [v for v in versions if v != served][:excess]
        for version in removed:
            shutil.rmtree(self.folder(name) / version, ignore_errors=True)
        return removed


def _json(value: Any) -> Any:
    """JSON fallback for numpy scalars and datetimes in metrics."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
