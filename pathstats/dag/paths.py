"""Path sums over a computational DAG by backward dynamic programming.

The quantities of Appendix A of Simon-Gabriel et al. (2019) are sums over the
paths ``p`` from an input ``x`` to an output ``o`` of products of per-node
factors.  All of them obey one recursion, run once over the edges in reverse
topological order from ``o``::

    H(o) = 1,     H(v) = sum over edges (v -> w) of  w_e * c_w * H(w),

so that ``H(x) = sum_p prod_{e in p} w_e prod_{v in p, v != x} c_v``.  With
``c_v = 1 / d_v`` (``d_v`` the in-degree, parallel edges counted) this is the
path sum ``S(x)`` of the paper; with ``c_v = 1`` it is the path count.

Every public function validates its graph, then delegates to a private function
that works on a :class:`BackwardPlan` (the ancestors of ``o`` as integer
indices), so that callers needing several quantities build the plan once.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Hashable, Mapping, TypeVar, Union

import networkx as nx

from ..errors import GraphFormatError, NotADAGError, UnknownNodeError

__all__ = [
    "BackwardPlan",
    "backward_plan",
    "input_nodes",
    "path_sums",
    "path_counts",
    "weighted_path_sums",
    "lemma7_total",
]

Node = Hashable
T = TypeVar("T")
NodeFactor = Union[None, str, Mapping[Node, Any], Callable[[Node], Any]]
EdgeFactor = Union[None, str, Callable[[Node, Node, dict], Any]]


@dataclass(frozen=True)
class BackwardPlan:
    """The part of a DAG that can reach the output, ready for the recursion.

    Attributes
    ----------
    graph : networkx.DiGraph or networkx.MultiDiGraph
        The graph the plan was made from (not copied).
    output : hashable
        The output node ``o``.
    nodes : list
        The ancestors of ``o`` and ``o`` itself in reverse topological order;
        ``nodes[0]`` is ``o``.
    in_degree : list of int
        ``in_degree[i]`` is the in-degree of ``nodes[i]`` in the whole graph,
        parallel edges counted.
    successors : list of list of int
        ``successors[i]`` holds the index of the head of every out-edge of
        ``nodes[i]`` that stays inside the plan, once per parallel edge.
    inputs : list
        The sources (in-degree 0) of the whole graph, in the graph's node order;
        sources that cannot reach ``o`` are included, with value zero.
    """

    graph: Any
    output: Node
    nodes: list
    in_degree: list
    successors: list
    inputs: list

    def index(self) -> dict:
        """Return the mapping from node to its position in :attr:`nodes`."""
        return {node: i for i, node in enumerate(self.nodes)}


def _check_graph(G: Any) -> None:
    if not isinstance(G, (nx.DiGraph, nx.MultiDiGraph)) or not G.is_directed():
        raise GraphFormatError(
            f"expected a directed networkx graph (DiGraph or MultiDiGraph), got "
            f"{type(G).__name__}; build a DiGraph, or call G.to_directed() if every "
            f"edge should count in both directions"
        )


def _check_output(G: Any, output: Node) -> None:
    if output not in G:
        sinks = [v for v in G if G.out_degree(v) == 0]
        hint = f"; its sinks are {sinks[:10]!r}" if sinks else ""
        raise UnknownNodeError(f"output node {output!r} is not in the graph{hint}")


def check_acyclic(G: Any) -> None:
    """Raise :class:`NotADAGError` naming one directed cycle of ``G``, if it has one.

    Examples
    --------
    >>> check_acyclic(nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a")]))
    Traceback (most recent call last):
    ...
    pathstats.errors.NotADAGError: the graph has a directed cycle ('a' -> 'b' -> 'c' -> 'a'); path sums need a DAG, remove one edge of the cycle
    """
    _topological_order(G)


def _topological_order(G: Any) -> list:
    try:
        return list(nx.topological_sort(G))
    except nx.NetworkXUnfeasible:
        cycle = [u for u, *_ in nx.find_cycle(G)]
        shown = " -> ".join(map(repr, cycle[:8] + cycle[:1]))
        raise NotADAGError(
            f"the graph has a directed cycle ({shown}); path sums need a DAG, "
            f"remove one edge of the cycle"
        ) from None


def input_nodes(G: Any) -> list:
    """Return the input nodes of a DAG: its sources, in the graph's node order.

    Parameters
    ----------
    G : networkx.DiGraph or networkx.MultiDiGraph
        The computational DAG.

    Returns
    -------
    list
        Every node with in-degree 0.

    Raises
    ------
    GraphFormatError
        If ``G`` is not a directed networkx graph.

    Examples
    --------
    >>> import networkx as nx
    >>> input_nodes(nx.DiGraph([("x1", "h"), ("x2", "h"), ("h", "o")]))
    ['x1', 'x2']
    """
    _check_graph(G)
    return [v for v in G if G.in_degree(v) == 0]


def backward_plan(G: Any, output: Node) -> BackwardPlan:
    """Validate a DAG and order the ancestors of ``output`` for the recursion.

    Parameters
    ----------
    G : networkx.DiGraph or networkx.MultiDiGraph
        The computational DAG; parallel edges of a MultiDiGraph count.
    output : hashable
        The output node ``o``.

    Returns
    -------
    BackwardPlan
        The plan that the private ``_*`` functions of this module run on.

    Raises
    ------
    GraphFormatError
        If ``G`` is not a directed networkx graph.
    UnknownNodeError
        If ``output`` is not a node of ``G``.
    NotADAGError
        If ``G`` has a directed cycle anywhere.

    Notes
    -----
    One topological sort of the whole graph (which also finds cycles away from
    ``o``) and one pass over the edges: ``O(|V| + |E|)`` time and memory.

    Examples
    --------
    >>> import networkx as nx
    >>> plan = backward_plan(nx.DiGraph([("x", "h"), ("h", "o"), ("y", "z")]), "o")
    >>> plan.nodes, plan.inputs
    (['o', 'h', 'x'], ['x', 'y'])
    """
    _check_graph(G)
    _check_output(G, output)
    order = _topological_order(G)
    relevant = nx.ancestors(G, output)
    relevant.add(output)
    nodes = [v for v in reversed(order) if v in relevant]
    index = {v: i for i, v in enumerate(nodes)}
    successors = [
        [index[w] for _, w in G.out_edges(v) if w in index] for v in nodes
    ]
    in_degree = [G.in_degree(v) for v in nodes]
    inputs = [v for v in G if G.in_degree(v) == 0]
    return BackwardPlan(G, output, nodes, in_degree, successors, inputs)


def _backward(
    plan: BackwardPlan,
    *,
    one: T,
    zero: T,
    enter: Callable[[int, T], T],
    edge_weight: Callable[[int, int], Any] | None = None,
) -> list:
    """Run ``H(v) = sum_{(v->w)} w_e * enter(w, H(w))`` and return ``H`` by index.

    ``enter(i, h)`` applies node ``i``'s factor ``c_i`` to ``h``; it is never
    called on a source, whose factor no path uses.  ``edge_weight(i, k)`` gives
    the factor of the ``k``-th out-edge of node ``i`` in ``plan.successors[i]``.
    """
    n = len(plan.nodes)
    values: list = [zero] * n
    entered: list = [None] * n
    for i in range(n):
        if i == 0:
            h = one
        elif edge_weight is None:
            h = sum((entered[j] for j in plan.successors[i]), zero)
        else:
            h = sum(
                (edge_weight(i, k) * entered[j] for k, j in enumerate(plan.successors[i])),
                zero,
            )
        values[i] = h
        if plan.in_degree[i]:
            entered[i] = enter(i, h)
    return values


def _per_input(plan: BackwardPlan, values: list, zero: Any) -> dict:
    index = plan.index()
    return {x: values[index[x]] if x in index else zero for x in plan.inputs}


def _path_sums(plan: BackwardPlan, exact: bool = True) -> dict:
    one = Fraction(1) if exact else 1.0
    degrees = plan.in_degree
    values = _backward(plan, one=one, zero=0 * one, enter=lambda i, h: h / degrees[i])
    return _per_input(plan, values, 0 * one)


def _path_counts(plan: BackwardPlan) -> dict:
    values = _backward(plan, one=1, zero=0, enter=lambda i, h: h)
    return _per_input(plan, values, 0)


def path_sums(G: Any, output: Node, *, exact: bool = True) -> dict:
    """Return the path sum ``S(x)`` of every input ``x`` of a DAG.

    ``S(x) = sum_{p in P(x, o)} prod_{v in p, v != x} 1 / d_v``, where ``d_v``
    is the in-degree of ``v`` with parallel edges counted (paper, Lemma 7).

    Parameters
    ----------
    G : networkx.DiGraph or networkx.MultiDiGraph
        The computational DAG.
    output : hashable
        The output node ``o``.
    exact : bool, default True
        Exact :class:`fractions.Fraction` values if true, float64 otherwise.

    Returns
    -------
    dict
        ``{x: S(x)}`` for every source ``x`` of ``G`` in node order; zero where
        no path reaches ``o``.

    Raises
    ------
    GraphFormatError, UnknownNodeError, NotADAGError
        See :func:`backward_plan`.

    Notes
    -----
    Backward recursion ``H(o) = 1``, ``H(v) = sum_{(v->w)} H(w) / d_w``, one
    pass over the edges: ``O(|V| + |E|)`` additions.  Exact values may carry
    large denominators (products of in-degrees), so each addition costs more
    than a float one.

    Examples
    --------
    Reflect padding makes parallel edges: ``x1`` reaches ``h`` through two
    weights, so ``d_h = 3`` and ``S(x1) = 2/3``.

    >>> import networkx as nx
    >>> G = nx.MultiDiGraph([("x1", "h"), ("x1", "h"), ("x2", "h"), ("h", "o")])
    >>> {x: str(s) for x, s in path_sums(G, "o").items()}
    {'x1': '2/3', 'x2': '1/3'}
    >>> path_sums(G, "o", exact=False)["x2"]
    0.3333333333333333
    """
    return _path_sums(backward_plan(G, output), exact)


def path_counts(G: Any, output: Node) -> dict:
    """Return the exact number of paths ``|P(x, o)|`` from every input ``x``.

    Parameters
    ----------
    G : networkx.DiGraph or networkx.MultiDiGraph
        The computational DAG; parallel edges give distinct paths.
    output : hashable
        The output node ``o``.

    Returns
    -------
    dict
        ``{x: count}`` with Python ``int`` counts (no overflow) for every source.

    Raises
    ------
    GraphFormatError, UnknownNodeError, NotADAGError
        See :func:`backward_plan`.

    Notes
    -----
    ``N(o) = 1``, ``N(v) = sum_{(v->w)} N(w)``: ``O(|V| + |E|)`` big-integer
    additions.  Counts grow exponentially with depth, beyond 64 bits on real
    networks.

    Examples
    --------
    Forty layers of width two, fully connected: ``2**40`` paths from each input.

    >>> import networkx as nx
    >>> G = nx.DiGraph()
    >>> G.add_edges_from(((k, a), (k + 1, b)) for k in range(40) for a in range(2) for b in range(2))
    >>> G.add_edges_from(((40, a), "o") for a in range(2))
    >>> path_counts(G, "o")[(0, 0)] == 2 ** 40
    True
    """
    return _path_counts(backward_plan(G, output))


def _as_node_factor(G: Any, node_factor: NodeFactor) -> Callable[[Node], Any]:
    if node_factor is None:
        return lambda v: 1
    if isinstance(node_factor, str):
        name = node_factor

        def from_attribute(v):
            try:
                return G.nodes[v][name]
            except KeyError:
                raise GraphFormatError(
                    f"node {v!r} has no attribute {name!r}; set it on every node "
                    f"that a path to the output enters"
                ) from None

        return from_attribute
    if isinstance(node_factor, Mapping):
        mapping = node_factor

        def from_mapping(v):
            try:
                return mapping[v]
            except KeyError:
                raise UnknownNodeError(f"node_factor has no value for node {v!r}") from None

        return from_mapping
    if callable(node_factor):
        return node_factor
    raise TypeError(f"node_factor must be None, a str, a mapping or a callable, not {type(node_factor).__name__}")


def _edge_weights(plan: BackwardPlan, edge_factor: EdgeFactor) -> Callable[[int, int], Any] | None:
    """Precompute the factor of every out-edge, aligned with ``plan.successors``."""
    if edge_factor is None:
        return None
    G, nodes = plan.graph, plan.nodes
    index = plan.index()
    if isinstance(edge_factor, str):
        name = edge_factor

        def factor(u, v, data):
            try:
                return data[name]
            except KeyError:
                raise GraphFormatError(f"edge {u!r} -> {v!r} has no attribute {name!r}") from None
    elif callable(edge_factor):
        factor = edge_factor
    else:
        raise TypeError(f"edge_factor must be None, a str or a callable, not {type(edge_factor).__name__}")
    # out_edges(data=True) yields the same edges in the same order as in backward_plan
    weights = [
        [factor(v, w, data) for _, w, data in G.out_edges(v, data=True) if w in index]
        for v in nodes
    ]
    return lambda i, k: weights[i][k]


def weighted_path_sums(
    G: Any,
    output: Node,
    node_factor: NodeFactor = None,
    edge_factor: EdgeFactor = None,
    *,
    one: Any = 1,
) -> dict:
    """Return ``sum_p prod_{e in p} w_e prod_{v in p, v != x} c_v`` for every input.

    The general path sum that both prediction modes reduce to: in theory mode
    ``c_v = 1/d_v`` (or ``1/a_v**2`` for average pooling); in model mode edges
    carry weight variances and nodes activation gains.

    Parameters
    ----------
    G : networkx.DiGraph or networkx.MultiDiGraph
        The computational DAG.
    output : hashable
        The output node ``o``.
    node_factor : None, str, mapping or callable, optional
        ``c_v``: 1 if None, the node attribute of that name if a str, looked up
        if a mapping, ``node_factor(v)`` if callable.  Never asked for a source.
    edge_factor : None, str or callable, optional
        ``w_e``: 1 if None, the edge attribute of that name if a str,
        ``edge_factor(u, v, data)`` if callable (called once per edge).
    one : number, default 1
        The unit of the number type; sets the type of the result together with
        the factors (``Fraction(1)``, ``1.0``, a sympy ``Integer(1)``...).

    Returns
    -------
    dict
        ``{x: value}`` for every source ``x`` of ``G``, ``0 * one`` where no
        path reaches ``o``.

    Raises
    ------
    GraphFormatError
        As :func:`backward_plan`, or if a named attribute is missing.
    UnknownNodeError, NotADAGError
        See :func:`backward_plan`.

    Notes
    -----
    One pass over the edges in reverse topological order; each edge costs one
    multiplication and one addition in the number type: ``O(|V| + |E|)``.

    Examples
    --------
    Average pooling of two inputs: a deterministic weight ``1/2`` on each edge,
    no ReLU, so the squared factor is ``1/4`` per edge (paper, Theorem 10).

    >>> import networkx as nx
    >>> from fractions import Fraction
    >>> G = nx.DiGraph()
    >>> G.add_edges_from([("x1", "pool"), ("x2", "pool")], var=Fraction(1, 4))
    >>> weighted_path_sums(G, "pool", edge_factor="var", one=Fraction(1))
    {'x1': Fraction(1, 4), 'x2': Fraction(1, 4)}
    """
    plan = backward_plan(G, output)
    return _weighted_path_sums(plan, _as_node_factor(G, node_factor), _edge_weights(plan, edge_factor), one)


def _weighted_path_sums(plan: BackwardPlan, node_factor, edge_weight, one) -> dict:
    nodes = plan.nodes
    zero = 0 * one
    values = _backward(
        plan,
        one=one,
        zero=zero,
        enter=lambda i, h: node_factor(nodes[i]) * h,
        edge_weight=edge_weight,
    )
    return _per_input(plan, values, zero)


def lemma7_total(G: Any, output: Node, *, exact: bool = True) -> Fraction | float:
    """Return ``sum_x S(x)``, which Lemma 7 says is exactly 1 on every DAG.

    Parameters
    ----------
    G : networkx.DiGraph or networkx.MultiDiGraph
        The computational DAG.
    output : hashable
        The output node ``o``.
    exact : bool, default True
        A :class:`fractions.Fraction` if true, a float otherwise.

    Returns
    -------
    Fraction or float
        The total of :func:`path_sums` over the inputs.

    Raises
    ------
    GraphFormatError, UnknownNodeError, NotADAGError
        See :func:`backward_plan`.

    Notes
    -----
    The proof is a random walk from ``o`` that steps to a uniformly chosen
    in-edge until it stops at a source; ``S(x)`` is the probability that it
    stops at ``x``.  Computing the total costs one :func:`path_sums`.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.MultiDiGraph([("a", "h"), ("a", "h"), ("b", "h"), ("h", "o"), ("c", "o")])
    >>> lemma7_total(G, "o")
    Fraction(1, 1)
    """
    return sum(path_sums(G, output, exact=exact).values(), Fraction(0) if exact else 0.0)
