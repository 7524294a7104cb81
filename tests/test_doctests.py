"""The examples in docstrings run: every `>>>` in the packages that import without the `train` extra."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("bot.core", "bot.store", "bot.sources", "bot.slack")
MODULES = sorted(
    {
        name
        for package in PACKAGES
        for name in [
            package,
            *(
                info.name
                for info in pkgutil.walk_packages(importlib.import_module(package).__path__, prefix=f"{package}.")
            ),
        ]
    }
    | {"bot.settings", "bot.cli"}
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (see output above)"


def test_there_are_examples_to_run():
    attempted = sum(doctest.testmod(importlib.import_module(name), verbose=False).attempted for name in MODULES)
    assert attempted >= 8
