"""The layer-level engine: the backward recursion of :mod:`pathstats.dag` on arrays.

Instead of one value per neuron, each traced tensor holds an array of values
(with size-1 axes where nodes are exchangeable), and each rule moves the values
of its outputs onto its inputs in one vectorised step.  The recursion and its
semantics are those of :func:`pathstats.dag.weighted_path_sums` on the neuron
DAG, which the tests check on small networks.
"""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass, field

from . import moments
from .algebra import ExactAlgebra, FloatAlgebra, ModularAlgebra
from ..errors import InvalidArgumentError
from .rules import COVARIANCE_POSITIONS, Note
from .trace import LayerGraph

__all__ = ["WEIGHTINGS", "backward_map", "path_count_map", "fingerprint_maps", "count_classes", "ForwardLaws",
           "propagate_laws", "model_map", "merge_notes"]

#: What each weighting multiplies a node (``node``) and a pointwise layer (``gain``) by.
#: ``path_sum``: the combinatorial S(x), ``c_v = 1/d_v``.  ``count``: ``c_v = 1``.
#: ``theory``: the paper's (H)/(H').  ``model``: the path-sum form of model mode with
#: marginal gains (ReLU 1/2, uniform max-pool routing), checked edge by edge against
#: the DAG engine; :func:`model_map`, which :func:`pathstats.predict` uses, replaces
#: those gains by the ones the forward laws give.
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
    raise InvalidArgumentError(f"unknown weighting {weighting!r}")


def _gain(rule, weighting: str, algebra):
    if weighting in ("theory", "model"):
        return rule.gain(weighting, algebra)
    return algebra.cast(1)


def backward_map(graph: LayerGraph, weighting: str, algebra=None, *, logit: int = 0, table=None, bar=None) -> np.ndarray:
    """Return ``sum_p prod_v c_v`` from every input coordinate to one logit.

    Parameters
    ----------
    graph : LayerGraph
        The traced network (:func:`pathstats.layer_engine.trace.read_model`).
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
    unit = np.zeros(graph.classes, dtype=np.int64)
    unit[logit] = 1

    def step(name, rule, state):
        if rule.kind == "node":
            return rule.backward(algebra.mul(state, _node_factor(rule, weighting, algebra, table)), algebra)
        if rule.kind == "pointwise":
            return [algebra.mul(state, _gain(rule, weighting, algebra))]
        if rule.kind == "concat":
            return rule.backward(state)
        return [rule.backward(state)]

    result = graph.backward(algebra.cast(unit), step, algebra.add, bar)
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
    ``G_x(t) = sum_p prod_{v in p, v != x} t_{d_v}`` (see :mod:`pathstats.dag.symmetry`).
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


# ------------------------------------------------------------------ model mode
@dataclass
class ForwardLaws:
    """The forward pass of model mode: every traced tensor's law at initialisation.

    Attributes
    ----------
    laws : dict
        Tensor name -> :class:`pathstats.layer_engine.moments.Law`.
    contexts : dict
        Tensor name -> what its rule's :meth:`law_backward` needs.
    gates : dict
        Gate layer name -> mean ``P(input > 0)`` over its units.
    routing : dict
        Max-pooling layer name -> ``{"open_argmax", "uniform", "window"}``: the mean
        probability that a member is its window's arg-max with a positive value,
        and the uniform routing's ``P(value > 0) / n``.
    notes : list of Note
        Approximate laws that a gate or a max pool reads.
    """

    laws: dict
    contexts: dict
    gates: dict = field(default_factory=dict)
    routing: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def propagate_laws(graph: LayerGraph) -> ForwardLaws:
    """Run the network's laws forward from ``x ~ N(0, I)`` (each rule's ``law_forward``).

    The graph is not changed; the result maps each tensor to its law.

    Examples
    --------
    >>> from torch import nn
    >>> from pathstats.layer_engine.trace import read_model
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.ReLU(), nn.Linear(8, 2))
    >>> forward = propagate_laws(read_model(net, (4,), init="he"))
    >>> forward.gates                        # the second ReLU reads non-negative values
    {'1': 0.5, '2': 0.5}
    """
    source = moments.gaussian_law(np.ones((1,) * len(graph.input_shape)), rho=0.0)  # x ~ N(0, I)
    source.independent = True
    contexts, gates, routing, notes, seen = {}, {}, {}, [], set()

    def step(name, rule, inputs):
        reads_law = getattr(rule, "is_gate", False) or getattr(rule, "category", None) == "maxpool"
        for law in inputs:
            if reads_law and law.caveat and law.caveat not in seen:
                seen.add(law.caveat)
                layer, _, text = law.caveat.partition(": ")
                notes.append(Note(layer, text + f", and {rule.name} reads that law"))
        law, contexts[name] = rule.law_forward(inputs)
        if getattr(rule, "is_gate", False):
            gates[rule.name] = float(inputs[0].positive().mean())
        if hasattr(rule, "law_notes"):
            notes.extend(rule.law_notes(inputs))
        if getattr(rule, "category", None) == "maxpool":
            routing[rule.name] = _routing_summary(rule, inputs[0], contexts[name])
        return law

    laws = graph.forward(source, step)
    return ForwardLaws(laws, contexts, gates, routing, merge_notes(notes))


def merge_notes(notes: list) -> list:
    """One note per assumption: layers that repeat it are counted on the first one."""
    first, count = {}, {}
    for note in notes:
        key = (note.assumption, note.effect)
        first.setdefault(key, note)
        count[key] = count.get(key, 0) + 1
    return [note if count[key] == 1 else Note(f"{note.layer} and {count[key] - 1} more", note.assumption, note.effect)
            for key, note in first.items()]


def _routing_summary(rule, law, context) -> dict:
    """Mean over the members of a max pool's windows of ``P(it is the arg-max and its value is > 0)``,
    beside the uniform routing's ``P(value > 0) / n``."""
    members, routing = context
    channels = law.probs.shape[0]
    flat = law.broadcast((channels,) + tuple(rule.in_shapes[0][1:])).probs.reshape(channels, -1, len(law.values))
    valid = members >= 0
    p = flat[:, np.where(valid, members, 0)] * (law.values > 0)
    won = (p * routing).sum(axis=-1)[:, valid].mean()
    uniform = (p.sum(axis=-1) / valid.sum(axis=1)[None, :, None])[:, valid].mean()
    return {"open_argmax": float(won), "uniform": float(uniform), "window": int(valid.sum(axis=1).max())}


