"""The layer-level engine: the backward recursion of :mod:`pathstats.dag` on arrays.

Instead of one value per neuron, each traced tensor holds an array of values
(with size-1 axes where nodes are exchangeable), and each rule moves the values
of its outputs onto its inputs in one vectorised step.  The recursion and its
semantics are those of :func:`pathstats.dag.weighted_path_sums` on the neuron
DAG, which the tests check on small networks.
"""

from __future__ import annotations

import numpy as np

from .algebra import ExactAlgebra, FloatAlgebra, ModularAlgebra
from .trace import LayerGraph

__all__ = ["WEIGHTINGS", "backward_map", "path_count_map", "fingerprint_maps", "count_classes"]

#: What each weighting multiplies a node (``node``) and a pointwise layer (``gain``) by.
#: ``path_sum``: the combinatorial S(x), ``c_v = 1/d_v``.  ``count``: ``c_v = 1``.
#: ``theory`` and ``model``: SPEC section 3.
WEIGHTINGS = ("path_sum", "count", "theory", "model")


def _node_factor(rule, weighting: str, algebra, table=None):
    if weighting == "path_sum":
        return algebra.reciprocal(rule.in_degree())
    if weighting == "count":
        return algebra.cast(1)
    if weighting == "theory":
        return rule.theory_factor(algebra)
    if weighting == "model":
        return rule.model_factor(algebra)
    if weighting == "fingerprint":
        degree = rule.in_degree()
        return algebra.cast(np.vectorize(table.__getitem__, otypes=[np.int64])(degree))
    raise ValueError(f"unknown weighting {weighting!r}")


def _gain(rule, weighting: str, algebra):
    if weighting in ("theory", "model"):
        return rule.gain(weighting, algebra)
    return algebra.cast(1)


def backward_map(graph: LayerGraph, weighting: str, algebra=None, *, logit: int = 0, table=None, bar=None) -> np.ndarray:
    """Return ``sum_p prod_v c_v`` from every input coordinate to one logit.

    Parameters
    ----------
    graph : LayerGraph
        The traced network (:func:`pathstats.trace.read_model`).
    weighting : {"path_sum", "count", "theory", "model", "fingerprint"}
        Which node factors and pointwise gains to use (see :data:`WEIGHTINGS`).
    algebra : FloatAlgebra, ExactAlgebra or ModularAlgebra, optional
        The arithmetic; float64 by default.
    logit : int, default 0
        The output ``o``; all logits of a randomly initialised net are alike.
    table : mapping, optional
        For ``"fingerprint"``: the residue ``t_d`` of each in-degree ``d``.
    bar : progress bar, optional
        Advanced by one per traced layer (:func:`pathstats.progress.progress`);
        a whole pass is ``len(graph.rules)``.

    Returns
    -------
    numpy.ndarray
        An array of the input's shape (no batch axis).

    Raises
    ------
    AssumptionError
        In theory mode, on a layer outside (H)/(H').

    Notes
    -----
    One visit per traced node in reverse topological order; a convolution costs
    two sparse products per spatial axis (``O(k n)`` per row), so a whole net
    costs about ``sum_layers k * H * W`` operations whatever its channel count.
    """
    algebra = algebra or FloatAlgebra()
    values: dict = {}
    unit = np.zeros(graph.classes, dtype=np.int64)
    unit[logit] = 1
    values[graph.output_name] = algebra.cast(unit)
    result = None
    for name in reversed(list(graph.rules)):
        if bar is not None:
            bar.update(1)
        state = values.pop(name, None)
        if state is None:
            continue  # this tensor does not reach the logit
        rule = graph.rules[name]
        if rule is None:
            result = state
            continue
        if rule.kind == "node":
            entered = algebra.mul(state, _node_factor(rule, weighting, algebra, table))
            contributions = rule.backward(entered, algebra)
        elif rule.kind == "pointwise":
            contributions = [algebra.mul(state, _gain(rule, weighting, algebra))]
        else:
            contributions = [rule.backward(state)]
        for operand, contribution in zip(rule.operands, contributions):
            values[operand] = contribution if operand not in values else algebra.add(values[operand], contribution)
    if result is None:
        return np.zeros(graph.input_shape, dtype=algebra.cast(0).dtype)
    return np.array(np.broadcast_to(result, graph.input_shape))


def path_count_map(graph: LayerGraph, bar=None) -> np.ndarray:
    """Exact ``|P(x, o)|`` per input coordinate, as an object array of Python ints."""
    return backward_map(graph, "count", ExactAlgebra(), bar=bar)


#: Primes below 2**31 for the fingerprints of (S).
FINGERPRINT_PRIMES = (2147483647, 2147483629, 2147483587, 2147483579)


def fingerprint_maps(graph: LayerGraph, seed: int = 0, bar=None) -> np.ndarray:
    """Fingerprints of each input's multiset of path-degrees, shape ``(4,) + input_shape``.

    The multiset of path-degrees of ``x`` is the polynomial
    ``G_x(t) = sum_p prod_{v in p, v != x} t_{d_v}`` (see :mod:`pathstats.symmetry`).
    Each fingerprint evaluates it at a random point modulo a prime ``p`` below
    ``2**31``.  Equal multisets give equal fingerprints; by the Schwartz-Zippel
    lemma two different ones agree on one fingerprint with probability at most
    ``depth / p < 1e-8``, on all four with probability below ``1e-32``.

    Parameters
    ----------
    graph : LayerGraph
        The traced network.
    seed : int, default 0
        Seed of the random evaluation points.
    bar : progress bar, optional
        Advanced by one per traced layer of each of the four passes.
    """
    rng = np.random.default_rng(seed)
    degrees = sorted({int(d) for rule in graph.node_rules() for d in np.unique(rule.in_degree())})
    maps = []
    for prime in FINGERPRINT_PRIMES:
        table = dict(zip(degrees, rng.integers(1, prime, len(degrees)).tolist()))
        maps.append(backward_map(graph, "fingerprint", ModularAlgebra(prime), table=table, bar=bar))
    return np.stack(maps)


def count_classes(fingerprints: np.ndarray) -> int:
    """Number of distinct inputs' fingerprints: the symmetry classes of (S).

    Parameters
    ----------
    fingerprints : numpy.ndarray
        ``(4,) + input_shape`` from :func:`fingerprint_maps`.

    Notes
    -----
    The four residues (each below ``2**31``) pack into two int64 keys without
    loss, and one lexicographic sort of the keys counts the distinct pairs:
    ``O(d log d)``, a fraction of a second for ``d = 3 * 1024**2``.

    Examples
    --------
    >>> count_classes(np.array([[1, 1, 2], [5, 5, 5], [7, 7, 7], [0, 0, 0]]))
    2
    """
    flat = np.asarray(fingerprints, dtype=np.int64).reshape(4, -1)
    high, low = (flat[0] << 31) | flat[1], (flat[2] << 31) | flat[3]
    order = np.lexsort((low, high))
    high, low = high[order], low[order]
    return 1 + int(((high[1:] != high[:-1]) | (low[1:] != low[:-1])).sum())
