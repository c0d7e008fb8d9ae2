"""pathstats: path sums and the first-order adversarial vulnerability of neural nets.

The exact engine of Appendix A of Simon-Gabriel et al. (ICML 2019) on any
computational DAG (per-input path sums, path counts, Lemma 7's total and the
symmetry assumption (S)), and :func:`predict`, its layer-level counterpart on
real PyTorch networks.
"""

import sys
from importlib import import_module
from importlib.abc import Loader, MetaPathFinder
from importlib.util import spec_from_loader
from typing import Any

from .errors import GraphFormatError, InvalidArgumentError, NotADAGError, OutputPathError, PathstatsError, UnknownNodeError

#: public name -> the module that defines it, imported on first use: ``import pathstats``
#: (and ``pathstats --version``) does not load torch or networkx until a name needs them.
_LAZY = {
    "analyze_dag": "dag.analysis", "DagReport": "dag.analysis", "InputReport": "dag.analysis",
    "backward_plan": "dag.paths", "input_nodes": "dag.paths", "lemma7_total": "dag.paths", "path_counts": "dag.paths",
    "path_sums": "dag.paths", "weighted_path_sums": "dag.paths",
    "read_node_link": "dag.graphio",
    "predict": "prediction", "Prediction": "prediction",
    "is_symmetric": "dag.symmetry", "path_degree_polynomials": "dag.symmetry", "symmetry_classes": "dag.symmetry",
}

#: Modules that moved into the two engines' packages (``dag/``, ``layer_engine/``): the old
#: name stays importable (``import pathstats.layers``) and IS the new module, not a copy.
MOVED = {
    "symmetry": "dag.symmetry", "enumeration": "dag.enumeration", "analysis": "dag.analysis",
    "graphio": "dag.graphio", "generators": "dag.generators",
    "layers": "layer_engine.rules", "moments": "layer_engine.moments", "algebra": "layer_engine.algebra",
    "trace": "layer_engine.trace", "functional": "layer_engine.functional", "expand": "layer_engine.expand",
}


class _MovedModules(MetaPathFinder, Loader):
    """Resolves ``pathstats.OLD`` (a key of :data:`MOVED`) to the module at its new home, on first import."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        package, _, old = fullname.rpartition(".")
        return spec_from_loader(fullname, self) if package == __name__ and old in MOVED else None

    def create_module(self, spec):
        module = import_module(f"{__name__}.{MOVED[spec.name.rpartition('.')[2]]}")
        spec.loader_state = module.__spec__  # the import system stamps the alias's spec on the module: undone below
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = module.__spec__.loader_state


if not any(type(finder).__module__ == __name__ and type(finder).__name__ == "_MovedModules" for finder in sys.meta_path):  # once, reload too
    sys.meta_path.append(_MovedModules())


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value  # once: later look-ups are plain attribute reads
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "analyze_dag",
    "DagReport",
    "InputReport",
    "backward_plan",
    "input_nodes",
    "path_sums",
    "path_counts",
    "weighted_path_sums",
    "lemma7_total",
    "path_degree_polynomials",
    "symmetry_classes",
    "is_symmetric",
    "read_node_link",
    "predict",
    "Prediction",
    "PathstatsError",
    "NotADAGError",
    "UnknownNodeError",
    "GraphFormatError",
    "OutputPathError",
    "InvalidArgumentError",
]
