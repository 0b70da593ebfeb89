"""The docstring examples of the learning modules run as shown (they are part of the docs)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tailorkit.learn as learn_pkg

MODULES = [
    *(f"tailorkit.learn.{m.name}" for m in pkgutil.iter_modules(learn_pkg.__path__)),
    "tailorkit.segment.clusters",
    "tailorkit.segment.journeys",
]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
