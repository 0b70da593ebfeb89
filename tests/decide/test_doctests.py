"""Run the docstring examples of the decide, client and decide-route modules."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "tailorkit.decide.bandit_runtime",
    "tailorkit.decide.content",
    "tailorkit.decide.engine",
    "tailorkit.decide.log",
    "tailorkit.decide.memory",
    "tailorkit.decide.placements",
    "tailorkit.decide.service",
    "tailorkit.client",
    "tailorkit.client.http",
    "tailorkit.server.routes_decide",
    "tailorkit.server.ratelimit",
    "tailorkit.store.redis_fallback",
    "tailorkit.project.loader",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
