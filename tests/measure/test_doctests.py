"""Run the docstring examples of every stats module (they are part of the docs)."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import tailorkit.measure.stats as stats_pkg

SUBMODULES = sorted(m.name for m in pkgutil.iter_modules(stats_pkg.__path__))
MODULES = [*(f"{stats_pkg.__name__}.{m}" for m in SUBMODULES), stats_pkg.__name__]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_public_functions_have_examples() -> None:
    """Every public function of every stats module shows a runnable example."""
    missing = []
    for name in MODULES:
        if name.rsplit(".", 1)[-1].startswith("_"):
            continue  # private helpers
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            defined_here = inspect.isfunction(obj) and obj.__module__ == name
            if defined_here and not attr.startswith("_") and ">>>" not in (obj.__doc__ or ""):
                missing.append(f"{name}.{attr}")
    assert missing == []
