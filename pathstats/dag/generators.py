"""Computational DAGs of small networks, for examples, tests and benchmarks.

Each builder returns ``(G, output)``: a :class:`networkx.MultiDiGraph` and its
output node ``"o"``, fully connected to the last layer like the logit of the
paper's networks.  Nodes are tuples ``(layer, channel, position)``, inputs
being layer 0.
"""

from __future__ import annotations

from typing import Callable, Sequence

import networkx as nx
import numpy as np

from ..errors import InvalidArgumentError

__all__ = [
    "PADDING_MODES",
    "padded_source",
    "conv_output_length",
    "fully_connected_dag",
    "conv1d_dag",
    "random_layered_dag",
    "EXAMPLES",
]

#: Padding modes of ``torch.nn.Conv1d`` / ``Conv2d``.
PADDING_MODES = ("zeros", "circular", "reflect", "replicate")

OUTPUT = "o"


def padded_source(position: int, length: int, padding: int, mode: str, *, after: int | None = None) -> int | None:
    """Map a position of the padded signal to the input position it reads.

    The one home of the padding geometry: the DAG generators, the layer engine and
    the batched Monte Carlo's padding (``verify/batched.py``) all read it here.

    Parameters
    ----------
    position : int
        Index into the padded signal, ``0 <= position < padding + length + after``.
    length : int
        Length of the unpadded signal.
    padding : int
        Padding before the signal (and after it, unless ``after`` is given).
    mode : {"zeros", "circular", "reflect", "replicate"}
        As ``padding_mode`` of a torch convolution.
    after : int, optional
        Padding after the signal, where it differs from ``padding`` (``F.pad``'s
        asymmetric padding).
    mode : {"zeros", "circular", "reflect", "replicate"}
        As ``padding_mode`` of a torch convolution.

    Returns
    -------
    int or None
        The input index, or None where zero padding reads a constant zero (the
        weight there connects no neurons, so the DAG has no edge).

    Raises
    ------
    ValueError
        For an unknown mode, or a padding that torch refuses for that mode
        (reflect needs ``padding < length``, circular ``padding <= length``).

    Examples
    --------
    >>> [padded_source(q, 4, 2, "reflect") for q in range(8)]
    [2, 1, 0, 1, 2, 3, 2, 1]
    >>> [padded_source(q, 4, 1, "zeros") for q in range(6)]
    [None, 0, 1, 2, 3, None]
    >>> [padded_source(q, 3, 0, "replicate", after=2) for q in range(5)]
    [0, 1, 2, 2, 2]
    """
    if mode not in PADDING_MODES:
        raise InvalidArgumentError(f"unknown padding mode {mode!r}; use one of {PADDING_MODES}")
    widest = padding if after is None else max(padding, after)
    if mode == "reflect" and widest >= length:
        raise InvalidArgumentError(f"reflect padding {widest} needs an input longer than {widest}, got {length}")
    if mode == "circular" and widest > length:
        raise InvalidArgumentError(f"circular padding {widest} cannot exceed the input length {length}")
    i = position - padding
    if 0 <= i < length:
        return i
    if mode == "zeros":
        return None
    if mode == "circular":
        return i % length
    if mode == "replicate":
        return min(max(i, 0), length - 1)
    return -i if i < 0 else 2 * (length - 1) - i  # reflect, edge not repeated


