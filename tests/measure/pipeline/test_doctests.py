"""The docstring examples of the analysis modules run (they are part of the docs)."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import tailorkit.measure.analysis as analysis_pkg

MODULES = [
    analysis_pkg.__name__,
    *(f"{analysis_pkg.__name__}.{m.name}" for m in pkgutil.iter_modules(analysis_pkg.__path__)),
    "tailorkit.cli.experiments",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_public_functions_have_examples() -> None:
    missing = []
    for name in MODULES:
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            defined_here = inspect.isfunction(obj) and obj.__module__ == name
            if defined_here and not attr.startswith("_") and ">>>" not in (obj.__doc__ or ""):
                missing.append(f"{name}.{attr}")
    assert missing == []
