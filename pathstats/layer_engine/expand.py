"""The neuron-level computational DAG of a traced network, from the same rules.

One node per neuron (input coordinate or output of a weighted layer), one edge
per weight, parallel edges where padding folds two taps onto one input.  Each
node carries ``category`` (its theory-mode kind) and ``model_factor``; each edge
carries ``gain``, the product of the pointwise model-mode gains (ReLU, BatchNorm)
between its two neurons.  Meant for small networks: it is the bridge to the
exact generic engine, against which the layer engine is tested and benchmarked.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

from .algebra import FloatAlgebra
from .trace import LayerGraph

__all__ = ["expand"]


def expand(graph: LayerGraph, *, logit: int = 0) -> tuple:
    """Expand a traced network into its neuron-level DAG.

    Parameters
    ----------
    graph : LayerGraph
        The traced network.
    logit : int, default 0
        The logit taken as output ``o``.

    Returns
    -------
    (networkx.MultiDiGraph, output, inputs, output_gain)
        The DAG; the output neuron; the input neurons ``("x", i)`` in the
        C-order of the input tensor; the model-mode gain of pointwise layers
        after the output neuron (1 unless the logits pass through one).

    Examples
    --------
    >>> from torch import nn
    >>> from pathstats.layer_engine.trace import read_model
    >>> graph = read_model(nn.Sequential(nn.Conv1d(1, 1, 3, padding=1, padding_mode="reflect"), nn.Flatten(), nn.Linear(4, 2)), (1, 4))
    >>> G, o, inputs, _ = expand(graph)
    >>> conv = [v for v in G if v[0] != "x" and v != o][0]  # first output of the convolution
    >>> G.in_degree(conv), G.number_of_edges(("x", 1), conv), G.in_degree(o)
    (3, 2, 4)
    """
    G = nx.MultiDiGraph()
    size = math.prod(graph.input_shape)
    inputs = [("x", i) for i in range(size)]
    G.add_nodes_from(inputs)
    floats = FloatAlgebra()

    # A tensor's value is its producer: flat index -> (the DAG node it is, the gain on the way).
    def step(name, rule, sources):
        if rule.kind == "pointwise":
            source = sources[0]
            gain = np.broadcast_to(np.asarray(rule.model_gain, dtype=float), rule.out_shape).ravel()
            return lambda i: (source(i)[0], source(i)[1] * float(gain[i]))
        if rule.kind == "reshape":
            return sources[0]  # C-order flatten keeps flat indices
        if rule.kind == "concat":
            def part(j, rule=rule):
                k, i = rule.part(j)
                return sources[k](i)
            return part
        factor = np.broadcast_to(rule.model_factor(floats), rule.out_shape).ravel()
        G.add_nodes_from(((name, j), dict(category=rule.category, model_factor=float(factor[j]))) for j in range(factor.size))
        for k, i, j, multiplicity in rule.edges():
            u, gain = sources[k](i)
            G.add_edges_from([(u, (name, j), dict(gain=gain))] * multiplicity)
        return lambda j: ((name, j), 1.0)

    producer = graph.forward(lambda i: (("x", i), 1.0), step)
    output, output_gain = producer[graph.output_name](logit)
    return G, output, inputs, output_gain
