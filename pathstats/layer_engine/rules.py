"""Layer rules: one torch layer, its DAG fragment and its step of the recursion.

A rule is made once from a traced layer (its module, input and output shapes)
and yields everything the engines need, so no second description of a network
exists:

* the neuron-level DAG fragment (:meth:`NodeRule.edges`), which the generic
  engine of :mod:`pathstats.dag` checks the layer engine against;
* the in-degree of every output neuron, parallel edges counted;
* the node factor of each prediction mode (``1/d_v``, a weight variance, ...);
* the backward step on arrays (:meth:`NodeRule.backward`).

Kinds of rule:

``NodeRule``
    The layer's outputs are DAG nodes, weighted sums of its inputs: convolutions,
    linear layers, poolings, additions, nearest up-sampling.
``PointwiseRule``
    One-to-one maps that the paper folds into the neuron (ReLU, eval-mode
    BatchNorm, Dropout): no node, a gain on the edges that leave through them.
``ReshapeRule``
    Flatten / view: a relabelling of neurons.

Arrays of values have the tensor's shape without the batch axis; any axis may
have size 1 when all nodes along it hold the same value (channels are
exchangeable at initialisation, so the channel axis usually is).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import scipy.sparse as sp
from scipy import special
import torch
from torch import nn

from . import moments
from .algebra import FloatAlgebra
from ..errors import AssumptionError, InvalidArgumentError, ResourceError, UnsupportedLayerError
from ..dag.generators import padded_source
from .moments import centre
from .geometry import (COVARIANCE_POSITIONS, _channel_field, _csr, _kron_all, _outer, _overlapping, _row_counts,
                       _sandwich, _split, _taps, adaptive_axis, axis_forward, conv_axis, pool_axis)
from .notes import EFFECTS, MODEL_MODE, Note

__all__ = [
    "Note",
    "GateDeferred",
    "MODEL_MODE",
    "EFFECTS",
    "axis_forward",
    "UnsupportedLayerError",
    "AssumptionError",
    "NodeRule",
    "PointwiseRule",
    "ReshapeRule",
    "ConcatRule",
    "ConvRule",
    "LinearRule",
    "PoolRule",
    "AddRule",
    "UpsampleRule",
    "ScaleRule",
    "Scale",
    "conv_axis",
    "pool_axis",
    "adaptive_axis",
]


_FLOAT = FloatAlgebra()

# --------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class GateDeferred:
    """The covariance of the gradient between positions at a first layer's gates, their pair gain not yet applied.

    Two gates of one channel read ``w.a_p`` and ``w.a_q`` with the same weights
    ``w``, which also carry the gradient to the input: the pair's factor is
    ``E[w w^T g_p g_q]``, not ``E[w w^T] E[g_p g_q]``
    (:func:`pathstats.layer_engine.moments.wedge_moment`), so the gate leaves it to the
    layer below (:meth:`ConvRule.cov_backward`).  ``gain`` is the independent
    pair gain, which a rule that does not apply the exact factor uses
    (:meth:`resolved`); ``first_order`` the coefficient of the correlation
    ``rho_pq`` of the two gates' inputs in their pair gain: ``(1 - slope)^2 / (2 pi)``
    for a ReLU or LeakyReLU gate (``arcsin(rho) / (2 pi)`` to first order), and
    ``sigma^2 E[f''(z)]^2`` for a smooth activation ``f`` on inputs of variance
    ``sigma^2`` (Price's theorem: ``d E[f'(u) f'(v)] / d cov = E[f''(u) f''(v)]``; a ReLU's
    ``f''`` is the density at 0, which gives the gate's coefficient back).
    """

    off: np.ndarray
    first_order: float
    gain: float

    def resolved(self) -> np.ndarray:
        """The covariance after the gates, taken as independent of the weights below."""
        return self.gain * self.off

    def __rmul__(self, factor: float) -> "GateDeferred":  # a shift-free affine layer between the layer and its gates
        return GateDeferred(factor * self.off, self.first_order, self.gain)

    def __add__(self, other):  # two consumers: the exact factor is lost, noted by the independent pair gain
        return self.resolved() + (other.resolved() if isinstance(other, GateDeferred) else other)

    __radd__ = __add__


@dataclass
class NodeRule:
    """A layer whose outputs are DAG nodes.

    Subclasses set ``operands`` (names of the input tensors), ``in_shapes`` and
    ``out_shape`` (without batch axis) and implement :meth:`in_degree`,
    :meth:`backward` and :meth:`edges`.
    """

    name: str
    layer: str  # what the user wrote, e.g. "Conv2d(3, 64, kernel_size=(3, 3))"
    operands: list
    in_shapes: list
    out_shape: tuple
    #: "random" (He-type random weights), "avgpool" (deterministic 1/a), "maxpool",
    #: "add", "upsample": the theory-mode category of the nodes.
    category: str = "random"
    variance: float | None = None  # model mode weight variance (random layers)
    notes: list = field(default_factory=list)

    kind = "node"

    def in_degree(self) -> np.ndarray:
        raise NotImplementedError

    def theory_factor(self, algebra) -> Any:
        """``c_v`` of theory mode: ``1/d_v`` (random) or ``1/a_v**2`` (average pooling)."""
        degree = self.in_degree()
        if self.category in ("random", "upsample"):
            return algebra.reciprocal(degree)
        if self.category == "avgpool":
            return algebra.reciprocal(degree * degree)
        raise AssumptionError(
            f"theory mode: {self.layer} at {self.name!r} is outside the paper's assumptions (H'); "
            f"use --mode model, which {MODEL_MODE[self.category]}"
        )

    def model_factor(self, algebra) -> Any:
        """``c_v`` of model mode: the squared weight of the node's in-edges (expected)."""
        return algebra.cast(self.variance)

    def backward(self, entered: np.ndarray, algebra) -> list:
        """Contributions ``sum_{(u -> v)} entered[v]`` to each operand's neurons ``u``."""
        raise NotImplementedError

    def cov_backward(self, off: np.ndarray | None, total: np.ndarray, laws: list) -> tuple | None:
        """The covariance of the gradient between distinct positions of a channel, one layer down.

        ``off`` is the off-diagonal part (positions x positions, zero diagonal;
        None: zero) at the outputs, ``total`` the diagonal (``B.total()``).
        Returns, per operand, the off-diagonal part at its inputs and what it
        adds to their diagonal (None: nothing), or None where this layer cannot
        carry it (the engine then drops it and says so).  This default: a
        layer that carries no covariance and makes none.
        """
        return None if off is not None else ([None] * len(self.operands), [None] * len(self.operands))

    def edges(self) -> Iterator[tuple]:
        """Yield ``(operand, in_index, out_index, multiplicity)`` with flat indices."""
        raise NotImplementedError

    def forward_sum(self, values: np.ndarray) -> np.ndarray:
        """``sum_{(u -> v)} values[u]`` for every output ``v``, parallel edges counted (the transpose of :meth:`backward`)."""
        raise NotImplementedError

    def law_forward(self, laws: list) -> tuple:
        """The law of the outputs at initialisation, ``(Law, context)``; ``context`` goes to :meth:`law_backward`.

        Random weights (this default): an output is a sum over its in-edges of
        independent zero-mean weights times inputs, so (central limit, infinite
        width) a centred Gaussian of variance ``sigma_w^2 sum_u E[h_u^2]``,
        whatever the inputs' laws (non-negative ReLU outputs included: the
        weights' zero mean makes the inputs' means drop out of the mean and
        enter the variance only through ``E[h^2]``).  Two outputs of one
        channel share the weights tap by tap, so their covariance is
        ``sigma_w^2 sum_taps E[h_{p+t} h_{q+t}]``: with distinct inputs' moment
        ``c_off E[h^2]`` it is ``sigma_w^2 C k c_off E[h^2]`` (the NNGP
        recursion, interior): the output's latent correlation is ``c_off``.  Limit: the width is
        finite, so the output is a scale mixture of Gaussians (its variance
        fluctuates with the layer below); the effect is ``O(1/width)``.
        """
        law = laws[0]
        variance = self.variance * self.forward_sum(law.second_moment())
        rho = None
        if law.c_off is not None and variance.ndim > 1:  # spatial units: their correlation, interior
            rho = law.c_off
        out = moments.gaussian_law(np.sqrt(variance), rho=rho)
        if moments.independent_centred(law):  # a first layer: its units' variance |w|^2 fluctuates over this fan-in
            out.fan_in = int(np.max(self.in_degree()))
        return out, None

    def law_backward(self, B: "moments.Joint", laws: list, out_law, context) -> list:
        """The value-conditional backward step: ``B_in(u, a) = p_in(u, a) * step(sum_c B_out(v, c))``.

        ``B(u, a) = E[delta_u^2 ; value_u = a]`` (see :mod:`pathstats.layer_engine.moments`).
        Through random weights the gradient that reaches ``u`` does not depend
        on ``u``'s own value: in the infinite-width limit one input moves no
        downstream gate (gradient independence).  Same for the deterministic
        weights of average pooling, where the limit is not reached: the gates
        of the units of one window share the kernel's weights, and the cross
        terms between paths through them remain (the prediction notes them).
        """
        entered = B.total() * self.model_factor(_FLOAT)
        return [moments.Joint(c, law.probs) for c, law in zip(self.backward(entered, _FLOAT), laws)]


@dataclass
class ConvRule(NodeRule):
    """``Conv1d``/``Conv2d``/``Conv3d``: random weights, any stride, dilation, groups, padding mode."""

    groups: int = 1
    axes: list = field(default_factory=list)  # one count matrix per spatial axis
    taps_valid: list = field(default_factory=list)  # per axis: (n_out, kernel) bool, the tap reads an input
    geometry: list = field(default_factory=list)  # per axis: (n, kernel, stride, left, dilation, mode, n_out)

    def tap_matrices(self) -> list:
        """One map per kernel tap on flattened positions: ``A_k[q, p] = 1`` where tap ``k`` of output ``q`` reads ``p``."""
        per_axis = []
        for n, kernel, stride, left, dilation, mode, n_out in self.geometry:
            taps = []
            for t in range(kernel):
                sources = (padded_source(q * stride + t * dilation, n, left, mode) for q in range(n_out))
                taps.append(_csr([[i] if i is not None else [] for i in sources], n))
            per_axis.append(taps)
        return [_kron_all(combo) for combo in itertools.product(*per_axis)]

    def cov_backward(self, off, total, laws):
        """``C_in = sigma_w^2 (C_out / groups) sum_k A_k^T C_out A_k``: paths through one weight (one tap, one pair
        of channels) add coherently.  The diagonal of ``C_out`` maps onto the diagonal (a tap reads one input), so
        only the off-diagonal part is new; reflect and replicate padding fold two outputs onto one input through
        the same tap, which adds to the input's diagonal."""
        if off is None:
            return [None], [None]
        if math.prod(tuple(self.in_shapes[0][1:])) > COVARIANCE_POSITIONS:
            return None  # too many positions for a dense covariance: dropped, and the notes say so
        gated = off if isinstance(off, GateDeferred) else None
        if gated is not None:
            off = gated.resolved()
        scale = self.variance * (self.out_shape[0] // self.groups)
        cov = sum(_sandwich(a, off) for a in self.tap_matrices())
        new_off, diag = _split(scale * cov)
        if gated is not None:
            diag = diag + self.wedge_diagonal(gated)
        return [new_off], [diag]

    def sources(self) -> np.ndarray:
        """``(outputs, taps)``: the flat input position that each spatial tap of each output reads, ``-1`` where none."""
        per_axis = [np.array([[-1 if (i := padded_source(q * stride + t * dilation, n, left, mode)) is None else i
                               for t in range(kernel)] for q in range(n_out)], dtype=np.int64)
                    for n, kernel, stride, left, dilation, mode, n_out in self.geometry]
        spatial_in = tuple(self.in_shapes[0][1:])
        flat = np.zeros((1, 1), dtype=np.int64)
        valid = np.ones((1, 1), dtype=bool)
        for axis, src in enumerate(per_axis):  # C order: the last axis varies fastest, for outputs and taps alike
            flat = (flat[:, None, :, None] * spatial_in[axis] + np.maximum(src, 0)[None, :, None, :]).reshape(flat.shape[0] * src.shape[0], -1)
            valid = (valid[:, None, :, None] & (src >= 0)[None, :, None, :]).reshape(flat.shape)
        return np.where(valid, flat, -1)

    def wedge_diagonal(self, gated: GateDeferred) -> np.ndarray:
        """What a first layer's gates add to the gradient's second moment at each input position, beyond
        gates independent of the weights.

        With ``v_p`` the weights as they reach the inputs from output ``p``
        (a tap folded by reflect padding adds its weights), the pair ``(p, q)``
        of one channel contributes ``E[v_p(i) v_q(i) g_p g_q] D(p, q)`` to input
        ``i``, ``D`` the covariance of the gradient before the gates.  The
        inputs are independent centred Gaussians, so given the weights the two
        gates are open together with probability ``1/4 + arcsin(rho_pq)/(2 pi)``,
        ``rho_pq = v_p.v_q / (|v_p| |v_q|)`` (the wedge moment
        :func:`pathstats.layer_engine.moments.wedge_moment` averaged over the input); the
        ``1/4`` is the independent pair gain already applied, and what is new is
        ``(1 - slope)^2 E[v_p(i) v_q(i) arcsin(rho_pq)] / (2 pi)``, for a smooth activation
        ``E[v_p(i) v_q(i) rho_pq] sigma^2 E[f''(z)]^2`` (``GateDeferred.first_order``).  To first order in
        ``rho`` (``|v_p| |v_q|`` taken as its mean ``|w|^2 sqrt(m_p m_q) / k`` over the
        ``m`` valid of ``k`` taps), moments of a Gaussian vector on the sphere give, per pair
        of taps ``s`` of ``p`` and ``t`` of ``q`` that read ``i``,
        ``sigma^2 ([s = t] C_in tr_pq + 1 + [tap t of p and tap s of q read one input]) / (n + 2)``
        with ``n`` the fan-in and ``tr_pq`` the taps through which ``p`` and ``q`` read one
        input.  The rest of ``arcsin`` (``rho^3 / 6 + ...``) is a relative +0.5% of this
        term on a 3x3x3 kernel (measured by sampling the weights).  Vectorised over the
        ``(input, tap pair)`` list: ``O(d k^2)``.
        """
        src = self.sources()  # (P, k)
        positions, k = src.shape
        n_in = math.prod(tuple(self.in_shapes[0][1:]))
        c_in = self.in_shapes[0][0]
        out_pos, tap = np.nonzero(src >= 0)
        read = src[out_pos, tap]
        order = np.argsort(read, kind="stable")
        out_pos, tap, read = out_pos[order], tap[order], read[order]
        counts = np.bincount(read, minlength=n_in)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        slot = np.arange(len(read)) - starts[read]
        width = int(counts.max())
        table = np.full((n_in, width), -1, dtype=np.int64)  # the reads of each input: (output, tap) by index
        table[read, slot] = np.arange(len(read))
        first, second = table[:, :, None], table[:, None, :]
        mask = (first >= 0) & (second >= 0)
        a, b = np.broadcast_to(first, mask.shape)[mask], np.broadcast_to(second, mask.shape)[mask]
        p, q, s, t, i = out_pos[a], out_pos[b], tap[a], tap[b], read[a]
        keep = p != q
        p, q, s, t, i = p[keep], q[keep], s[keep], t[keep], i[keep]
        shared = ((src[p] == src[q]) & (src[p] >= 0)).sum(axis=1)  # taps through which p and q read one input
        crossed = (src[p, t] == src[q, s]) & (src[p, t] >= 0)
        valid_taps = (src >= 0).sum(axis=1).astype(np.float64)
        kappa = np.sqrt(valid_taps[p] * valid_taps[q]) / k
        fan_in = c_in * k
        coefficient = ((s == t) * c_in * shared + 1.0 + crossed) / (kappa * (fan_in + 2))
        off = np.asarray(gated.off)
        values = coefficient * off[p, q]
        scale = self.variance * self.out_shape[0] * gated.first_order
        return scale * np.bincount(i, weights=values, minlength=n_in)

    def law_forward(self, laws):
        """As :meth:`NodeRule.law_forward`, plus the correlation of each pair of outputs.

        Outputs ``p != q`` of one channel have covariance ``sigma_w^2 (C/groups)
        c_off sum_t E[h^2]`` over the ``n_common(p, q)`` taps that read an input
        for both (zero padding drops the others), and variances over their own
        ``n_p``, ``n_q`` taps: their latent correlation is ``c_off n_common /
        sqrt(n_p n_q)`` (inputs' second moments taken alike), which max pooling
        reads (``window_rho``): near zero-padded borders it is smaller than in
        the interior.  Limit: taps of two outputs that reflect onto one input
        read ``E[h^2]``.
        """
        out, context = super().law_forward(laws)
        out.wedge = self.groups == 1 and moments.independent_centred(laws[0])
        if out.rho is not None and self.taps_valid:
            shape = tuple(self.out_shape[1:])
            out.window_rho = lambda members: _window_correlation(self.taps_valid, shape, out.rho, members)
        return out, context

    def in_degree(self) -> np.ndarray:
        c_in = self.in_shapes[0][0]
        return (c_in // self.groups) * _outer([_row_counts(a) for a in self.axes])[None]

    def backward(self, entered, algebra):
        c_in, c_out = self.in_shapes[0][0], self.out_shape[0]
        if entered.shape[0] == 1:  # exchangeable channels: each input channel feeds c_out/groups
            state = algebra.mul(entered, algebra.cast(c_out // self.groups))
        else:
            grouped = entered.reshape((self.groups, c_out // self.groups) + entered.shape[1:])
            state = algebra.sum_keep(grouped, 1)[:, 0]
            state = state if self.groups == 1 else np.repeat(state, c_in // self.groups, axis=0)
        for axis, matrix in enumerate(self.axes, start=1):
            state = algebra.axis_backward(state, axis, matrix)
        return [state]

    def forward_sum(self, values):
        c_in, c_out = self.in_shapes[0][0], self.out_shape[0]
        if values.shape[0] == 1:
            state = values * (c_in // self.groups)
        else:
            grouped = values.reshape((self.groups, c_in // self.groups) + values.shape[1:]).sum(axis=1)
            state = np.repeat(grouped, c_out // self.groups, axis=0)
        for axis, matrix in enumerate(self.axes, start=1):
            state = axis_forward(state, axis, matrix)
        return state

    def edges(self):
        c_in, c_out = self.in_shapes[0][0], self.out_shape[0]
        per_group_in, per_group_out = c_in // self.groups, c_out // self.groups
        for q, source, multiplicity in _taps(self.axes):
            for co in range(c_out):
                g = co // per_group_out
                out_index = int(np.ravel_multi_index((co,) + q, self.out_shape))
                for ci in range(g * per_group_in, (g + 1) * per_group_in):
                    yield 0, int(np.ravel_multi_index((ci,) + source, self.in_shapes[0])), out_index, multiplicity


@dataclass
class LinearRule(NodeRule):
    """``Linear``: every input feeds every output through one random weight."""

    def in_degree(self):
        return np.array([self.in_shapes[0][0]], dtype=np.int64)

    def backward(self, entered, algebra):
        total = algebra.sum_keep(entered, 0)
        if entered.shape[0] == 1:
            total = algebra.mul(total, algebra.cast(self.out_shape[0]))
        return [total]

    def forward_sum(self, values):
        return np.array([np.broadcast_to(values, self.in_shapes[0]).sum()])

    def cov_backward(self, off, total, laws):
        """Distinct inputs reach each logit through distinct independent weights: no covariance between them."""
        return [None], [None]

    def edges(self):
        for j in range(self.out_shape[0]):
            for i in range(self.in_shapes[0][0]):
                yield 0, i, j, 1


@dataclass
class PoolRule(NodeRule):
    """Average, max and adaptive pooling, channel by channel.

    Average pooling has deterministic weights ``1/divisor`` (torch's divisor:
    the window clipped to the padded input with ``count_include_pad``, else the
    valid taps, or ``divisor_override``).

    Max pooling, in model mode, routes the gradient to the arg-max of each
    window (:meth:`law_forward`, :meth:`law_backward`).  The path-sum weightings
    (``path_sum``, ``count``, and the DAG form of ``model`` in
    :func:`pathstats.layer_engine.backward_map`) keep the uniform routing
    ``1/n``, the mean of the arg-max indicator of exchangeable members.
    """

    axes: list = field(default_factory=list)
    divisor: np.ndarray | None = None  # average pooling: per output position

    def in_degree(self):
        return _outer([_row_counts(a) for a in self.axes])[None]

    def model_factor(self, algebra):
        if self.category == "avgpool":
            return algebra.reciprocal(self.divisor * self.divisor)[None]
        return algebra.reciprocal(self.in_degree())  # max pooling: uniform routing

    def backward(self, entered, algebra):
        state = entered
        for axis, matrix in enumerate(self.axes, start=1):
            state = algebra.axis_backward(state, axis, matrix)
        return [state]

    def forward_sum(self, values):
        state = values
        for axis, matrix in enumerate(self.axes, start=1):
            state = axis_forward(state, axis, matrix)
        return state

    def cov_backward(self, off, total, laws):
        """Average pooling: ``C_in = P^T C_out P`` with ``P[r, p] = 1/divisor(r)`` for ``p`` in window ``r``: the
        inputs of one window get one upstream gradient (a global average pooling: all of them), so their gradients
        are correlated.  Max pooling: see :meth:`max_cov_backward`."""
        spatial_in, spatial_out = tuple(self.in_shapes[0][1:]), tuple(self.out_shape[1:])
        if self.category != "avgpool":
            return super().cov_backward(off, total, laws) if off is None else None
        if math.prod(spatial_in) > COVARIANCE_POSITIONS:
            return None
        P = sp.diags(1.0 / np.asarray(self.divisor, dtype=np.float64).ravel()) @ _kron_all(self.axes).astype(np.float64)
        diagonal = _channel_field(total, spatial_out)
        cov = _sandwich(P.tocsr(), np.diag(diagonal) + (0.0 if off is None else off))
        new_off, _ = _split(cov)
        extra = None if off is None else np.diag(_sandwich(P.tocsr(), off)).copy()
        return [new_off], [extra]

    def max_cov_backward(self, off: np.ndarray | None, laws: list, context) -> tuple | None:
        """Max pooling: ``C_in(p, q) = (pi_p / o) (pi_q / o) C_out(r, s)`` for members ``p`` of window ``r`` and
        ``q`` of another window ``s``; zero within a window (one winner).

        ``pi_p`` is the probability that ``p`` wins its window with a positive
        value where the members are ReLU outputs (else that it wins), and ``o``
        their probability of being open: the ReLU below multiplies the pair by
        its joint open probability, so the pair's factor is ``pi_p pi_q`` where
        the two gates are independent, more where they are correlated.  Limit:
        two windows' winners are taken as independent given the gates.
        """
        if off is None:
            return [None], [None]
        spatial_in = tuple(self.in_shapes[0][1:])
        if math.prod(spatial_in) > COVARIANCE_POSITIONS:
            return None
        members, routing = context
        law = laws[0]
        channels = routing.shape[0]
        p_in = law.broadcast((channels,) + spatial_in).probs.reshape(channels, -1, len(law.values))
        valid = members >= 0
        gathered = p_in[:, np.where(valid, members, 0)]
        relu = law.nonnegative()
        keep = (law.values > 0) if relu else np.ones(len(law.values), dtype=bool)
        pi = (gathered * routing)[..., keep].sum(axis=-1).mean(axis=0)  # (W, n)
        opened = float(centre(law.positive())) if relu else 1.0
        rows = np.repeat(np.arange(len(members)), members.shape[1])[valid.ravel()]
        R = sp.csr_matrix(((pi / opened)[valid], (rows, members[valid])), shape=(len(members), math.prod(spatial_in)))
        new_off, _ = _split(_sandwich(R, off))
        return [new_off], [None]

    def members(self) -> np.ndarray:
        """``(windows, n)`` flat input positions of each window (row-major output order), ``-1`` for none."""
        spatial_in = self.in_shapes[0][1:]
        windows: dict = {}
        for q, source, _ in _taps(self.axes):
            windows.setdefault(q, []).append(int(np.ravel_multi_index(source, spatial_in)) if source else 0)
        n = max(len(m) for m in windows.values())
        return np.array([m + [-1] * (n - len(m)) for _, m in sorted(windows.items())], dtype=np.int64)

    def law_forward(self, laws):
        """Average pooling: the mean and variance of the window's average; max pooling: the law of its maximum.

        Average pooling (deterministic weights ``1/a``): the output's mean is
        the average of the members' means and, taking the members as
        independent, its variance ``sum_j Var_j / a^2``; its law is taken as
        the Gaussian with these moments (central limit over the window).  Both
        are approximations where the members are correlated neighbours; the
        law matters only where a gate or a max pool reads it (the engine then
        notes it).

        Max pooling: :func:`pathstats.layer_engine.moments.max_law` on the window's
        members, independent given the common factor of their equicorrelated
        latent Gaussians (:func:`pathstats.layer_engine.moments.equicorrelation`), mixed
        over that factor; the context keeps, per member, the probability that
        it is the arg-max given its value.  Limits: the interior correlation
        is used at the borders too; two overlapping windows share members, so
        the moment of two outputs (``c_off``, from the product of conditional
        means) is that of disjoint windows.  A max pool right after a max
        pool reads maxima of disjoint windows, which are independent given the
        same common factor (the inner pool's ``factors``): a max of maxima is
        the max over the union of their windows (without it conv8's global max
        pooling predicted -34% against the Monte Carlo).  Where the input's
        correlation is unknown (a residual stream) the members are taken as
        independent (noted).
        """
        law = laws[0]
        channels = law.probs.shape[0]
        spatial_in, spatial_out = tuple(self.in_shapes[0][1:]), tuple(self.out_shape[1:])
        if self.category == "avgpool":
            mean = law.mean()
            out_mean = self.forward_sum(mean) / self.divisor[None]
            m2 = law.second_moment()
            roots, squares = self.forward_sum(np.sqrt(m2)), self.forward_sum(m2)
            if law.c_off is not None:  # sum_{i != j} E[h_i h_j]
                off = law.c_off * (roots**2 - squares)
            else:  # members taken as independent
                off = self.forward_sum(mean) ** 2 - self.forward_sum(mean**2)
            out_var = np.maximum((squares + off) / (self.divisor[None] ** 2) - out_mean**2, 0.0)
            rho = None
            if law.c_off is not None:  # two windows: all pairs distinct
                between = law.c_off * moments.centre(roots / self.divisor[None]) ** 2
                rho = (between - moments.centre(out_mean) ** 2) / max(moments.centre(out_var), 1e-300)
            out = moments.gaussian_law(np.sqrt(out_var), out_mean, rho=rho)
            if law.gauss is None:
                out.caveat = law.caveat or f"{self.name}: the average of non-Gaussian units is taken as the Gaussian of its mean and variance"
            return out, None
        members, g = self.members(), len(law.values)
        valid = members >= 0
        full = law.broadcast((channels,) + spatial_in)
        p_in = full.probs.reshape(channels, -1, g)[:, np.where(valid, members, 0)]
        if law.latent is not None and law.rho is not None:
            conditionals = moments.window_conditionals(full, members)
        elif law.factors is not None and _alike(law.probs):
            # a max pool's outputs: independent given the common factor of the units below (the factors are an
            # interior unit's laws, so only where every unit has that law: not near zero-padded borders)
            conditionals = ((w, np.broadcast_to(p, p_in.shape)) for w, p in law.factors)
        else:  # no correlation known: independent members
            probs, routing = moments.max_law(p_in, valid)
            return moments.Law(law.values, probs.reshape((channels,) + spatial_out + (g,)), None, law.caveat), (members, routing)
        probs, joint, factors = 0.0, 0.0, []
        centre = tuple(n // 2 for n in (channels,) + spatial_out)
        for weight, conditional in conditionals:
            out, routing = moments.max_law(conditional, valid)
            probs = probs + weight * out
            joint = joint + weight * conditional * routing
            factors.append((weight, out.reshape((channels,) + spatial_out + (g,))[centre]))
        routing = np.divide(joint, p_in, out=np.zeros_like(joint), where=p_in > 0)
        out = moments.Law(law.values, probs.reshape((channels,) + spatial_out + (g,)), None, law.caveat, factors=factors)
        out.c_off = moments.off_moment(out) / max(moments.centre(out.second_moment()), 1e-300)
        return out, (members, routing)

    def law_notes(self, laws: list) -> list:
        """What model mode neglects at this layer, given its inputs' laws."""
        law = laws[0]
        if self.category == "maxpool" and (law.latent is None or law.rho is None) and not (law.factors is not None and _alike(law.probs)):
            return [Note(self.name, "max pooling: the window's members are taken as independent (their correlation is "
                         "unknown here and dropped), as are cross terms between paths through different windows",
                         EFFECTS["maxpool_independent"])]
        if self.category == "maxpool":
            return [Note(self.name, "max pooling: the winners of two windows are taken as independent given their gates, "
                         "and the members' interior correlation is used at the borders", EFFECTS["maxpool"])]
        mean, rms = abs(float(centre(law.mean()))), math.sqrt(float(centre(law.second_moment())))
        if law.gauss is None and (law.nonnegative() or mean > 1e-3 * rms) and self.in_degree().max() > 1:
            return [Note(self.name, "average of activations with a non-zero mean (ReLU, GELU, SiLU outputs): the paths "
                         "through one window add coherently (their "
                         "covariance is carried) and the first layer's gates get the exact wedge moment with its weights, "
                         "but the gates of a deeper convolution at two positions are taken as independent of the weights "
                         "they share (gradient independence), which the forward signal of a first layer with a small "
                         "fan-in breaks", EFFECTS["avgpool"])]
        return []

    def law_backward(self, B, laws, out_law, context):
        """Max pooling: ``B_in(u, a) = sum_windows p_u(a) P(u wins | a) B_out(a) / p_out(a)``.

        The window's output equals the winner's value, so the output's
        value-conditional moment ``B_out(a) / p_out(a)`` passes to the winner
        at the same value: a ReLU below then keeps only open winners (ties at
        0, where torch picks the first member, are cut by that member's
        closed gate).  Limit: members taken as independent (see
        :func:`pathstats.layer_engine.moments.max_law`).
        """
        if self.category == "avgpool":
            return super().law_backward(B, laws, out_law, context)
        B = B.dense()
        members, routing = context
        law, g = laws[0], len(out_law.values)
        channels = max(B.shape[0], routing.shape[0])
        spatial_in = tuple(self.in_shapes[0][1:])
        b_out = np.broadcast_to(B, (channels,) + tuple(self.out_shape[1:]) + (g,)).reshape(channels, -1, g)
        p_out = np.broadcast_to(out_law.probs, (channels,) + tuple(self.out_shape[1:]) + (g,)).reshape(channels, -1, g)
        ratio = np.divide(b_out, p_out, out=np.zeros_like(b_out), where=p_out > 0)
        p_in = law.broadcast((channels,) + spatial_in).probs.reshape(channels, -1, g)
        valid = members >= 0
        gathered = p_in[:, np.where(valid, members, 0)] * routing * ratio[:, :, None, :]
        result = np.zeros_like(p_in)
        np.add.at(result, (slice(None), members[valid]), gathered[:, valid])
        return [moments.Joint.of(result.reshape((channels,) + spatial_in + (g,)))]

    def edges(self):
        for q, source, multiplicity in _taps(self.axes):
            for c in range(self.out_shape[0]):
                yield 0, int(np.ravel_multi_index((c,) + source, self.in_shapes[0])), int(np.ravel_multi_index((c,) + q, self.out_shape)), multiplicity


@dataclass
class UpsampleRule(PoolRule):
    """Nearest-neighbour up-sampling: each output copies one input (weight 1)."""

    def model_factor(self, algebra):
        return algebra.cast(1)

    def law_forward(self, laws):
        """Each output copies its source's law."""
        probs = laws[0].probs
        for axis, matrix in enumerate(self.axes, start=1):
            probs = np.take(probs, matrix.indices, axis=axis) if probs.shape[axis] > 1 else probs
        return moments.Law(laws[0].values, probs, None, laws[0].caveat), None

    def law_backward(self, B, laws, out_law, context):
        """A copy keeps its source's value, so ``B_in(u, a) = sum_copies B_out(copy, a)`` (cross terms between copies dropped)."""
        return [moments.Joint.of(c) for c in self.backward(B.dense(), _FLOAT)]


@dataclass
class AddRule(NodeRule):
    """Element-wise sum of tensors (identity skip connections): weight 1 per operand."""

    def in_degree(self):
        return np.array(len(self.operands), dtype=np.int64).reshape((1,) * len(self.out_shape))

    def model_factor(self, algebra):
        return algebra.cast(1)

    def backward(self, entered, algebra):
        return [entered for _ in self.operands]

    def law_forward(self, laws):
        """The law of ``x + y``: a skip stream ``x`` plus an independent Gaussian branch ``y``.

        In the infinite-width limit the branch (a sum over random weights) is
        a centred Gaussian independent of the skip's value at the same unit,
        so the sum's law is the skip's law convolved with it
        (:func:`pathstats.layer_engine.moments.sum_law`), and a ReLU after the addition is
        open with probability ``E[Phi(x / sigma_y)]`` (about 2/3 in a
        post-activation ResNet, not 1/2).  Two non-Gaussian operands: the
        second is replaced by the Gaussian of its mean and variance (noted).
        """
        x, y = laws[0], laws[1]
        order = (0, 1)
        if y.gauss is None and x.gauss is not None:
            x, y, order = y, x, (1, 0)
        if y.gauss is None:
            mean = y.mean()
            caveat = f"{self.name}: sum of two non-Gaussian operands, the second taken as the Gaussian of its mean and variance"
            y = moments.gaussian_law(np.sqrt(np.maximum(y.second_moment() - mean**2, 0.0)), mean)
            y.caveat = caveat
        law, plan = moments.sum_law(x, y)
        off = moments.sum_off_moment(x, y)
        if off is not None:
            law.c_off = off / max(moments.centre(law.second_moment()), 1e-300)
        return law, (order, plan, x)

    def law_notes(self, laws: list) -> list:
        """A skip stream that is not Gaussian (a post-add ReLU's output) has its scale taken as fixed."""
        if all(law.gauss is not None for law in laws):
            return []
        return [Note(self.name, "the laws of the skip stream take each unit's scale as fixed; it varies with the "
                     "input patch where the first layer reads few input channels", EFFECTS["stream"])]

    def law_backward(self, B, laws, out_law, context):
        """The skip keeps ``B_x(u, a) = p_x(a) E[B_z(u, a + y) / p_z]`` (:func:`pathstats.layer_engine.moments.sum_backward`): its
        value decides the gates after the addition.  The Gaussian branch gets its marginal, ``p_y(b) sum_c B_z(c)``
        (exact where the branch ends in random weights or BatchNorm, as in ResNets)."""
        order, plan, x = context
        total = B.total()
        if plan is None:
            return [moments.Joint(total, law.probs) for law in laws]
        result = [None] * len(laws)
        result[order[0]] = moments.Joint.of(moments.sum_backward(B.dense(), x, out_law, plan))
        for k, law in enumerate(laws):
            if result[k] is None:
                result[k] = moments.Joint(total, law.probs)
        return result

    def cov_backward(self, off, total, laws):
        """Every operand receives the sum's gradient, covariance included."""
        return [off] * len(self.operands), [None] * len(self.operands)

    def edges(self):
        size = math.prod(self.out_shape)
        for k in range(len(self.operands)):
            for i in range(size):
                yield k, i, i, 1


@dataclass
class PointwiseRule:
    """A one-to-one map folded into the neuron before it: a gain on outgoing edges.

    ``model_gain`` is the expected squared derivative (ReLU 1/2, LeakyReLU(a)
    ``(1 + a**2)/2``, eval BatchNorm ``(gamma / sqrt(var + eps))**2`` per channel,
    identity 1); ``theory_ok`` says whether theory mode accepts the layer (where
    the ReLU of assumption (H) is already inside ``1/d_v``).
    """

    name: str
    layer: str
    operands: list
    in_shapes: list
    out_shape: tuple
    model_gain: Any = 1.0  # scalar or per-channel array shaped (C, 1, ..., 1)
    theory_ok: bool = True
    slope: float | None = None  # a gate: ReLU (0) or LeakyReLU (its negative slope)
    affine: tuple | None = None  # eval BatchNorm: per-channel (scale, shift) arrays
    smooth: tuple | None = None  # a smooth activation: (f, f', f'') on numpy arrays (:data:`SMOOTH_ACTIVATIONS`)
    kind = "pointwise"

    @property
    def is_gate(self) -> bool:
        return self.slope is not None

    def _law_affine(self) -> tuple:
        scale, shift = (np.asarray(a, dtype=np.float64).ravel() for a in self.affine)
        if np.ptp(scale) == 0 and np.ptp(shift) == 0:
            return float(scale[0]), float(shift[0]), None
        rms = float(np.sqrt((scale**2).mean())) * (1.0 if (scale >= 0).all() else -1.0 if (scale <= 0).all() else 1.0)
        caveat = f"{self.name}: BatchNorm statistics differ between channels; the law of its outputs uses the rms scale and mean shift"
        return rms, float(shift.mean()), caveat

    def law_forward(self, laws: list) -> tuple:
        """The law of the outputs: the input's law mapped value by value.

        A gate maps ``z -> z`` for ``z > 0`` and ``z -> slope z`` otherwise (a
        ReLU merges the negative half into an atom at 0); eval BatchNorm maps
        ``z -> scale z + shift``; Dropout (eval) and Identity keep the law.
        """
        law = laws[0]
        if self.is_gate:
            return moments.map_law(law, lambda v: np.where(v > 0, v, self.slope * v))
        if self.smooth is not None:
            return moments.map_law(law, self.smooth[0])
        if self.affine is None:
            return law, None
        scale, shift, caveat = self._law_affine()
        out, index = moments.map_law(law, lambda v: scale * v + shift)
        if law.gauss is not None:
            out.gauss = (law.gauss[0] * scale + shift, law.gauss[1] * abs(scale))
        out.caveat = law.caveat or caveat
        # one positive scale and no shift keep independence, and a first layer's gates at zero
        out.independent = out.wedge = False
        if caveat is None and shift == 0 and scale > 0:
            out.independent, out.wedge, out.fan_in = law.independent, law.wedge, law.fan_in
        return out, index

    def law_backward(self, B: "moments.Joint", laws: list, out_law, context) -> list:
        """``B_z(u, a) = gain(a) B_h(u, f(a)) p_z(u, a) / p_h(u, f(a))``.

        A gate's gain is 1 where ``a > 0`` and ``slope^2`` elsewhere: the
        probability that a ReLU is open is thereby ``P(z > 0)`` under the
        input's actual law, 1/2 only for a symmetric input, and a ReLU whose
        input is a ReLU's output (``z >= 0``, zero only where the gate below
        is already closed) passes everything it receives: the two gates are
        counted once.  BatchNorm multiplies by its squared scale per channel
        (the affine gain; at the declared initialisation, running statistics
        (0, 1), it is ``1 / (1 + eps)``).  The ratio ``p_z / p_h`` shares the
        moment of a merged bin (a ReLU's atom) among the bins merged into it.
        """
        if context is None:
            return [B]
        index, law = context, laws[0]
        p_h = out_law.probs[..., index]
        share = np.divide(law.probs, p_h, out=np.zeros(np.broadcast_shapes(law.probs.shape, p_h.shape)), where=p_h > 0)
        if self.is_gate:
            share = share * np.where(law.values > 0, 1.0, self.slope**2)
        elif self.smooth is not None:  # the squared derivative at the input's value
            share = share * self.smooth[1](law.values) ** 2
        else:
            share = share * np.asarray(self.model_gain, dtype=np.float64)[..., None]
        return [B.map(lambda weight: weight[..., index] * share)]

    def law_notes(self, laws: list) -> list:
        """A smooth activation on a first layer's outputs: the gain its law leaves out (:func:`~pathstats.layer_engine.moments.fan_in_factor`)."""
        law = laws[0]
        if self.smooth is not None and not law.fan_in and not law.independent and self.smooth[0] is _silu:
            # neither the network's input (exact) nor a first layer's outputs (the note below)
            return [Note(self.name, f"{self.layer}: the law of its input is taken at infinite width", EFFECTS["silu_depth"])]
        if self.smooth is None or not law.fan_in:
            return []
        factor = moments.fan_in_factor(self.smooth[1], float(centre(law.second_moment())), law.fan_in)
        return [Note(self.name, f"{self.layer} on a first layer of fan-in {law.fan_in}: the weights' norm, which sets the "
                     "scale of f'(w.x)^2, is taken at its mean", f"exact for one hidden layer: {factor - 1:+.2%} on the "
                     "gradient through this layer; in deeper nets the same fluctuation of the forward signal offsets "
                     "part of it")]

    def cov_backward(self, off, total, laws) -> tuple:
        """A gate multiplies the covariance of two positions by ``E[a_p a_q]``, the joint gain of their gates
        (:func:`pathstats.layer_engine.moments.pair_gain`, from the correlation of their inputs); other pointwise layers by
        their (mean) squared gain."""
        if off is None:
            return [None], [None]
        law = laws[0]
        if law.probs.shape[0] > 1 and not _alike(law.probs) and (self.is_gate or self.smooth is not None):
            return None  # channels with different laws (after a concatenation): one covariance per channel is lost
        if self.smooth is not None:
            factor = moments.derivative_pair_gain(law, self.smooth[1])
            if law.wedge:  # a first layer's activations: the layer applies the first-order pair gain exactly
                curvature = float(centre(law.probs @ self.smooth[2](law.values)))
                return [GateDeferred(off, float(centre(law.second_moment())) * curvature**2, factor)], [None]
            return [factor * off], [None]
        factor = moments.pair_gain(law, self.slope) if self.is_gate else float(np.mean(self.model_gain))
        if self.is_gate and law.wedge:  # a first layer's gates: the layer applies their pair gain exactly
            return [GateDeferred(off, (1.0 - self.slope) ** 2 / (2 * math.pi), factor)], [None]
        return [factor * off], [None]

    def gain(self, mode: str, algebra) -> Any:
        if mode == "model":
            return algebra.cast(self.model_gain)
        if mode == "theory" and not self.theory_ok:
            raise AssumptionError(
                f"theory mode: {self.layer} at {self.name!r} is outside the paper's assumptions (H) "
                f"(ReLU activations); use --mode model, which {MODEL_MODE['smooth' if self.smooth else 'gate']}"
            )
        return algebra.cast(1)


@dataclass
class ScaleRule(PointwiseRule):
    """Multiplication by a constant ``c`` (:class:`Scale`): squared gain ``c**2`` in every mode.

    The gain is deterministic, so it is exact in theory mode too: every path
    through the layer is scaled by ``c``.
    """

    def gain(self, mode: str, algebra) -> Any:
        return algebra.cast(self.model_gain)


@dataclass
class ReshapeRule:
    """Flatten or view: the same neurons under another shape."""

    name: str
    layer: str
    operands: list
    in_shapes: list
    out_shape: tuple
    kind = "reshape"

    def backward(self, state: np.ndarray) -> np.ndarray:
        if state.size == 1:
            return state.reshape((1,) * len(self.in_shapes[0]))
        return np.broadcast_to(state, self.out_shape).reshape(self.in_shapes[0])

    def law_forward(self, laws: list) -> tuple:
        """The same units' laws under the new shape (one law for all units stays one law)."""
        law = laws[0]
        shape = tuple(self.out_shape)
        if law.probs[..., 0].size == 1:
            shape = (1,) * len(shape)
        else:
            law = law.broadcast(tuple(self.in_shapes[0]))
        gauss = None if law.gauss is None else tuple(np.reshape(g, shape) for g in law.gauss)
        out = moments.Law(law.values, law.probs.reshape(shape + law.values.shape), gauss, law.caveat)
        out.independent = law.independent  # flattening the input keeps its units independent
        return out, None

    def law_backward(self, B, laws: list, out_law, context) -> list:
        """The same units under the input's shape (a law alike on every unit stays one law)."""
        return [moments.Joint(self._units_back(B.scale, ()), self._units_back(B.weight, B.weight.shape[-1:]))]

    def cov_backward(self, off, total, laws):
        return None if off is not None else ([None], [None])

    def _units_back(self, array: np.ndarray, tail: tuple) -> np.ndarray:
        if array.size == math.prod(tail):
            return array.reshape((1,) * len(self.in_shapes[0]) + tail)
        return np.broadcast_to(array, tuple(self.out_shape) + tail).reshape(tuple(self.in_shapes[0]) + tail)


@dataclass
class ConcatRule:
    """``torch.cat(tensors, dim=1)``: the operands' units side by side along the channel axis.

    A relabelling, as a flatten is: no node, no gain, so every mode's path sums pass
    through unchanged (the DAG fragment maps each output unit to one operand's unit).
    Model mode keeps each part's laws, on the union of their value grids (exact: every
    part's values are grid values of the union); the layer after reads per-channel laws.
    What it cannot carry is one correlation of distinct positions for channels whose laws
    differ: the latent factor of each part is dropped (a gate after the concatenation then
    takes the pair gain of independent gates), and the parts' uncentred correlations
    enter the next random layer as their second-moment-weighted mean, which is exact for it.
    """

    name: str
    layer: str
    operands: list
    in_shapes: list
    out_shape: tuple
    kind = "concat"

    def bounds(self) -> np.ndarray:
        """The first output channel of each operand, and the total."""
        return np.cumsum([0] + [shape[0] for shape in self.in_shapes])

    def part(self, j: int) -> tuple:
        """``(operand, flat index in it)`` of the output's flat unit ``j``."""
        positions = math.prod(tuple(self.out_shape[1:]))
        channel, position = divmod(int(j), positions)
        k = int(np.searchsorted(self.bounds(), channel, side="right")) - 1
        return k, (channel - int(self.bounds()[k])) * positions + position

    def backward(self, state: np.ndarray) -> list:
        """Each operand's slice of the channels (all of ``state`` where it is alike along them)."""
        if np.shape(state)[0] == 1:
            return [state] * len(self.operands)
        b = self.bounds()
        return [state[b[k]:b[k + 1]] for k in range(len(self.operands))]

    def law_forward(self, laws: list) -> tuple:
        """The parts' laws side by side, on the union of their grids; context: each part's grid positions."""
        values = np.unique(np.concatenate([law.values for law in laws]))
        index = [np.searchsorted(values, law.values) for law in laws]
        spatial = np.broadcast_shapes(*(law.probs.shape[1:-1] for law in laws))
        self._check_memory(len(values), math.prod(spatial))
        parts, means, stds = [], [], []
        for law, idx, shape in zip(laws, index, self.in_shapes):
            probs = np.zeros(law.probs.shape[:-1] + (len(values),))
            probs[..., idx] = law.probs
            parts.append(np.broadcast_to(probs, (shape[0],) + spatial + (len(values),)))
            if law.gauss is not None:
                means.append(np.broadcast_to(law.gauss[0], (shape[0],) + spatial))
                stds.append(np.broadcast_to(law.gauss[1], (shape[0],) + spatial))
        gauss = (np.concatenate(means), np.concatenate(stds)) if len(means) == len(laws) else None
        caveat = next((law.caveat for law in laws if law.caveat), None)
        out = moments.Law(values, np.concatenate(parts), gauss, caveat)
        if all(law.c_off is not None for law in laws):  # what the next random layer's latent correlation reads
            weights = [shape[0] * float(centre(law.second_moment())) for law, shape in zip(laws, self.in_shapes)]
            out.c_off = sum(w * law.c_off for w, law in zip(weights, laws)) / max(sum(weights), 1e-300)
        return out, index

    def _check_memory(self, grid: int, positions: int) -> None:
        """The laws after a concatenation are dense per channel, position and grid value (the parts' laws
        differ): refuse, in one line, a size that would not fit rather than be killed for memory."""
        from ..resources import format_bytes, free_memory

        need = 3 * 8 * self.out_shape[0] * positions * grid  # the parts, their concatenation, the backward's copy
        free, source = free_memory("cpu")
        if free is not None and need > 0.8 * free:
            raise ResourceError(f"{self.name}: model mode's laws after this concatenation need about "
                                f"{format_bytes(need)} ({self.out_shape[0]} channels x {positions} positions x {grid} "
                                f"values), more than 80% of the {format_bytes(free)} free ({source}); use "
                                "mode='theory' or a smaller input")

    def law_backward(self, B: "moments.Joint", laws: list, out_law, context) -> list:
        """Each part's channels, on its own grid (the union's positions of its values)."""
        dense = B.dense()
        full = np.broadcast_to(dense, (self.out_shape[0],) + dense.shape[1:])
        b = self.bounds()
        return [moments.Joint.of(np.ascontiguousarray(full[b[k]:b[k + 1]][..., idx])) for k, idx in enumerate(context)]

    def cov_backward(self, off, total, laws) -> tuple:
        """The covariance between positions is one for every channel above (a random layer's weights are
        exchangeable across its input channels): each part gets it."""
        return [off] * len(self.operands), [None] * len(self.operands)

    def edges(self) -> Iterator[tuple]:
        """``(operand, its unit, output unit, 1)``: a relabelling."""
        for j in range(math.prod(tuple(self.out_shape))):
            k, i = self.part(j)
            yield k, i, j, 1


# ---------------------------------------------------------------- module -> rule
class Scale(nn.Module):
    """``x * factor``: what ``x * c``, ``x / c`` and ``-x`` by a constant read as.

    Examples
    --------
    >>> Scale(0.5)(torch.ones(2)).tolist()
    [0.5, 0.5]
    """

    def __init__(self, factor: float):
        super().__init__()
        self.factor = float(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"{self.factor:g}"


def weight_variance(name: str, module: nn.Module, init: Any) -> float:
    """The model-mode variance of one weight layer under an ``init`` policy."""
    fan_in = module.weight[0].numel()
    if init == "he":
        return 2.0 / fan_in
    if init == "torch":
        # kaiming_uniform_(a=sqrt(5)): U(-b, b) with b = 1/sqrt(fan_in), variance b**2 / 3
        return 1.0 / (3.0 * fan_in)
    if init == "weights":
        return float(module.weight.detach().double().pow(2).mean())
    if isinstance(init, dict):
        if name not in init:
            raise InvalidArgumentError(f"init mapping has no variance for weight layer {name!r}; it has {sorted(init)[:8]}")
        return float(init[name])
    raise InvalidArgumentError(f"init must be 'he', 'torch', 'weights' or a mapping from layer name to variance, not {init!r}")


def _tuple(value: Any, n: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _node_notes(name: str, module: nn.Module) -> list:
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor) and bias.detach().abs().max().item() > 0:
        # one text for every such layer, so that the notes merge them ("conv1 and 4 more: ...")
        return [Note(name, "non-zero bias; the prediction assumes zero biases (both modes)", EFFECTS["bias"])]
    return []


def _alike(probs: np.ndarray) -> bool:
    """Whether every unit of every channel has the same law (``probs``: units x grid)."""
    flat = probs.reshape(-1, probs.shape[-1])
    return bool(np.allclose(flat, flat[:1], rtol=1e-9, atol=1e-12))


def _window_correlation(taps_valid: list, shape: tuple, c_off: float, members: np.ndarray) -> np.ndarray:
    """Mean latent correlation ``c_off n_common / sqrt(n_p n_q)`` of the member pairs of each window ``(W, n)``."""
    valid = members >= 0
    flat = np.where(valid, members, 0)
    coords = np.unravel_index(flat, shape)
    common = np.ones(members.shape + members.shape[1:])
    for axis, taps in enumerate(taps_valid):
        t = taps[coords[axis]].astype(np.float64)  # (W, n, kernel)
        common = common * np.einsum("wjt,wkt->wjk", t, t)
    own = np.sqrt(np.einsum("wjj->wj", common))
    rho = c_off * common / np.maximum(own[:, :, None] * own[:, None, :], 1e-300)
    pairs = valid[:, :, None] & valid[:, None, :] & ~np.eye(members.shape[1], dtype=bool)[None]
    return np.where(pairs.any(axis=(1, 2)), (rho * pairs).sum(axis=(1, 2)) / np.maximum(pairs.sum(axis=(1, 2)), 1), 0.0)


def _taps_valid(n: int, kernel: int, stride: int, left: int, dilation: int, mode: str, n_out: int) -> np.ndarray:
    """``(n_out, kernel)``: whether tap ``t`` of output ``q`` reads an input (False where zero padding reads 0)."""
    return np.array([[padded_source(q * stride + t * dilation, n, left, mode) is not None for t in range(kernel)]
                     for q in range(n_out)], dtype=bool)


def conv_rule(name, module, operands, in_shapes, out_shape, init) -> ConvRule:
    spatial = in_shapes[0][1:]
    n = len(spatial)
    pads = module._reversed_padding_repeated_twice  # (left, right) per axis, last axis first
    axes = [
        conv_axis(spatial[k], module.kernel_size[k], module.stride[k], pads[2 * (n - 1 - k)], pads[2 * (n - 1 - k) + 1], module.dilation[k], module.padding_mode)
        for k in range(n)
    ]
    taps = [_taps_valid(spatial[k], module.kernel_size[k], module.stride[k], pads[2 * (n - 1 - k)], module.dilation[k],
                        module.padding_mode, axes[k].shape[0]) for k in range(n)]
    geometry = [(spatial[k], module.kernel_size[k], module.stride[k], pads[2 * (n - 1 - k)], module.dilation[k],
                 module.padding_mode, axes[k].shape[0]) for k in range(n)]
    return ConvRule(name, repr(module), operands, in_shapes, out_shape, "random", weight_variance(name, module, init),
                    _node_notes(name, module), groups=module.groups, axes=axes, taps_valid=taps, geometry=geometry)


def linear_rule(name, module, operands, in_shapes, out_shape, init) -> LinearRule:
    if len(in_shapes[0]) != 1:
        raise UnsupportedLayerError(f"{name}: Linear on a {len(in_shapes[0]) + 1}-d tensor; flatten its input first")
    return LinearRule(name, repr(module), operands, in_shapes, out_shape, "random", weight_variance(name, module, init), _node_notes(name, module))


def pool_rule(name, module, operands, in_shapes, out_shape, init) -> PoolRule:
    spatial = in_shapes[0][1:]
    n = len(spatial)
    is_max = isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d))
    kernel, stride = _tuple(module.kernel_size, n), _tuple(module.stride or module.kernel_size, n)
    padding = _tuple(module.padding, n)
    dilation = _tuple(getattr(module, "dilation", 1), n)
    windows = [pool_axis(spatial[k], kernel[k], stride[k], padding[k], dilation[k], module.ceil_mode) for k in range(n)]
    axes = [a for a, _ in windows]
    notes = []
    if any(_overlapping(a) for a in axes):
        notes.append(Note(name, "overlapping pooling windows (stride < kernel) break H5, so cross terms between paths are not zero"))
    if is_max:
        return PoolRule(name, repr(module), operands, in_shapes, out_shape, "maxpool", None, notes, axes=axes)
    if getattr(module, "divisor_override", None):  # AvgPool1d has none
        divisor = np.full(out_shape[1:], module.divisor_override, dtype=np.int64)
    elif module.count_include_pad:
        divisor = _outer([size for _, size in windows])
    else:
        divisor = _outer([_row_counts(a) for a in axes])
    if not (divisor == _outer([_row_counts(a) for a in axes])).all():
        notes.append(Note(name, "padded average-pooling windows divide by more than their inputs at the border"))
    return PoolRule(name, repr(module), operands, in_shapes, out_shape, "avgpool", None, notes, axes=axes, divisor=divisor)


def adaptive_pool_rule(name, module, operands, in_shapes, out_shape, init) -> PoolRule:
    axes = [adaptive_axis(n_in, n_out) for n_in, n_out in zip(in_shapes[0][1:], out_shape[1:])]
    notes = [Note(name, "overlapping adaptive windows break H5")] if any(_overlapping(a) for a in axes) else []
    if isinstance(module, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)):
        return PoolRule(name, repr(module), operands, in_shapes, out_shape, "maxpool", None, notes, axes=axes)
    divisor = _outer([_row_counts(a) for a in axes])
    return PoolRule(name, repr(module), operands, in_shapes, out_shape, "avgpool", None, notes, axes=axes, divisor=divisor)


def upsample_rule(name, module, operands, in_shapes, out_shape, init) -> UpsampleRule:
    if getattr(module, "mode", "nearest") != "nearest":
        raise UnsupportedLayerError(f"{name}: Upsample(mode={module.mode!r}) has no rule; only mode='nearest' is supported")
    spatial_in, spatial_out = in_shapes[0][1:], out_shape[1:]
    axes = []
    for k, (n_in, n_out) in enumerate(zip(spatial_in, spatial_out)):
        # read the source index of each output position off the layer itself
        shape = [1, 1] + list(spatial_in)
        index = torch.arange(n_in, dtype=torch.float64).reshape([n_in if j == k else 1 for j in range(len(spatial_in))])
        probe = module(index.expand(spatial_in).reshape(shape))[0, 0]
        sources = probe[tuple(slice(None) if j == k else 0 for j in range(len(spatial_in)))].round().long().tolist()
        axes.append(_csr([[s] for s in sources], n_in))
    return UpsampleRule(name, repr(module), operands, in_shapes, out_shape, "upsample", None, [], axes=axes)


def batchnorm_rule(name, module, operands, in_shapes, out_shape, init) -> PointwiseRule:
    if module.training:
        raise UnsupportedLayerError(f"{name}: {type(module).__name__} is in training mode (batch statistics); call model.eval() first")
    channels = in_shapes[0][0]
    var = module.running_var.detach().double() if module.running_var is not None else torch.ones(channels, dtype=torch.float64)
    gamma = module.weight.detach().double() if module.weight is not None else torch.ones(channels, dtype=torch.float64)
    gain = (gamma**2 / (var + module.eps)).numpy().reshape((channels,) + (1,) * (len(in_shapes[0]) - 1))
    if np.allclose(gain, gain.flat[0], rtol=0, atol=0):
        gain = np.array(float(gain.flat[0]))
    mean = module.running_mean.detach().double() if module.running_mean is not None else torch.zeros(channels, dtype=torch.float64)
    beta = module.bias.detach().double() if module.bias is not None else torch.zeros(channels, dtype=torch.float64)
    scale = gamma / (var + module.eps).sqrt()
    affine = (scale.numpy(), (beta - mean * scale).numpy())
    return PointwiseRule(name, repr(module), operands, in_shapes, out_shape, gain, True, affine=affine)


def dropout_rule(name, module, operands, in_shapes, out_shape, init) -> PointwiseRule:
    if module.training:
        raise UnsupportedLayerError(f"{name}: {type(module).__name__} is in training mode; call model.eval() first")
    return PointwiseRule(name, repr(module), operands, in_shapes, out_shape, 1.0, True)


def relu_rule(name, module, operands, in_shapes, out_shape, init) -> PointwiseRule:
    return PointwiseRule(name, "ReLU()", operands, in_shapes, out_shape, 0.5, True, slope=0.0)


def leaky_relu_rule(name, module, operands, in_shapes, out_shape, init) -> PointwiseRule:
    slope = module.negative_slope
    return PointwiseRule(name, repr(module), operands, in_shapes, out_shape, (1 + slope**2) / 2, False, slope=slope)


_GELU_C, _GELU_K = math.sqrt(2 / math.pi), 0.044715
_PHI = 1 / math.sqrt(2 * math.pi)


def _gelu_tanh(z, order: int = 0):
    """GELU's tanh approximation ``z (1 + tanh(u)) / 2``, ``u = c (z + k z^3)``, or its derivative of ``order`` 1 or 2."""
    u, du, ddu = _GELU_C * (z + _GELU_K * z**3), _GELU_C * (1 + 3 * _GELU_K * z**2), 6 * _GELU_C * _GELU_K * z
    t = np.tanh(u)
    if order == 0:
        return 0.5 * z * (1 + t)
    if order == 1:
        return 0.5 * (1 + t) + 0.5 * z * (1 - t**2) * du
    return (1 - t**2) * du + 0.5 * z * (1 - t**2) * (ddu - 2 * t * du**2)


def _silu(z, order: int = 0):
    s = special.expit(z)
    return (z * s, s * (1 + z * (1 - s)), s * (1 - s) * (2 + z * (1 - 2 * s)))[order]


def _gelu(z, order: int = 0):
    density = _PHI * np.exp(-z**2 / 2)
    return (z * special.ndtr(z), special.ndtr(z) + z * density, density * (2 - z**2))[order]


def _tanh(z, order: int = 0):
    t = np.tanh(z)
    return (t, 1 - t**2, -2 * t * (1 - t**2))[order]


#: Smooth activations of model mode: module type (GELU with its ``approximate``) -> ``f(z, order)``,
#: the function (order 0) and its first two derivatives on numpy arrays.  Theory mode refuses
#: them: (H) is about ReLUs.
SMOOTH_ACTIVATIONS = {nn.Tanh: _tanh, nn.SiLU: _silu, (nn.GELU, "none"): _gelu, (nn.GELU, "tanh"): _gelu_tanh}


def smooth_rule(name, module, operands, in_shapes, out_shape, init) -> PointwiseRule:
    f = SMOOTH_ACTIVATIONS[(nn.GELU, module.approximate) if isinstance(module, nn.GELU) else type(module)]
    gain = float(moments.FACTOR_WEIGHTS @ f(moments.FACTOR_NODES, 1) ** 2)  # the path-sum form's E[f'(z)^2], z ~ N(0, 1)
    return PointwiseRule(name, repr(module), operands, in_shapes, out_shape, gain, False,
                         smooth=(f, lambda z: f(z, 1), lambda z: f(z, 2)))


def identity_rule(name, module, operands, in_shapes, out_shape, init) -> PointwiseRule:
    return PointwiseRule(name, "Identity()", operands, in_shapes, out_shape, 1.0, True)


def scale_rule(name, module, operands, in_shapes, out_shape, init) -> ScaleRule:
    c = module.factor
    return ScaleRule(name, f"x * {c:g}", operands, in_shapes, out_shape, c**2, True, affine=(np.array([c]), np.array([0.0])))


def flatten_rule(name, module, operands, in_shapes, out_shape, init) -> ReshapeRule:
    if len(out_shape) != 1 or math.prod(in_shapes[0]) != out_shape[0]:
        raise UnsupportedLayerError(f"{name}: only a flatten of all non-batch axes is supported, got {in_shapes[0]} -> {out_shape}")
    return ReshapeRule(name, "Flatten()", operands, in_shapes, out_shape)


def add_rule(name, module, operands, in_shapes, out_shape, init) -> AddRule:
    if any(tuple(s) != tuple(out_shape) for s in in_shapes):
        raise UnsupportedLayerError(f"{name}: addition with broadcasting ({in_shapes}) has no rule; add tensors of one shape")
    return AddRule(name, "add", operands, in_shapes, out_shape, "add", None, [])


MODULE_RULES = {
    nn.Conv1d: conv_rule,
    nn.Conv2d: conv_rule,
    nn.Conv3d: conv_rule,
    nn.Linear: linear_rule,
    nn.AvgPool1d: pool_rule,
    nn.AvgPool2d: pool_rule,
    nn.MaxPool1d: pool_rule,
    nn.MaxPool2d: pool_rule,
    nn.AdaptiveAvgPool1d: adaptive_pool_rule,
    nn.AdaptiveAvgPool2d: adaptive_pool_rule,
    nn.AdaptiveMaxPool1d: adaptive_pool_rule,
    nn.AdaptiveMaxPool2d: adaptive_pool_rule,
    nn.Upsample: upsample_rule,
    nn.UpsamplingNearest2d: upsample_rule,
    nn.BatchNorm1d: batchnorm_rule,
    nn.BatchNorm2d: batchnorm_rule,
    nn.Dropout: dropout_rule,
    nn.Dropout1d: dropout_rule,
    nn.Dropout2d: dropout_rule,
    nn.ReLU: relu_rule,
    nn.LeakyReLU: leaky_relu_rule,
    nn.Tanh: smooth_rule,
    nn.SiLU: smooth_rule,
    nn.GELU: smooth_rule,
    nn.Identity: identity_rule,
    nn.Flatten: flatten_rule,
    Scale: scale_rule,
}
