"""Brute-force path enumeration: the test oracle of the DP engine.

Exponential in depth by construction; never used by the engine itself.  Each
path is listed once per choice of parallel edge, exactly as the paper counts
weights.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from typing import Any, Hashable, Iterator

from .paths import backward_plan

__all__ = ["enumerate_paths", "brute_force"]

Node = Hashable


def enumerate_paths(G: Any, source: Node, output: Node) -> Iterator[list]:
    """Yield every path from ``source`` to ``output`` as its list of nodes.

    Parameters
    ----------
    G : networkx.DiGraph or networkx.MultiDiGraph
        A DAG; a path through ``m`` parallel edges is yielded ``m`` times.
    source, output : hashable
        End points.

    Yields
    ------
    list
        ``[source, ..., output]``; ``[output]`` alone if ``source == output``.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.MultiDiGraph([("x", "h"), ("x", "h"), ("h", "o"), ("x", "o")])
    >>> sorted(enumerate_paths(G, "x", "o"))
    [['x', 'h', 'o'], ['x', 'h', 'o'], ['x', 'o']]
    """
    stack = [(source, [source])]
    while stack:
        node, path = stack.pop()
        if node == output:
            yield path
            continue
        for _, head in G.out_edges(node):
            stack.append((head, path + [head]))


def brute_force(G: Any, output: Node) -> dict:
    """Path sums, counts and path-degree multisets by listing every path.

    Parameters
    ----------
    G : networkx.DiGraph or networkx.MultiDiGraph
        The computational DAG.
    output : hashable
        The output node ``o``.

    Returns
    -------
    dict
        ``{x: (path_sum, path_count, path_degrees)}`` for every source ``x``:
        an exact Fraction, an int, and a Counter over path-degrees in the form of
        :data:`pathstats.dag.symmetry.PathDegree` (sorted ``(in_degree, multiplicity)`` pairs).

    Raises
    ------
    GraphFormatError, UnknownNodeError, NotADAGError
        See :func:`pathstats.dag.backward_plan` (validation is shared).

    Notes
    -----
    Time proportional to the total length of all paths: exponential in depth.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.MultiDiGraph([("x", "h"), ("x", "h"), ("y", "h"), ("h", "o")])
    >>> brute_force(G, "o")["x"]
    (Fraction(2, 3), 2, Counter({((1, 1), (3, 1)): 2}))
    """
    plan = backward_plan(G, output)  # validates and rejects cycles
    degree = dict(G.in_degree())
    result = {}
    for x in plan.inputs:
        total, count, degrees = Fraction(0), 0, Counter()
        for path in enumerate_paths(G, x, output):
            term = Fraction(1)
            for v in path[1:]:
                term /= degree[v]
            total += term
            count += 1
            degrees[tuple(sorted(Counter(degree[v] for v in path[1:]).items()))] += 1
        result[x] = (total, count, degrees)
    return result
