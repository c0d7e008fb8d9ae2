"""What every registered network shares: its declared initialisation.

A network declares, once, the variance of every weight layer
(:meth:`InitialisedNet.init_variances`); the same declaration draws the weights
(:meth:`InitialisedNet.reset_parameters`) and tells the model-mode prediction
which variances to use, so the two cannot drift apart.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["InitialisedNet", "conv_bn_relu", "WEIGHT_LAYERS", "spatial_after"]

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
    import copy

    probe = copy.deepcopy(features).to("meta").eval()
    with torch.no_grad():
        return tuple(probe(torch.empty((1,) + tuple(input_shape), device="meta")).shape[1:])