def conv_output_length(length: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Return the output length of a torch convolution or pooling along one axis.

    Examples
    --------
    >>> conv_output_length(32, kernel=3, stride=2, padding=1)
    16
    """
    return (length + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _with_output(G: nx.MultiDiGraph, last_layer: Sequence) -> tuple:
    G.add_edges_from((v, OUTPUT) for v in last_layer)
    return G, OUTPUT


def fully_connected_dag(widths: Sequence[int], multiplicity: int = 1) -> tuple:
    """Return the DAG of a fully connected net with the given layer widths.

    Parameters
    ----------
    widths : sequence of int
        ``[d, h_1, ..., h_L]``: inputs then hidden layers; the output ``"o"`` is
        connected to every node of the last layer.
    multiplicity : int, default 1
        Number of parallel edges between each connected pair.

    Returns
    -------
    (networkx.MultiDiGraph, "o")

    Examples
    --------
    >>> G, o = fully_connected_dag([3, 2])
    >>> G.number_of_edges(), G.in_degree(o)
    (8, 2)
    """
    if not widths or min(widths) < 1 or multiplicity < 1:
        raise InvalidArgumentError(f"widths must be positive and multiplicity >= 1, got {widths!r}, {multiplicity}")
    G = nx.MultiDiGraph()
    layers = [[(k, 0, i) for i in range(w)] for k, w in enumerate(widths)]
    G.add_nodes_from(layers[0])
    for below, above in zip(layers, layers[1:]):
        G.add_edges_from((u, v) for v in above for u in below for _ in range(multiplicity))
    return _with_output(G, layers[-1])


def conv1d_dag(
    length: int,
    layers: Sequence[dict],
    *,
    in_channels: int = 1,
    padding_mode: str = "zeros",
) -> tuple:
    """Return the DAG of a stack of 1-d convolutions, as torch computes them.

    Parameters
    ----------
    length : int
        Input length.
    layers : sequence of dict
        One dict per convolution with keys ``kernel`` (required), ``stride``,
        ``padding``, ``dilation`` (default 1, 0, 1) and ``channels`` (output
        channels, default 1).  Every output channel sees every input channel.
    in_channels : int, default 1
        Input channels.
    padding_mode : {"zeros", "circular", "reflect", "replicate"}
        Reflect and replicate padding fold taps onto existing inputs, which
        makes parallel edges; zero padding drops them.

    Returns
    -------
    (networkx.MultiDiGraph, "o")

    Raises
    ------
    ValueError
        If a layer would have no output position, or the padding is invalid.

    Examples
    --------
    Kernel 3, stride 2, circular padding 1 on 4 inputs: every input is read
    by one or two taps, so (S) fails (the paper's stride-2, 3x3 example).

    >>> from pathstats.dag.symmetry import is_symmetric
    >>> G, o = conv1d_dag(4, [dict(kernel=3, stride=2, padding=1)], padding_mode="circular")
    >>> is_symmetric(G, o)
    False
    >>> G, o = conv1d_dag(4, [dict(kernel=4, stride=2, padding=1)], padding_mode="circular")
    >>> is_symmetric(G, o)
    True
    """
    G = nx.MultiDiGraph()
    channels, size = in_channels, length
    previous = [[(0, c, i) for i in range(size)] for c in range(channels)]
    G.add_nodes_from(v for row in previous for v in row)
    for k, spec in enumerate(layers, start=1):
        kernel = spec["kernel"]
        stride, padding, dilation = spec.get("stride", 1), spec.get("padding", 0), spec.get("dilation", 1)
        out_channels = spec.get("channels", 1)
        out_size = conv_output_length(size, kernel, stride, padding, dilation)
        if out_size < 1:
            raise InvalidArgumentError(f"layer {k}: kernel {kernel} (dilation {dilation}) does not fit input length {size} with padding {padding}")
        taps = [
            [padded_source(j * stride + t * dilation, size, padding, padding_mode) for t in range(kernel)]
            for j in range(out_size)
        ]
        current = [[(k, c, j) for j in range(out_size)] for c in range(out_channels)]
        for c_out in range(out_channels):
            for j in range(out_size):
                G.add_edges_from(
                    (previous[c_in][i], current[c_out][j])
                    for c_in in range(channels)
                    for i in taps[j]
                    if i is not None
                )
        previous, channels, size = current, out_channels, out_size
    return _with_output(G, [v for row in previous for v in row])


def random_layered_dag(
    n_layers: int,
    width: int,
    fan_in: int,
    *,
    skip_prob: float = 0.0,
    parallel_prob: float = 0.0,
    seed: int | None = None,
) -> tuple:
    """Return a random layered DAG with skip connections and parallel edges.

    Parameters
    ----------
    n_layers : int
        Number of layers above the inputs.
    width : int
        Nodes per layer, inputs included.
    fan_in : int
        In-edges each hidden node draws from the layer below (with replacement,
        so a repeated draw is a parallel edge).
    skip_prob : float, default 0
        Probability that each in-edge comes instead from a uniformly chosen
        earlier layer (a skip connection).
    parallel_prob : float, default 0
        Probability that each edge is doubled.
    seed : int or None
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    (networkx.MultiDiGraph, "o")
        About ``n_layers * width * fan_in * (1 + parallel_prob)`` edges.

    Examples
    --------
    >>> G, o = random_layered_dag(3, 4, 2, skip_prob=0.3, parallel_prob=0.2, seed=0)
    >>> from pathstats.dag import lemma7_total
    >>> lemma7_total(G, o)
    Fraction(1, 1)
    """
    if n_layers < 1 or width < 1 or fan_in < 1:
        raise InvalidArgumentError("n_layers, width and fan_in must be >= 1")
    rng = np.random.default_rng(seed)
    G = nx.MultiDiGraph()
    G.add_nodes_from((0, 0, i) for i in range(width))
    for k in range(1, n_layers + 1):
        source_layer = np.where(rng.random((width, fan_in)) < skip_prob, rng.integers(0, k, (width, fan_in)), k - 1)
        source_index = rng.integers(0, width, (width, fan_in))
        doubled = rng.random((width, fan_in)) < parallel_prob
        G.add_edges_from(
            ((int(source_layer[j, t]), 0, int(source_index[j, t])), (k, 0, j))
            for j in range(width)
            for t in range(fan_in)
            for _ in range(1 + int(doubled[j, t]))
        )
    return _with_output(G, [(n_layers, 0, j) for j in range(width)])


#: Named example DAGs for ``pathstats dag --example NAME``: (description, builder).
EXAMPLES: dict[str, tuple[str, Callable[[], tuple]]] = {
    "fc": (
        "fully connected net 4-3-3 -> o: (S) holds, S(x) = 1/4",
        lambda: fully_connected_dag([4, 3, 3]),
    ),
    "conv1d-circular": (
        "two 1-d convolutions, kernel 3, circular padding, 8 inputs: (S) holds",
        lambda: conv1d_dag(8, [dict(kernel=3, padding=1)] * 2, padding_mode="circular"),
    ),
    "conv1d-reflect": (
        "two 1-d convolutions, kernel 3, reflect padding, 8 inputs: parallel edges, (S) fails",
        lambda: conv1d_dag(8, [dict(kernel=3, padding=1)] * 2, padding_mode="reflect"),
    ),
    "conv1d-zeros": (
        "two 1-d convolutions, kernel 3, zero padding, 8 inputs: border inputs get less",
        lambda: conv1d_dag(8, [dict(kernel=3, padding=1)] * 2, padding_mode="zeros"),
    ),
    "conv1d-stride2": (
        "1-d convolution, kernel 3, stride 2, circular padding, 8 inputs: (S) fails",
        lambda: conv1d_dag(8, [dict(kernel=3, stride=2, padding=1)], padding_mode="circular"),
    ),
    "random": (
        "random layered DAG, 4 layers of 6, fan-in 3, skips and parallel edges (seed 0)",
        lambda: random_layered_dag(4, 6, 3, skip_prob=0.25, parallel_prob=0.2, seed=0),
    ),
}
