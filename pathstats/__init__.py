"""pathstats: path sums and the first-order adversarial vulnerability of neural nets.

The exact engine of Appendix A of Simon-Gabriel et al. (ICML 2019) on any
computational DAG (per-input path sums, path counts, Lemma 7's total and the
symmetry assumption (S)), and :func:`predict`, its layer-level counterpart on
real PyTorch networks.
"""

from importlib import import_module
from typing import Any

from .errors import GraphFormatError, InvalidArgumentError, NotADAGError, OutputPathError, PathstatsError, UnknownNodeError

#: public name -> the module that defines it, imported on first use: ``import pathstats``
#: (and ``pathstats --version``) does not load torch or networkx until a name needs them.
_LAZY = {
    "analyze_dag": "analysis", "DagReport": "analysis", "InputReport": "analysis",
    "backward_plan": "dag", "input_nodes": "dag", "lemma7_total": "dag", "path_counts": "dag", "path_sums": "dag",
    "weighted_path_sums": "dag",
    "read_node_link": "graphio",
    "predict": "prediction", "Prediction": "prediction",
    "is_symmetric": "symmetry", "path_degree_polynomials": "symmetry", "symmetry_classes": "symmetry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
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
