"""Sphinx configuration: the theory pages run their proofs as doctests.

Nothing on the built pages needs the network: MathJax comes from the
``sphinx-mathjax-offline`` package (the ``docs`` extra) and is copied into
``_static/mathjax``; the figures and the command-line transcripts are produced by
the engine at every build.
"""

import os
import re
import shutil
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
html_theme_options = {"page_width": "1100px", "sidebar_width": "220px"}
html_static_path = ["_static"]
html_css_files = ["pathstats.css"]  # code blocks wrap instead of running off the page

# MathJax 3 from the local copy (see _copy_mathjax): formulas render offline.
mathjax_path = "mathjax/tex-chtml.js"
#: What the page needs of the packaged MathJax: the TeX-to-CHTML bundle, its fonts
#: and the TeX extensions it may load on demand (paths inside the package's copy).
MATHJAX_FILES = ["tex-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions"]
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


def _mathjax_source() -> str:
    """The MathJax folder that ``sphinx-mathjax-offline`` installs."""
    from importlib import metadata

    try:
        dist = metadata.distribution("sphinx-mathjax-offline")
    except metadata.PackageNotFoundError:
        raise RuntimeError("the docs need the offline MathJax: pip install -e '.[docs]'") from None
    return str(dist.locate_file("sphinx-mathjax-offline/static/mathjax"))


def _copy_mathjax(app, exc) -> None:
    """Copy MathJax into ``_static/mathjax`` of an HTML build."""
    if exc is not None or app.builder.format != "html":
        return
    source, target = _mathjax_source(), os.path.join(app.outdir, "_static", "mathjax")
    for item in MATHJAX_FILES:
        src, dst = os.path.join(source, item), os.path.join(target, item)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.isdir(src):
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)


def _check_offline(app, exc) -> None:
    """Warn (an error under ``-W``) if a built page loads a script or style from the network."""
    if exc is not None or app.builder.format != "html":
        return
    from sphinx.util import logging

    remote = re.compile(r"""<(?:script|link)[^>]*(?:src|href)=["'](?:https?:)?//""")
    for folder, _, files in os.walk(app.outdir):
        for name in files:
            if name.endswith(".html"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    if remote.search(f.read()):
                        logging.getLogger(__name__).warning(f"{name} loads a script or style from the network")


def setup(app):
    """Draw the figures and run the example commands that the pages show, at every build;
    ship MathJax with the HTML."""
    from make_examples import make_examples
    from make_figures import make_figures

    from make_experiments import write_sections

    def generate(app):
        folder = os.path.join(app.srcdir, "_generated")
        make_figures(folder)
        make_examples(os.path.join(folder, "cli"))
        write_sections(folder)
        _write_methods_table(folder)

    app.connect("builder-inited", generate)
    app.connect("build-finished", _copy_mathjax)
    app.connect("build-finished", _check_offline)


def _write_methods_table(folder):
    """The training methods' table of train.rst, generated from the code's one table."""
    from pathstats.robust.methods import methods_table_rst

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "methods_table.rst"), "w") as f:
        f.write(methods_table_rst())
doctest_test_doctest_blocks = ""  # docstring examples run under pytest --doctest-modules
