"""``fc``: the fully connected ReLU net of Theorem 4."""

from __future__ import annotations

import math

from torch import nn

from .base import InitialisedNet

__all__ = ["FullyConnected"]


class FullyConnected(InitialisedNet):
    """Linear -> ReLU layers of the given widths on a flat input, then linear logits."""

    def __init__(self, input_shape=(3072,), classes=10, widths=(512, 512, 512)):
        super().__init__()
        layers, d_in = [nn.Flatten()], math.prod(input_shape)
        for width in widths:
            layers += [nn.Linear(d_in, width), nn.ReLU()]
            d_in = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(d_in, classes)
        self.reset_parameters()
