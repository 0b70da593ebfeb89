"""Fixtures: a project with the catalog's 22 features, served by a live ``tailorkit serve``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tailorkit.project.init import write_project
from tests.conftest import LiveServer, start_server
from tests.features.catalog import DOCUMENT

# The growthbook SDK logs every gate-only prerequisite rule it skips, per evaluation
logging.getLogger("growthbook").setLevel(logging.ERROR)


def write_features_project(directory: Path, *, encryption_key: str = "") -> Path:
    """A fresh project whose features.yaml is the catalog (optionally an encrypted payload)."""
    root = write_project(directory)
    (root / "features.yaml").write_text(yaml.safe_dump(DOCUMENT, sort_keys=False))
    if encryption_key:
        settings = root / "tailorkit.yaml"
        text = settings.read_text().replace(
            "  encryption_key_env: TAILORKIT_SDK_ENCRYPTION_KEY\n",
            f"  encryption_key: {encryption_key}\n",
        )
        settings.write_text(text)
    return root


@pytest.fixture(scope="session")
def features_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live server for the catalog project, shared by the real-client tests."""
    base = tmp_path_factory.mktemp("features")
    server = start_server(write_features_project(base / "shop"), base / "server.log")
    yield server
    server.stop()
