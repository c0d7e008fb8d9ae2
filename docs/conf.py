"""Sphinx configuration: the theory pages run their proofs as doctests."""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.dirname(__file__)))

project = "pathstats"
author = "the pathstats developers"
copyright = "2026, the pathstats developers"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []
doctest_global_setup = """
import math
from fractions import Fraction
import numpy as np
import sympy as sp
import networkx as nx
import torch
torch.manual_seed(0)
"""
# ELLIPSIS for timings in command output; the pages compare numbers explicitly.
import doctest  # noqa: E402

doctest_default_flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.DONT_ACCEPT_TRUE_FOR_1


def setup(app):
    """Draw the figures that the pages show, from the engine, at every build."""
    from make_figures import make_figures

    app.connect("builder-inited", lambda app: make_figures(os.path.join(app.srcdir, "_generated")))
    from make_experiments import write_sections

    app.connect("builder-inited", lambda app: write_sections(os.path.join(app.srcdir, "_generated")))
    app.connect("builder-inited", lambda app: _write_methods_table(os.path.join(app.srcdir, "_generated")))


def _write_methods_table(folder):
    """The training methods' table of train.rst, generated from the code's one table."""
    from pathstats.robust.methods import methods_table_rst

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "methods_table.rst"), "w") as f:
        f.write(methods_table_rst())
doctest_test_doctest_blocks = ""  # docstring examples run under pytest --doctest-modules
