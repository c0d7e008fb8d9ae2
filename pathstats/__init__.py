"""pathstats: path sums and the first-order adversarial vulnerability of neural nets.

The exact engine of Appendix A of Simon-Gabriel et al. (ICML 2019) on any
computational DAG (per-input path sums, path counts, Lemma 7's total and the
symmetry assumption (S)), and :func:`predict`, its layer-level counterpart on
real PyTorch networks.
"""

from .analysis import DagReport, InputReport, analyze_dag
from .dag import backward_plan, input_nodes, lemma7_total, path_counts, path_sums, weighted_path_sums
from .errors import GraphFormatError, InvalidArgumentError, NotADAGError, OutputPathError, PathstatsError, UnknownNodeError
from .graphio import read_node_link
from .prediction import Prediction, predict
from .symmetry import is_symmetric, path_degree_polynomials, symmetry_classes

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
