"""``conv6``: the CNN of the paper's Section 4.1."""

from __future__ import annotations

import math

from torch import nn

from .base import InitialisedNet, conv_bn_relu, spatial_after

__all__ = ["Conv6"]


class Conv6(InitialisedNet):
    """Six ``conv3x3 -> BatchNorm -> ReLU`` blocks, strides 1,2,2,2,2,2, reflect padding, then a linear layer.

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
        layers, c_in = [], input_shape[0]
        for stride in strides:
            layers += conv_bn_relu(c_in, channels, stride=stride)
            c_in = channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(math.prod(spatial_after(self.features, input_shape)), classes)
        self.reset_parameters()
