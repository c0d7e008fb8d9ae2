"""The README's Python snippets run as written, each on its own (a fresh namespace)."""

from __future__ import annotations

import os
import re

import pytest
import torch

README = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "README.md")


def _snippets() -> list:
    with open(README, encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


SNIPPETS = _snippets()


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 4


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs_as_written(index, capsys):
    namespace: dict = {"__name__": f"readme_snippet_{index}"}
    with torch.random.fork_rng(devices=[]):
        exec(compile(SNIPPETS[index], f"README.md python snippet {index + 1}", "exec"), namespace)
    if "report" in namespace and "grad_sq_total" in namespace["report"]:  # the user-model verify example
        assert abs(namespace["report"]["grad_sq_total"]["z"]) < 4
        assert "z = " in capsys.readouterr().out
    if "bounds" in namespace:  # the robustness bounds: constants are numbers, the estimate says how
        assert isinstance(namespace["bounds"]["curvature_constant"], float)
        assert isinstance(namespace["bounds"]["curvature_estimate"], str)
