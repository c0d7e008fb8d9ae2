"""``conv6``: the CNN of the paper's Section 4.1."""

from __future__ import annotations

import math

from torch import nn

from .base import InitialisedNet, conv_bn_relu, spatial_after

__all__ = ["Conv6"]


class Conv6(InitialisedNet):
    """An input BatchNorm, six ``conv3x3 -> BatchNorm -> ReLU`` blocks, strides 1,2,2,2,2,2, reflect padding,
    then a linear layer.

    The input BatchNorm (one per input channel, as the authors' ``ConvNet``) has
    weight 1, bias 0 and running statistics (0, 1) at initialisation, and ``eps =
    1e-12`` instead of PyTorch's 1e-5, so that in eval mode at initialisation it is
    the identity to float precision (the model-mode predictions of ``conv6`` are
    unchanged) while a constant channel in a training batch still gives 0, not 0/0.

    Parameters
    ----------
    input_shape : tuple, default (3, 32, 32)
        ``(C, H, W)``; the linear layer is sized for it.
    classes : int, default 10
    channels : int, default 64
    strides : sequence of int, default (1, 2, 2, 2, 2, 2)
    """

    def __init__(self, input_shape=(3, 32, 32), classes=10, channels=64, strides=(1, 2, 2, 2, 2, 2)):
        super().__init__()
        layers, c_in = [nn.BatchNorm2d(input_shape[0], eps=1e-12)], input_shape[0]
        for stride in strides:
            layers += conv_bn_relu(c_in, channels, stride=stride)
            c_in = channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(math.prod(spatial_after(self.features, input_shape)), classes)
        self.reset_parameters()
