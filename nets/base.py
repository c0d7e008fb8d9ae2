"""What every registered network shares: its declared initialisation.

A network declares, once, the variance of every weight layer
(:meth:`InitialisedNet.init_variances`); the same declaration draws the weights
(:meth:`InitialisedNet.reset_parameters`) and tells the model-mode prediction
which variances to use, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

__all__ = ["InitialisedNet", "conv_bn_relu", "WEIGHT_LAYERS", "spatial_after", "meta_copy", "meta_forward"]

#: The layers whose weights an initialisation draws (and model mode and Monte Carlo redraw):
#: the one home of this tuple (``pathstats.verify`` imports it).
WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class InitialisedNet(nn.Module):
    """A module with the paper's initialisation: He-normal weights, unit-gain logits.

    Every convolution and linear layer gets ``N(0, 2 / fan_in)`` (He), except the
    layer named ``classifier``, which gets ``N(0, 1 / fan_in)`` (no ReLU follows
    the logits); biases are zero, BatchNorm has weight 1, bias 0 and running
    statistics (0, 1).  Subclasses build ``features`` and the last layer
    ``classifier``, and call :meth:`reset_parameters`.
    """

    declared_init = "He-normal 2/fan_in, classifier 1/fan_in, zero biases"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: ``classifier(flatten(features(x)))``; subclasses build those two."""
        return self.classifier(torch.flatten(self.features(x), 1))

    def init_variances(self) -> dict:
        """Map each weight layer's name to the variance its weights are drawn with."""
        return {
            name: (1.0 if name == "classifier" else 2.0) / module.weight[0].numel()
            for name, module in self.named_modules()
            if isinstance(module, WEIGHT_LAYERS)
        }

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> "InitialisedNet":
        """Draw fresh weights from the declared initialisation (seeded by ``generator``)."""
        variances = self.init_variances()
        for name, module in self.named_modules():
            if isinstance(module, WEIGHT_LAYERS):
                module.weight.normal_(0.0, variances[name] ** 0.5, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_parameters()
        return self


def conv_bn_relu(c_in: int, c_out: int, *, stride: int = 1, dilation: int = 1, padding_mode: str = "reflect") -> list:
    """One ``conv3x3 -> BatchNorm -> ReLU`` block, padding = dilation (size kept at stride 1)."""
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False, padding_mode=padding_mode),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    ]


def spatial_after(features: nn.Module, input_shape: tuple) -> tuple:
    """Output shape of ``features`` for one input, computed without arithmetic (meta device)."""
    return tuple(meta_forward(features, input_shape).shape[1:])


def meta_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` on the meta device: shapes without weights or arithmetic
    (eval mode, so BatchNorm does not need a batch); ``model`` itself is untouched."""
    import copy

    return copy.deepcopy(model).to("meta").eval()


def meta_forward(model: nn.Module, input_shape: tuple, *, copy: bool = True,
                 leaf_hook: Callable[[nn.Module, Any], None] | None = None) -> torch.Tensor:
    """The output of one input of shape ``input_shape`` through ``model`` on the meta device.

    The one shape probe: no weights drawn, no arithmetic, instant at any size.  With
    ``copy`` (default) it runs :func:`meta_copy`; without, ``model`` itself, which must
    have been built on the meta device (``with torch.device("meta")``), in its own mode.
    ``leaf_hook(module, output)`` sees each leaf module's output on the way.  A layer that
    cannot read the shape raises torch's error.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU())
    >>> sizes = []
    >>> tuple(meta_forward(net, (3, 9, 9), leaf_hook=lambda m, out: sizes.append(out.numel())).shape), sizes
    ((1, 8, 4, 4), [128, 128])
    >>> net[0].weight.device.type
    'cpu'
    """
    probe = meta_copy(model) if copy else model
    handles = [] if leaf_hook is None else [
        m.register_forward_hook(lambda module, _, output: leaf_hook(module, output))
        for m in probe.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            return probe(torch.empty((1,) + tuple(input_shape), device="meta"))
    finally:
        for handle in handles:
            handle.remove()
