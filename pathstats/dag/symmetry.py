"""The symmetry assumption (S), decided exactly without enumerating paths.

The path-degree of a path ``p`` from ``x`` to ``o`` is the multiset of the
in-degrees of its nodes other than ``x``.  (S) holds when every input has the
same multiset ``{d_p : p in P(x, o)}`` of path-degrees (paper, Section 3).

That multiset of multisets is the generating polynomial
``G_x(t) = sum_p prod_{v in p, v != x} t_{d_v}`` in one variable per distinct
in-degree: the coefficient of a monomial counts the paths with that
path-degree.  It obeys the same backward recursion as the path sums, with
"multiply by ``t_{d_w}``" as the node factor, so two inputs satisfy (S)
together exactly when their polynomials are equal.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Hashable

from .paths import BackwardPlan, _backward, _per_input, backward_plan

__all__ = [
    "PathDegree",
    "path_degree_polynomials",
    "symmetry_classes",
    "is_symmetric",
]

Node = Hashable
#: A path-degree (a multiset of in-degrees) as sorted ``(in_degree, multiplicity)`` pairs.
PathDegree = tuple


def _times_degree(path_degree: PathDegree, degree: int) -> PathDegree:
    """Return the monomial ``path_degree * t_degree`` in canonical form."""
    merged = dict(path_degree)
    merged[degree] = merged.get(degree, 0) + 1
    return tuple(sorted(merged.items()))


def _path_degree_polynomials(plan: BackwardPlan) -> dict:
    degrees = plan.in_degree

    def enter(i: int, polynomial: Counter) -> Counter:
        d = degrees[i]
        return Counter({_times_degree(key, d): n for key, n in polynomial.items()})

    values = _backward(plan, one=Counter({(): 1}), zero=Counter(), enter=enter)
    return _per_input(plan, values, Counter())


def _classes(polynomials: dict) -> list:
    groups: dict = {}
    for x, polynomial in polynomials.items():
        groups.setdefault(frozenset(polynomial.items()), []).append(x)
    return list(groups.values())


def path_degree_polynomials(G: Any, output: Node) -> dict:
    """Return, per input, its multiset of path-degrees as a generating polynomial.

    Parameters
    ----------
    G : networkx.DiGraph or networkx.MultiDiGraph
        The computational DAG.
    output : hashable
        The output node ``o``.

    Returns
    -------
    dict
        ``{x: Counter}`` for every source ``x``; each Counter maps a path-degree
        (sorted ``(in_degree, multiplicity)`` pairs) to the exact number of paths
        from ``x`` to ``o`` that have it.  Empty where no path reaches ``o``.

    Raises
    ------
    GraphFormatError, UnknownNodeError, NotADAGError
        See :func:`pathstats.dag.backward_plan`.

    Notes
    -----
    One pass over the edges; the cost of each edge is the number of distinct
    path-degrees at its head, which is small when layers have few distinct
    in-degrees (convolutions: the border classes) and can grow on irregular DAGs.

    Examples
    --------
    Input ``a`` reaches ``o`` through ``h`` (in-degree 2), ``b`` through ``h``
    or directly; ``o`` has in-degree 2.

    >>> import networkx as nx
    >>> G = nx.DiGraph([("a", "h"), ("b", "h"), ("h", "o"), ("b", "o")])
    >>> polys = path_degree_polynomials(G, "o")
    >>> dict(polys["a"])
    {((2, 2),): 1}
    >>> sorted(polys["b"].items())
    [(((2, 1),), 1), (((2, 2),), 1)]
    """
    return _path_degree_polynomials(backward_plan(G, output))


def symmetry_classes(G: Any, output: Node) -> list:
    """Group the inputs that share the same multiset of path-degrees.

    Parameters
    ----------
    G : networkx.DiGraph or networkx.MultiDiGraph
        The computational DAG.
    output : hashable
        The output node ``o``.

    Returns
    -------
    list of list
        The equivalence classes, each in the graph's node order, ordered by their
        first member.  Inputs in one class have equal path sums; (S) holds iff
        there is a single class.

    Raises
    ------
    GraphFormatError, UnknownNodeError, NotADAGError
        See :func:`pathstats.dag.backward_plan`.

    Notes
    -----
    Exact: classes are formed by equality of the polynomials of
    :func:`path_degree_polynomials`, with no hashing to floats.

    Examples
    --------
    Stride 2 with kernel 3 on four inputs: the inputs under the kernel's middle
    tap are used once, the others twice.

    >>> import networkx as nx
    >>> G = nx.DiGraph([(0, "h0"), (1, "h0"), (2, "h0"), (2, "h1"), (3, "h1"),
    ...                 ("h0", "o"), ("h1", "o")])
    >>> symmetry_classes(G, "o")
    [[0, 1], [2], [3]]
    """
    return _classes(path_degree_polynomials(G, output))


def is_symmetric(G: Any, output: Node) -> bool:
    """Decide exactly whether the DAG satisfies the symmetry assumption (S).

    Parameters
    ----------
    G : networkx.DiGraph or networkx.MultiDiGraph
        The computational DAG.
    output : hashable
        The output node ``o``.

    Returns
    -------
    bool
        True iff every input has the same multiset of path-degrees to ``o``.
        Then Lemma 8 gives ``S(x) = 1/d`` for each of the ``d`` inputs.

    Raises
    ------
    GraphFormatError, UnknownNodeError, NotADAGError
        See :func:`pathstats.dag.backward_plan`.

    Examples
    --------
    >>> import networkx as nx
    >>> is_symmetric(nx.complete_multipartite_graph(3, 1).to_directed(), 0)  # undirected cycles
    Traceback (most recent call last):
    ...
    pathstats.errors.NotADAGError: the graph has a directed cycle (...); path sums need a DAG, remove one edge of the cycle
    >>> G = nx.DiGraph([(x, h) for x in "abc" for h in (1, 2)] + [(1, "o"), (2, "o")])
    >>> is_symmetric(G, "o")
    True
    """
    return len(symmetry_classes(G, output)) == 1
