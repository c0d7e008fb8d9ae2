"""Running ``B`` initialisations of one network at once, as ``B`` examples of a batch.

A :class:`torch.fx.Interpreter` runs the traced module on inputs ``(B, ...)``
with example ``b`` seeing its own weights: a convolution becomes one grouped
convolution (``groups = B * g``) and a linear layer one batched product; every
other layer (BatchNorm in eval mode, activations, pooling, flatten, additions)
already treats the examples of a batch separately.  Weights are plain tensors
that do not require gradients, so a backward pass computes input gradients only.
The graph is read as :func:`pathstats.layer_engine.trace.read_model` reads it: functional
forms become their layers (:func:`pathstats.layer_engine.functional.modularise`), so
``F.linear(x, self.fc.weight)`` draws the weights of layer ``fc`` like
``self.fc(x)`` does.

2-d activations are kept in the memory order ``(H, W, B, C)``: viewed as one
grouped image ``(1, B * C, H, W)`` that is channels-last, where oneDNN's grouped
convolution and above all its input gradient run 2-4x faster than on contiguous
tensors.  Padding and eval-mode BatchNorm, which ``F.pad`` and ``F.batch_norm``
would return contiguous, are done here in a way that keeps that layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from pathstats.errors import InvalidArgumentError, PathstatsError, UnsupportedLayerError
from pathstats.layer_engine.functional import modularise, symbolic_trace
from pathstats.dag.generators import padded_source
from pathstats.nets.base import WEIGHT_LAYERS  # re-exported: verify's one name for it

__all__ = ["BatchedInitialisations", "WEIGHT_LAYERS"]

_CONV = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


class BatchedInitialisations(fx.Interpreter):
    """Evaluate ``model`` for ``B`` sets of weights at once.

    Parameters
    ----------
    model : torch.nn.Module
        Traced once with :func:`torch.fx.symbolic_trace`; eval mode expected.
    capture : tuple of str
        Names of layers whose input each run keeps in ``captured`` (detached),
        e.g. the classifier's features for :mod:`pathstats.verify.reduction`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3)).eval()
    >>> runner = BatchedInitialisations(net)
    >>> weights = {"0": torch.randn(5, 2, 1, 3, 3), "3": torch.randn(5, 3, 32)}
    >>> x = torch.randn(5, 1, 4, 4)
    >>> out = runner.run_batch(weights, x)
    >>> with torch.no_grad():  # the same net, one initialisation at a time
    ...     _ = net[0].weight.copy_(weights["0"][2]), net[3].weight.copy_(weights["3"][2])
    ...     _ = net[0].bias.zero_(), net[3].bias.zero_()
    >>> torch.allclose(out[2], net(x[2:3])[0], atol=1e-5)
    True
    """

    def __init__(self, model: nn.Module, capture: tuple = ()):
        super().__init__(modularise(symbolic_trace(model), model))
        self.layers = sorted({node.target for node in self.module.graph.nodes if node.op == "call_module"
                              and type(self.module.get_submodule(node.target)) in WEIGHT_LAYERS})
        self.weights: dict = {}
        self.biases: dict = {}
        self.capture = set(capture)  # layers whose inputs the last run keeps, in ``captured``
        self.captured: dict = {}

    def run_batch(self, weights: dict, inputs: torch.Tensor, biases: dict | None = None) -> torch.Tensor:
        """Logits ``(B, K)``; ``weights`` maps each weight layer's name to ``(B,) + weight.shape``.

        ``biases`` maps a weight layer's name to ``(B,) + bias.shape``; a layer
        without an entry has zero biases (every initialisation but PyTorch's default).

        Raises
        ------
        PathstatsError
            If a weight layer of the graph has no weights in ``weights`` (a
            custom module's own parameter read by ``F.linear``: only
            ``nn.Linear`` / ``nn.Conv*d`` layers have a declared initialisation).
        """
        missing = [name for name in self.layers if name not in weights]
        if missing:
            raise UnsupportedLayerError(
                f"no initialisation for the weights of {missing[0]!r} (read by F.linear / F.conv in forward): "
                f"verify draws fresh weights for nn.Linear and nn.Conv1d/2d/3d layers (and their subclasses) only; "
                f"store the weight in such a layer"
            )
        self.weights, self.biases = weights, biases or {}
        try:
            return self.run(inputs)
        finally:
            self.weights, self.biases = {}, {}

    def call_module(self, target, args, kwargs):
        module = self.fetch_attr(target)
        if target in self.capture:
            self.captured[target] = args[0].detach()
        if isinstance(module, nn.Linear):
            out = torch.einsum("bf,bkf->bk", args[0], self.weights[target])
            return out + self.biases[target] if target in self.biases else out
        if type(module) in _CONV:
            return self._conv(module, self.weights[target], args[0], self.biases.get(target))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not module.training and module.running_var is not None:
            return _frozen_batchnorm(module, args[0])
        return super().call_module(target, args, kwargs)

    def call_method(self, target, args, kwargs):
        if target == "view":  # activations are kept channels-last, where a view may need a copy
            return args[0].reshape(*args[1:], **kwargs)
        return super().call_method(target, args, kwargs)

    @staticmethod
    def _conv(module, weight: torch.Tensor, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        batch = x.shape[0]
        padding = module.padding
        if module.padding_mode != "zeros":
            x = _pad(x, module._reversed_padding_repeated_twice, module.padding_mode)
            padding = 0
        grouped = x.reshape((1, batch * x.shape[1]) + x.shape[2:])
        weight = weight.reshape((-1,) + weight.shape[2:])
        if grouped.dim() == 4:
            # oneDNN's grouped convolution, and above all its input gradient, is 2-4x faster
            # channels-last; activations stay in that layout between layers (no copy here)
            grouped = grouped.contiguous(memory_format=torch.channels_last)
            weight = weight.contiguous(memory_format=torch.channels_last)
        bias = bias.reshape(-1) if bias is not None else None  # (B, out) -> one bias per grouped channel
        out = _CONV[type(module)](grouped, weight, bias, module.stride, padding, module.dilation, batch * module.groups)
        return out.reshape((batch, -1) + out.shape[2:])


def _frozen_batchnorm(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode BatchNorm as one multiply-add, which keeps the input's memory layout."""
    scale = module.running_var.add(module.eps).rsqrt()
    if module.weight is not None:
        scale = scale * module.weight
    shift = -module.running_mean * scale
    if module.bias is not None:
        shift = shift + module.bias
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return torch.addcmul(shift.view(shape), x, scale.view(shape))


def _pad(x: torch.Tensor, pads: tuple, mode: str) -> torch.Tensor:
    """``F.pad(x, pads, mode)`` for 2-d images that keeps the channels-last layout of
    grouped activations (``F.pad`` returns them contiguous, and slowly)."""
    if x.dim() != 4:
        return F.pad(x, pads, mode=mode)
    planes = x.permute(2, 3, 0, 1)  # (H, W, B, C): contiguous when x came from a grouped conv

    def sources(size: int, before: int, after: int) -> tuple:
        # the input row (column) each padded one reads: the padding geometry's one home
        # (zero padding reads none; _conv leaves it to the convolution)
        return tuple(padded_source(q, size, before, mode, after=after) for q in range(before + size + after))

    rows, columns = sources(planes.shape[0], pads[2], pads[3]), sources(planes.shape[1], pads[0], pads[1])
    return _PadPlanes.apply(planes, rows, columns, pads[2], pads[0]).permute(2, 3, 0, 1)


class _PadPlanes(torch.autograd.Function):
    """``out[i, j] = x[rows[i], columns[j]]`` on the two leading axes, where ``rows`` and
    ``columns`` are ``0..n-1`` with ``top`` and ``left`` border entries before and a
    few after: one copy of the
    interior and a few border planes forward; backward, the interior gradient plus
    the border planes added onto their sources (``index_select`` would zero-fill
    and scatter every plane, on each axis)."""

    @staticmethod
    def forward(ctx, x, rows: tuple, columns: tuple, top: int, left: int):
        height, width = x.shape[:2]
        ctx.geometry = (rows, columns, top, left, height, width)
        out = x.new_empty((len(rows), len(columns)) + x.shape[2:])
        out[top : top + height, left : left + width] = x
        inner = out[top : top + height]
        for j, source in enumerate(columns):
            if not left <= j < left + width:
                inner[:, j] = x[:, source]
        for i, source in enumerate(rows):
            if not top <= i < top + height:
                out[i] = out[top + source]
        return out

    @staticmethod
    def backward(ctx, grad):
        rows, columns, top, left, height, width = ctx.geometry
        grad_x = grad[top : top + height, left : left + width].clone()
        border_rows = [(i, source) for i, source in enumerate(rows) if not top <= i < top + height]
        border_columns = [(j, source) for j, source in enumerate(columns) if not left <= j < left + width]
        for i, source in border_rows:  # a border row's interior columns
            grad_x[source] += grad[i, left : left + width]
        for j, source in border_columns:  # border columns of every row, corners included
            grad_x[:, source] += grad[top : top + height, j]
            for i, row_source in border_rows:
                grad_x[row_source, source] += grad[i, j]
        return grad_x, None, None, None, None
