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
from typing import Any, Iterator, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from .errors import PathstatsError
from .generators import PADDING_MODES, padded_source

__all__ = [
    "UnsupportedLayerError",
    "AssumptionError",
    "NodeRule",
    "PointwiseRule",
    "ReshapeRule",
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


class UnsupportedLayerError(PathstatsError, ValueError):
    """A layer has no rule, so the engine cannot read the network."""


class AssumptionError(PathstatsError, ValueError):
    """Theory mode met a layer outside the paper's assumptions (H)/(H')."""


# --------------------------------------------------------------------------- axes
def _csr(rows: Sequence[Sequence[int]], n_in: int) -> sp.csr_matrix:
    """Count matrix ``A[q, i] = #{taps of output q that read input i}``."""
    data, indices, indptr = [], [], [0]
    for sources in rows:
        counts: dict = {}
        for i in sources:
            counts[i] = counts.get(i, 0) + 1
        for i in sorted(counts):
            indices.append(i)
            data.append(counts[i])
        indptr.append(len(indices))
    return sp.csr_matrix((np.array(data, dtype=np.int64), np.array(indices, dtype=np.int64), np.array(indptr)), shape=(len(rows), n_in))


def conv_axis(n: int, kernel: int, stride: int, left: int, right: int, dilation: int, mode: str) -> sp.csr_matrix:
    """The taps of a torch convolution along one axis, as a count matrix.

    ``A[q, i]`` counts the taps of output position ``q`` that read input ``i``
    after padding by ``left``/``right`` in ``mode``: zero padding drops taps,
    reflect and replicate fold them onto inputs (parallel edges), circular wraps.

    Examples
    --------
    >>> conv_axis(4, 3, 1, 1, 1, 1, "reflect").toarray()
    array([[1, 2, 0, 0],
           [1, 1, 1, 0],
           [0, 1, 1, 1],
           [0, 0, 2, 1]])
    """
    if mode not in PADDING_MODES:
        raise UnsupportedLayerError(f"padding mode {mode!r} is not one of {PADDING_MODES}")
    if mode == "reflect" and max(left, right) >= n:
        raise PathstatsError(f"reflect padding {max(left, right)} needs an input longer than {max(left, right)}, got {n}")
    n_out = (n + left + right - dilation * (kernel - 1) - 1) // stride + 1
    if n_out < 1:
        raise PathstatsError(f"kernel {kernel} (dilation {dilation}) does not fit an input of {n} with padding {left}+{right}")
    rows = []
    for q in range(n_out):
        taps = (padded_source(q * stride + t * dilation, n, left, mode) for t in range(kernel))
        rows.append([i for i in taps if i is not None])
    return _csr(rows, n)


def pool_axis(n: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> tuple:
    """Windows of a torch pooling along one axis: count matrix and clipped window sizes.

    Returns ``(A, padded_size)``; ``padded_size[q]`` is the window length that
    ``count_include_pad=True`` divides by (the window clipped to the padded input).
    """
    span = n + 2 * padding - dilation * (kernel - 1) - 1
    n_out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (n_out - 1) * stride >= n + padding:
        n_out -= 1  # torch: the last window must start inside the input or left padding
    rows, padded_size = [], []
    for q in range(n_out):
        start = q * stride - padding
        rows.append([start + t * dilation for t in range(kernel) if 0 <= start + t * dilation < n])
        padded_size.append(min(start + kernel, n + padding) - start)
    return _csr(rows, n), np.array(padded_size, dtype=np.int64)


def adaptive_axis(n: int, n_out: int) -> sp.csr_matrix:
    """Windows of adaptive pooling: ``[floor(q n / m), ceil((q + 1) n / m))``."""
    rows = [list(range((q * n) // n_out, -(-((q + 1) * n) // n_out))) for q in range(n_out)]
    return _csr(rows, n)


def _outer(vectors: Sequence[np.ndarray]) -> np.ndarray:
    result = np.ones((), dtype=np.int64)
    for v in vectors:
        result = np.multiply.outer(result, v)
    return result


def _row_counts(matrix: sp.csr_matrix) -> np.ndarray:
    return np.asarray(matrix.sum(axis=1)).ravel().astype(np.int64)


def _taps(axes: Sequence[sp.csr_matrix]) -> Iterator[tuple]:
    """Yield ``(out_position, in_position, multiplicity)`` over all spatial axes.

    The multiplicity of a pair is the product of the per-axis tap counts (for
    reflect padding, two taps along each of two axes give four parallel edges).
    """
    rows = [[list(zip(a.indices[a.indptr[q]:a.indptr[q + 1]].tolist(), a.data[a.indptr[q]:a.indptr[q + 1]].tolist())) for q in range(a.shape[0])] for a in axes]
    for q in itertools.product(*(range(a.shape[0]) for a in axes)):
        for combo in itertools.product(*(rows[k][q[k]] for k in range(len(q)))):
            yield q, tuple(i for i, _ in combo), math.prod(m for _, m in combo)


def _overlapping(matrix: sp.csr_matrix) -> bool:
    return bool((np.asarray((matrix > 0).sum(axis=0)).ravel() > 1).any())


# --------------------------------------------------------------------------- rules
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
            f"use --mode model, which models it as the real layer"
        )

    def model_factor(self, algebra) -> Any:
        """``c_v`` of model mode: the squared weight of the node's in-edges (expected)."""
        return algebra.cast(self.variance)

    def backward(self, entered: np.ndarray, algebra) -> list:
        """Contributions ``sum_{(u -> v)} entered[v]`` to each operand's neurons ``u``."""
        raise NotImplementedError

    def edges(self) -> Iterator[tuple]:
        """Yield ``(operand, in_index, out_index, multiplicity)`` with flat indices."""
        raise NotImplementedError


@dataclass
class ConvRule(NodeRule):
    """``Conv1d``/``Conv2d``/``Conv3d``: random weights, any stride, dilation, groups, padding mode."""

    groups: int = 1
    axes: list = field(default_factory=list)  # one count matrix per spatial axis

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

    def edges(self):
        for j in range(self.out_shape[0]):
            for i in range(self.in_shapes[0][0]):
                yield 0, i, j, 1


@dataclass
class PoolRule(NodeRule):
    """Average, max and adaptive pooling, channel by channel.

    Average pooling has deterministic weights ``1/divisor`` (torch's divisor:
    the window clipped to the padded input with ``count_include_pad``, else the
    valid taps, or ``divisor_override``).  Max pooling is modelled as uniform
    routing: the gradient reaches each of the ``n`` inputs of a window with
    probability ``1/n``, which is exact only if the arg-max is uniform and
    independent of the weights downstream (measured by ``verify``).
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

    def edges(self):
        for q, source, multiplicity in _taps(self.axes):
            for c in range(self.out_shape[0]):
                yield 0, int(np.ravel_multi_index((c,) + source, self.in_shapes[0])), int(np.ravel_multi_index((c,) + q, self.out_shape)), multiplicity


@dataclass
class UpsampleRule(PoolRule):
    """Nearest-neighbour up-sampling: each output copies one input (weight 1)."""

    def model_factor(self, algebra):
        return algebra.cast(1)


@dataclass
class AddRule(NodeRule):
    """Element-wise sum of tensors (identity skip connections): weight 1 per operand."""

    def in_degree(self):
        return np.array(len(self.operands), dtype=np.int64).reshape((1,) * len(self.out_shape))

    def model_factor(self, algebra):
        return algebra.cast(1)

    def backward(self, entered, algebra):
        return [entered for _ in self.operands]

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
    kind = "pointwise"

    def gain(self, mode: str, algebra) -> Any:
        if mode == "model":
            return algebra.cast(self.model_gain)
        if mode == "theory" and not self.theory_ok:
            raise AssumptionError(
                f"theory mode: {self.layer} at {self.name!r} is outside the paper's assumptions (H) "
                f"(ReLU activations); use --mode model"
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
            raise PathstatsError(f"init mapping has no variance for weight layer {name!r}; it has {sorted(init)[:8]}")
        return float(init[name])
    raise PathstatsError(f"init must be 'he', 'torch', 'weights' or a mapping from layer name to variance, not {init!r}")


def _tuple(value: Any, n: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _node_notes(name: str, module: nn.Module) -> list:
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor) and bias.detach().abs().max().item() > 0:
        return [f"{name}: non-zero bias (max |b| = {bias.detach().abs().max().item():.3g}); model mode assumes zero biases"]
    return []


def conv_rule(name, module, operands, in_shapes, out_shape, init) -> ConvRule:
    spatial = in_shapes[0][1:]
    n = len(spatial)
    pads = module._reversed_padding_repeated_twice  # (left, right) per axis, last axis first
    axes = [
        conv_axis(spatial[k], module.kernel_size[k], module.stride[k], pads[2 * (n - 1 - k)], pads[2 * (n - 1 - k) + 1], module.dilation[k], module.padding_mode)
        for k in range(n)
    ]
    return ConvRule(name, repr(module), operands, in_shapes, out_shape, "random", weight_variance(name, module, init),
                    _node_notes(name, module), groups=module.groups, axes=axes)


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
        notes.append(f"{name}: overlapping pooling windows (stride < kernel) break H5, so cross terms between paths are not zero")
    if is_max:
        return PoolRule(name, repr(module), operands, in_shapes, out_shape, "maxpool", None, notes, axes=axes)
    if getattr(module, "divisor_override", None):  # AvgPool1d has none
        divisor = np.full(out_shape[1:], module.divisor_override, dtype=np.int64)
    elif module.count_include_pad:
        divisor = _outer([size for _, size in windows])
    else:
        divisor = _outer([_row_counts(a) for a in axes])
    if not (divisor == _outer([_row_counts(a) for a in axes])).all():
        notes.append(f"{name}: padded average-pooling windows divide by more than their inputs at the border")
    return PoolRule(name, repr(module), operands, in_shapes, out_shape, "avgpool", None, notes, axes=axes, divisor=divisor)


def adaptive_pool_rule(name, module, operands, in_shapes, out_shape, init) -> PoolRule:
    axes = [adaptive_axis(n_in, n_out) for n_in, n_out in zip(in_shapes[0][1:], out_shape[1:])]
    notes = [f"{name}: overlapping adaptive windows break H5"] if any(_overlapping(a) for a in axes) else []
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
    return PointwiseRule(name, repr(module), operands, in_shapes, out_shape, gain, True)


def dropout_rule(name, module, operands, in_shapes, out_shape, init) -> PointwiseRule:
    if module.training:
        raise UnsupportedLayerError(f"{name}: {type(module).__name__} is in training mode; call model.eval() first")
    return PointwiseRule(name, repr(module), operands, in_shapes, out_shape, 1.0, True)


def relu_rule(name, module, operands, in_shapes, out_shape, init) -> PointwiseRule:
    return PointwiseRule(name, "ReLU()", operands, in_shapes, out_shape, 0.5, True)


def leaky_relu_rule(name, module, operands, in_shapes, out_shape, init) -> PointwiseRule:
    slope = module.negative_slope
    return PointwiseRule(name, repr(module), operands, in_shapes, out_shape, (1 + slope**2) / 2, False)


def identity_rule(name, module, operands, in_shapes, out_shape, init) -> PointwiseRule:
    return PointwiseRule(name, "Identity()", operands, in_shapes, out_shape, 1.0, True)


def scale_rule(name, module, operands, in_shapes, out_shape, init) -> ScaleRule:
    return ScaleRule(name, f"x * {module.factor:g}", operands, in_shapes, out_shape, module.factor**2, True)


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
    nn.Identity: identity_rule,
    nn.Flatten: flatten_rule,
    Scale: scale_rule,
}
