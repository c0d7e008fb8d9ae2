"""Running ``B`` initialisations of one network at once, as ``B`` examples of a batch.

A :class:`torch.fx.Interpreter` runs the traced module on inputs ``(B, ...)``
with example ``b`` seeing its own weights: a convolution becomes one grouped
convolution (``groups = B * g``) and a linear layer one batched product; every
other layer (BatchNorm in eval mode, activations, pooling, flatten, additions)
already treats the examples of a batch separately.  Weights are plain tensors
that do not require gradients, so a backward pass computes input gradients only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

__all__ = ["BatchedInitialisations", "WEIGHT_LAYERS"]

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_CONV = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


class BatchedInitialisations(fx.Interpreter):
    """Evaluate ``model`` for ``B`` sets of weights at once.

    Parameters
    ----------
    model : torch.nn.Module
        Traced once with :func:`torch.fx.symbolic_trace`; eval mode expected.

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

    def __init__(self, model: nn.Module):
        super().__init__(fx.symbolic_trace(model))
        self.weights: dict = {}

    def run_batch(self, weights: dict, inputs: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)``; ``weights`` maps each weight layer's name to ``(B,) + weight.shape``.

        Biases are taken as zero (the declared initialisation).
        """
        self.weights = weights
        try:
            return self.run(inputs)
        finally:
            self.weights = {}

    def call_module(self, target, args, kwargs):
        module = self.fetch_attr(target)
        if isinstance(module, nn.Linear):
            return torch.einsum("bf,bkf->bk", args[0], self.weights[target])
        if type(module) in _CONV:
            return self._conv(module, self.weights[target], args[0])
        return super().call_module(target, args, kwargs)

    @staticmethod
    def _conv(module, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        padding = module.padding
        if module.padding_mode != "zeros":
            x = F.pad(x, module._reversed_padding_repeated_twice, mode=module.padding_mode)
            padding = 0
        grouped = x.reshape((1, batch * x.shape[1]) + x.shape[2:])
        out = _CONV[type(module)](grouped, weight.reshape((-1,) + weight.shape[2:]), None, module.stride, padding,
                                  module.dilation, batch * module.groups)
        return out.reshape((batch, -1) + out.shape[2:])
