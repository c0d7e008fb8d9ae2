"""Everything the paper's Appendix A says about one DAG, from one plan."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Hashable

from ..progress import progress as progress_bar
from .paths import _path_counts, _path_sums, backward_plan
from .symmetry import _classes, _path_degree_polynomials

__all__ = ["InputReport", "DagReport", "analyze_dag"]


@dataclass(frozen=True)
class InputReport:
    """The exact quantities of one input node ``x``."""

    node: Hashable
    path_sum: Fraction
    path_count: int
    path_degrees: dict  # path-degree (sorted (in_degree, multiplicity) pairs) -> number of paths


@dataclass(frozen=True)
class DagReport:
    """Path sums, counts, Lemma 7's total and (S) for one DAG and output."""

    output: Hashable
    inputs: list
    lemma7_total: Fraction
    symmetry_classes: list

    @property
    def symmetric(self) -> bool:
        """Whether (S) holds: one class of inputs."""
        return len(self.symmetry_classes) == 1

    def to_dict(self) -> dict:
        """Return the JSON object of ``pathstats dag --json`` (docs page "Command line").

        Exact numbers are decimal strings (``"p/q"`` fractions, integers of any
        size); a path-degree is ``{"degrees": {in_degree: multiplicity}, "paths": N}``.
        """
        return {
            "output": self.output,
            "d": len(self.inputs),
            "lemma7_total": str(self.lemma7_total),
            "symmetric": self.symmetric,
            "symmetry_classes": self.symmetry_classes,
            "inputs": [
                {
                    "node": item.node,
                    "path_sum": str(item.path_sum),
                    "path_count": str(item.path_count),
                    "path_degrees": [
                        {"degrees": {str(d): m for d, m in key}, "paths": str(n)}
                        for key, n in sorted(item.path_degrees.items())
                    ],
                }
                for item in self.inputs
            ],
        }


def analyze_dag(G: Any, output: Hashable, *, progress: bool = False) -> DagReport:
    """Compute every exact quantity of Appendix A for one DAG and output.

    Parameters
    ----------
    G : networkx.DiGraph or networkx.MultiDiGraph
        The computational DAG; parallel edges count.
    output : hashable
        The output node ``o``.
    progress : bool, default False
        Show the passes on stderr when the analysis takes more than two seconds
        (:func:`pathstats.progress.progress`).

    Returns
    -------
    DagReport
        Per input: exact path sum, path count and path-degree multiset; the
        total of Lemma 7 and the symmetry classes of (S).

    Raises
    ------
    GraphFormatError, UnknownNodeError, NotADAGError
        See :func:`pathstats.dag.backward_plan`.

    Notes
    -----
    One validation and topological sort, then three backward passes over the
    edges (sums, counts, path-degree polynomials).

    Examples
    --------
    >>> from pathstats.dag.generators import fully_connected_dag
    >>> report = analyze_dag(*fully_connected_dag([4, 3]))
    >>> report.lemma7_total, report.symmetric, str(report.inputs[0].path_sum)
    (Fraction(1, 1), True, '1/4')
    """
    stages = ["plan", "path sums", "path counts", "path-degree polynomials"]
    with progress_bar(total=len(stages), desc=f"dag ({G.number_of_edges()} edges)", unit="pass", disable=not progress,
                      delay=2.0) as bar:
        bar.set_postfix(running=stages[0])
        plan = backward_plan(G, output)
        bar.update()
        bar.set_postfix(running=stages[1])
        sums = _path_sums(plan, exact=True)
        bar.update()
        bar.set_postfix(running=stages[2])
        counts = _path_counts(plan)
        bar.update()
        bar.set_postfix(running=stages[3])
        polynomials = _path_degree_polynomials(plan)
        bar.update()
    inputs = [InputReport(x, sums[x], counts[x], dict(polynomials[x])) for x in plan.inputs]
    return DagReport(output, inputs, sum(sums.values(), Fraction(0)), _classes(polynomials))
