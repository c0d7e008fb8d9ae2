"""The package layout: the engines' packages, and the old module names that still import."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import pathstats


@pytest.mark.parametrize("old", sorted(pathstats.MOVED))
def test_an_old_module_name_is_the_new_module(old):
    new = importlib.import_module(f"pathstats.{pathstats.MOVED[old]}")
    alias = importlib.import_module(f"pathstats.{old}")
    assert alias is new  # the same object: a patch through either name reaches both
    assert new.__spec__.name == new.__name__ == f"pathstats.{pathstats.MOVED[old]}"  # not stamped by the alias
    assert sys.modules[f"pathstats.{old}"] is new


def test_old_names_work_in_every_import_form():
    code = ("from pathstats.moments import wedge_moment\n"
            "from pathstats import layers\n"
            "import pathstats.trace as trace\n"
            "from pathstats.layer_engine import propagate_laws\n"
            "from pathstats.dag import path_sums\n"
            "assert wedge_moment.__module__ == 'pathstats.layer_engine.moments'\n"
            "assert layers.MODULE_RULES and trace.read_model and propagate_laws and path_sums\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_unknown_module_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("pathstats.no_such_module")


def test_the_dag_engine_does_not_import_torch():
    code = ("import sys, pathstats.dag, pathstats.dag.symmetry, pathstats.dag.analysis, pathstats.dag.enumeration, "
            "pathstats.dag.graphio, pathstats.dag.generators\n"
            "assert 'torch' not in sys.modules, 'the generic engine loaded torch'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_engines_packages_keep_every_name_their_modules_had():
    import pathstats.dag
    import pathstats.layer_engine

    assert pathstats.dag.check_acyclic is pathstats.dag.paths.check_acyclic  # public, though not in __all__
    assert pathstats.layer_engine.FINGERPRINT_PRIMES is pathstats.layer_engine.recursion.FINGERPRINT_PRIMES
    with pytest.raises(AttributeError):
        pathstats.dag.no_such_name


def test_reloading_the_package_adds_no_second_finder():
    finders = [f for f in sys.meta_path if type(f).__name__ == "_MovedModules"]
    importlib.reload(pathstats)
    assert len([f for f in sys.meta_path if type(f).__name__ == "_MovedModules"]) == len(finders) == 1