def model_map(graph: LayerGraph, forward: ForwardLaws | None = None, *, logit: int = 0,
              covariance_between_positions: bool = True) -> np.ndarray:
    """Model mode: ``E[(do/dx)^2]`` per input coordinate, gates from the forward laws.

    The recursion of :func:`backward_map` carries, instead of one number per
    unit, the joint moment ``B(u, a) = E[delta_u^2 ; value_u = a]`` over the
    value grid of the unit's law (:mod:`pathstats.layer_engine.moments`); each rule's
    ``law_backward`` moves it one layer down.  Summing over ``a`` at the input
    gives the map.

    Parameters
    ----------
    graph : LayerGraph
        The traced network.
    forward : ForwardLaws, optional
        From :func:`propagate_laws` (computed if not given).
    logit : int, default 0

    Examples
    --------
    >>> from torch import nn
    >>> from pathstats.layer_engine.trace import read_model
    >>> graph = read_model(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.ReLU(), nn.Linear(8, 2)), (4,), init="he")
    >>> round(float(model_map(graph).sum()), 6)    # He: 4 inputs * 2/4 * 8 units * 1/2 (one gate, not two) * 2/8
    2.0
    """
    forward = forward or propagate_laws(graph)
    out_law = forward.laws[graph.output_name]
    unit = np.zeros((graph.classes, 1))
    unit[logit] = 1.0
    dropped = []

    # The state of a tensor: the joint moment B (a Joint) and the covariance of the gradient
    # between distinct positions of a channel (None: zero), both summed over its consumers.
    def step(name, rule, state):
        joint, off = state
        inputs = [forward.laws[o] for o in rule.operands]
        contributions = rule.law_backward(joint, inputs, forward.laws[name], forward.contexts[name])
        covariance = None
        if covariance_between_positions:
            covariance = (rule.max_cov_backward(off, inputs, forward.contexts[name]) if getattr(rule, "category", None) == "maxpool"
                          else rule.cov_backward(off, joint.total(), inputs))
        if covariance is None:
            if off is not None or covariance_between_positions:
                dropped.extend([rule.name] if off is not None or getattr(rule, "category", None) == "avgpool" else [])
            covariance = ([None] * len(rule.operands), [None] * len(rule.operands))
        out = []
        for k, contribution in enumerate(contributions):
            new_off, extra = covariance[0][k], covariance[1][k]
            if extra is not None:
                extra = np.asarray(extra).reshape((1,) + tuple(rule.in_shapes[k][1:]))
                contribution = contribution + moments.Joint(extra, inputs[k].probs)
            out.append((contribution, new_off))
        return out

    def add(a, b):
        return a[0] + b[0], (a[1] if b[1] is None else b[1] if a[1] is None else a[1] + b[1])

    final = graph.backward((moments.Joint(unit[:, 0], out_law.probs), None), step, add)
    result = None if final is None else final[0].total()
    if dropped:
        forward.notes.append(Note(dropped[0] + (f" and {len(dropped) - 1} more" if len(dropped) > 1 else ""),
                                  "the covariance of the gradient between positions of a channel is dropped here "
                                  f"(more than {COVARIANCE_POSITIONS} positions per channel, or a layer that cannot carry "
                                  "it: max pooling, flatten, a gate on channels whose laws differ after a concatenation); "
                                  "paths that share a weight are then taken as independent"))
    if result is None:
        return np.zeros(graph.input_shape)
    return np.array(np.broadcast_to(result, graph.input_shape))
