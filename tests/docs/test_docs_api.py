"""The API pages render every documented name readably: no table of callables printed as
its repr (a dict of ``<function ...>``), which autodoc does for data members by default."""

from __future__ import annotations

import glob
import importlib
import inspect
import os
import re

DOCS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs")


def _directives() -> list:
    """``(file, directive, target, options text)`` of every autodoc directive of the docs."""
    found = []
    for path in sorted(glob.glob(os.path.join(DOCS, "**", "*.rst"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for match in re.finditer(r"^\.\. (auto\w+):: (\S+)\n((?:[ \t]+:.*\n?)*)", text, flags=re.M):
            found.append((os.path.basename(path), match.group(1), match.group(2), match.group(3)))
    return found


def _holds_callables(value) -> bool:
    items = list(value.values()) if isinstance(value, dict) else list(value) if isinstance(value, (set, frozenset, list, tuple)) else []
    return any(callable(item) and not isinstance(item, type) for item in items)


def test_docs_have_autodoc_directives():
    assert any(directive == "automodule" for _, directive, _, _ in _directives())


def test_no_table_of_callables_is_rendered_as_its_repr():
    shown = []
    for page, directive, target, options in _directives():
        if directive == "automodule":
            members = re.search(r":members:(.*)", options)
            module = importlib.import_module(target)
            names = [n.strip() for n in members.group(1).split(",") if n.strip()] if members else []
            values = [(f"{target}.{name}", getattr(module, name)) for name in names]
            shown += [(page, name, value) for name, value in values
                      if not (inspect.isclass(value) or inspect.isroutine(value) or inspect.ismodule(value))]
        elif directive == "autodata" and ":no-value:" not in options:
            module, _, name = target.rpartition(".")
            shown.append((page, target, getattr(importlib.import_module(module), name)))
    bad = [(page, name) for page, name, value in shown if _holds_callables(value)]
    assert not bad, f"rendered as a repr of functions (use autodata with :no-value: and say what it holds): {bad}"
