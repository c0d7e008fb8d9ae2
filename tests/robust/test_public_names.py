"""Public names: ``pathstats.robust`` exports what the README documents, and the README's
lists (architectures, training methods, experiments) are the registries' own."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys

import pytest

import pathstats.robust as robust

README = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "README.md")


def _readme() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def _documented_robust_imports() -> list:
    """``(module, name)`` of every ``from pathstats.robust.<module> import a, b`` in the README."""
    found = []
    for module, names in re.findall(r"^from pathstats\.robust\.(\w+) import ([\w, ]+)$", _readme(), flags=re.M):
        found += [(module, name.strip()) for name in names.split(",")]
    return found


def test_the_readme_imports_from_robust_submodules():
    assert {"pgd", "fgm", "deepfool", "operator_norm", "grad_norms", "vulnerability", "load_dataset"} <= {
        name for _, name in _documented_robust_imports()}


@pytest.mark.parametrize("module, name", sorted(set(_documented_robust_imports())))
def test_every_documented_robust_function_is_exported_by_the_package(module, name):
    value = getattr(importlib.import_module(f"pathstats.robust.{module}"), name)
    assert name in robust.__all__
    exported = getattr(robust, name)
    assert exported is value or getattr(exported, "_function", None) is value  # train, vulnerability: callable modules


def test_from_pathstats_robust_import_works_for_every_public_name():
    for name in robust.__all__:
        assert getattr(robust, name) is not None, name
    namespace: dict = {}
    exec("from pathstats.robust import pgd, fgm, deepfool, operator_norm, grad_norms, vulnerability, load_dataset, "
         "train, TrainConfig", namespace)
    assert namespace["pgd"].__module__ == "pathstats.robust.attacks"
    assert callable(namespace["train"]) and namespace["train"].TrainConfig is namespace["TrainConfig"]


def test_train_and_vulnerability_are_their_modules_and_call_their_functions(monkeypatch):
    import pathstats.robust.train as train_module

    assert sys.modules["pathstats.robust.train"] is train_module is robust.train
    calls = []
    monkeypatch.setattr(train_module, "_function", lambda *args, **kwargs: calls.append((args, kwargs)) or "ran")
    assert robust.train("config", "out", progress=False) == "ran" and calls == [(("config", "out"), {"progress": False})]
    assert robust.vulnerability._function is sys.modules["pathstats.robust.vulnerability"].vulnerability


def test_importing_pathstats_robust_loads_no_torch():
    """The command line imports the package to build its parser: the exports are lazy."""
    code = "import sys, pathstats.robust; assert 'torch' not in sys.modules; print(len(pathstats.robust.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(robust.__all__)


# ------------------------------------------------------------- the README's lists
def _comment_list(pattern: str) -> list:
    match = re.search(pattern, _readme(), flags=re.M)
    assert match, pattern
    return re.split(r"[,\s|]+", match.group(1).strip())


def test_the_readme_lists_every_architecture():
    from pathstats.nets.registry import ARCHITECTURES

    assert _comment_list(r"^\$ pathstats archs\s+# (.+)$") == list(ARCHITECTURES)


def test_the_readme_lists_every_training_method():
    from pathstats.robust.methods import METHODS

    assert _comment_list(r"`--method ([\w|-]+)`") == list(METHODS)


def test_the_readme_lists_every_experiment():
    from pathstats.robust.experiments import EXPERIMENTS

    assert _comment_list(r"^pathstats experiment list\s+# (.+)$") == list(EXPERIMENTS)
