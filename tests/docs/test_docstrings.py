"""Every docstring example of the toolkit runs as a doctest, imported by package name.

The modules are found by walking the installed packages ``pathstats``,
``pathstats.cli``, ``pathstats.nets``, ``pathstats.verify`` and ``pathstats.robust``, so a module is
imported exactly once, under the name users import it by.
"""

import doctest
import importlib
import pkgutil

import pytest

import pathstats

PACKAGES = ["pathstats", "pathstats.cli", "pathstats.dag", "pathstats.layer_engine", "pathstats.nets", "pathstats.verify", "pathstats.robust", "pathstats.robust.experiments"]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> list[str]:
    names = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)
        for info in pkgutil.iter_modules(package.__path__, package_name + "."):
            if not info.ispkg and info.name != "pathstats.__main__":
                names.append(info.name)
    return sorted(set(names))


MODULES = _module_names()


def test_every_package_is_found():
    assert {"pathstats.nets.conv6", "pathstats.verify.montecarlo", "pathstats.dag"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"
