"""Hypothesis strategies for computational DAGs."""

from __future__ import annotations

import networkx as nx
from hypothesis import strategies as st


@st.composite
def layered_dags(draw, max_layers: int = 4, max_width: int = 3, max_fan_in: int = 3, skips: bool = True):
    """A layered MultiDiGraph with skips, parallel edges and stray sources, and an output.

    Each hidden node draws its in-edges from earlier layers with replacement
    (repeats are parallel edges); some draw none and become inputs mid-graph.
    The output is any non-input-layer node, so some inputs may not reach it.
    """
    n_layers = draw(st.integers(1, max_layers))
    widths = [draw(st.integers(1, max_width)) for _ in range(n_layers + 1)]
    layers = [[(k, i) for i in range(w)] for k, w in enumerate(widths)]
    G = nx.MultiDiGraph()
    G.add_nodes_from(layers[0])
    for k in range(1, n_layers + 1):
        below = [v for layer in layers[:k] for v in layer] if skips else layers[k - 1]
        for v in layers[k]:
            G.add_node(v)
            sources = draw(st.lists(st.sampled_from(below), min_size=0, max_size=max_fan_in))
            G.add_edges_from((u, v) for u in sources)
    candidates = [v for layer in layers[1:] for v in layer]
    output = draw(st.sampled_from(candidates))
    return G, output


@st.composite
def symmetric_dags(draw, max_layers: int = 3):
    """A DAG built to satisfy (S): fully connected and circulant layers, then a dense output.

    A circulant layer of stride ``s`` on ``n`` nodes (``s`` divides ``n``) links
    node ``j`` to ``(s*j + t) mod n`` for each offset ``t`` of a multiset holding
    the same number of offsets in every residue class mod ``s``: every node gets
    the same in-degree and every node below the same out-degree, so all paths
    share one path-degree and all inputs the same path count.
    """
    width = draw(st.integers(1, 8))
    layers = [[(0, i) for i in range(width)]]
    G = nx.MultiDiGraph()
    G.add_nodes_from(layers[0])
    for k in range(1, draw(st.integers(0, max_layers)) + 1):
        below = layers[-1]
        n = len(below)
        if draw(st.booleans()):
            new_width = draw(st.integers(1, 4))
            multiplicity = draw(st.integers(1, 2))
            above = [(k, j) for j in range(new_width)]
            G.add_edges_from((u, v) for v in above for u in below for _ in range(multiplicity))
        else:
            stride = draw(st.sampled_from([s for s in range(1, n + 1) if n % s == 0]))
            per_residue = draw(st.integers(1, 2))
            offsets = [
                stride * draw(st.integers(0, 3)) + r for r in range(stride) for _ in range(per_residue)
            ]
            above = [(k, j) for j in range(n // stride)]
            G.add_edges_from((below[(stride * j + t) % n], v) for j, v in enumerate(above) for t in offsets)
        layers.append(above)
    G.add_edges_from((u, "o") for u in layers[-1])
    return G, "o"
