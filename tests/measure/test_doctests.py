"""Run the docstring examples of every stats module (they are part of the docs)."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
from pathlib import Path

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


def test_statistics_docs_examples() -> None:
    """The examples in docs/statistics.md (e.g. the 150-vs-1,100 note) run as shown."""
    path = Path(__file__).resolve().parents[2] / "docs" / "statistics.md"
    result = doctest.testfile(
        str(path), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0 and result.failed == 0
