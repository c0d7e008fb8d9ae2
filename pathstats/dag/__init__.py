"""The generic DAG engine: Appendix A of Simon-Gabriel et al. (2019) on any computational DAG.

Exact path sums and counts by one backward recursion (:mod:`.paths`), the
symmetry assumption (S) (:mod:`.symmetry`), their report for one DAG
(:mod:`.analysis`), brute-force enumeration as the engine's oracle
(:mod:`.enumeration`), reading DAGs (:mod:`.graphio`) and small example DAGs
(:mod:`.generators`).  Nothing here knows about torch: the layer engine
(:mod:`pathstats.layer_engine`) is checked against it.
"""

from .paths import *  # noqa: F401,F403 -- the recursion is the package's public face
from .paths import __all__
from . import paths as _paths


def __getattr__(name: str):
    """Every name the module ``pathstats.dag`` held before it became this package."""
    return getattr(_paths, name)
