"""Run the docstring examples of the bandit modules, shared state, OPE and the CLI."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tailorkit.decide.bandits as bandits_pkg

MODULES = [
    bandits_pkg.__name__,
    *(f"{bandits_pkg.__name__}.{m.name}" for m in pkgutil.iter_modules(bandits_pkg.__path__)),
    "tailorkit.measure.ope",
    "tailorkit.measure.ope_logs",
    "tailorkit.measure.bandit_report",
    "tailorkit.decide.bandit_state",
    "tailorkit.cli.ope",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
