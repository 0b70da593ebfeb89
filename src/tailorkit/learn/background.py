"""``tailorkit build`` in a background thread, with a marker pages can show ("training…").

The demo starts its server first and trains the models beside it: the
server swaps each model in when its version is published (recommendations
serve the placement's static list until then). While the thread runs,
``models/TRAINING.json`` names the steps and when they started; the
dashboard reads it with :func:`training_status`. A marker left by a process
that died is ignored.

>>> import tempfile
>>> training_status(Path(tempfile.mkdtemp())) is None
True
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tailorkit.learn.artifacts import MODELS_DIR
from tailorkit.project import Project

if TYPE_CHECKING:
    from tailorkit.learn.build import BuildOptions

log = logging.getLogger(__name__)
MARKER = "TRAINING.json"


def _marker(project_root: Path) -> Path:
    return Path(project_root) / MODELS_DIR / MARKER


def training_status(project_root: Path) -> dict[str, Any] | None:
    """The running background build (``steps``, ``started``), or None."""
    try:
        doc: dict[str, Any] = json.loads(_marker(project_root).read_text())
        os.kill(int(doc["pid"]), 0)  # a marker of a dead process means nothing
    except (FileNotFoundError, ValueError, KeyError, TypeError, ProcessLookupError):
        return None
    except PermissionError:  # alive, but another user's process
        pass
    return doc


def train_in_background(
    project: Project, options: BuildOptions, wait: Callable[[], None] | None = None
) -> threading.Thread:
    """Start :func:`~tailorkit.learn.build.build` in a daemon thread; returns the thread.

    The thread first calls ``wait`` (e.g. until the server is up, so that
    training does not slow its start). The summary goes to
    ``models/last_build.json``; failed steps keep their previous version, as
    with ``tailorkit build``.
    """
    from tailorkit.learn.build import build  # late: the learning stack (readers need none of it)

    marker = _marker(project.root)
    marker.parent.mkdir(parents=True, exist_ok=True)
    doc = {"steps": list(options.only), "started": datetime.now(UTC).isoformat(),
           "pid": os.getpid()}  # fmt: skip
    marker.write_text(json.dumps(doc))

    def run() -> None:
        try:
            if wait is not None:
                wait()
            summary = build(project, options)
            (marker.parent / "last_build.json").write_text(json.dumps(summary, default=str))
            if summary["failed"]:
                log.warning("background build: failed steps %s", summary["failed"])
        except Exception:
            log.exception("background build failed")
        finally:
            marker.unlink(missing_ok=True)

    thread = threading.Thread(target=run, name="tk-background-build", daemon=True)
    thread.start()
    return thread
