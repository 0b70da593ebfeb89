"""The docstring examples of the profile and segment modules run (they are part of the docs)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "tailorkit.profile",
    "tailorkit.profile.windows",
    "tailorkit.profile.sqlconditions",
    "tailorkit.profile.definitions",
    "tailorkit.profile.online",
    "tailorkit.profile.batch",
    "tailorkit.profile.materialized",
    "tailorkit.store.profiles",
    "tailorkit.segment.definitions",
    "tailorkit.segment.triggers",
    "tailorkit.segment.explain",
    "tailorkit.segment.online",
    "tailorkit.segment.batch",
    "tailorkit.segment.webhooks",
    "tailorkit.cli.segments",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
    assert result.attempted > 0 or name == "tailorkit.profile"
