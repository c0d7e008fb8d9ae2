"""The layer engine: the recursion of :mod:`pathstats.dag` on the arrays of a real torch network.

A network is traced into a graph of layer rules (:mod:`.trace`, with functional
forms read as modules by :mod:`.functional`); each rule (:mod:`.rules`) yields its
DAG fragment (:mod:`.expand` builds the neuron-level DAG from them, for the generic
engine to check) and its step of every recursion (:mod:`.recursion`), in the number
systems of :mod:`.algebra`; model mode's forward laws of units live in :mod:`.moments`.
"""

from .recursion import *  # noqa: F401,F403 -- the recursions are the package's public face
from .recursion import __all__
from . import recursion as _recursion


def __getattr__(name: str):
    """Every name the module ``pathstats.layer_engine`` held before it became this package."""
    return getattr(_recursion, name)
