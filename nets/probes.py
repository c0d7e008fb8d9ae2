"""Small networks that each isolate one departure from the paper's assumptions.

They are what the model-mode tests and the model-mode accuracy table
(``benchmarks/model_mode.py``, docs page "Where the assumptions fail") run:
each is one kind of layer arrangement, repeated ``depth`` times between a
standard-normal input and a linear classifier.

>>> from pathstats.nets.probes import Probe
>>> [type(layer).__name__ for layer in Probe("double-relu", (3, 8, 8), channels=4).features][:5]
['Conv2d', 'BatchNorm2d', 'ReLU', 'ReLU', 'Conv2d']
"""

from __future__ import annotations

import math

from torch import nn

from pathstats.errors import InvalidArgumentError

from .base import InitialisedNet, conv_bn_relu, spatial_after
from .resnet import BasicBlock

__all__ = ["KINDS", "Probe"]

#: kind -> what one of its ``depth`` stages is
KINDS = {
    "double-relu": "conv3x3-BN-ReLU-ReLU (a ReLU on a ReLU's output)",
    "residual": "a post-add-ReLU basic block (after a conv3x3-BN-ReLU stem)",
    "maxpool": "conv3x3-BN-ReLU then 2x2 max pooling (VGG-style, disjoint windows)",
    "maxpool-overlap": "conv3x3-BN-ReLU then 3x3 stride-2 max pooling (overlapping windows, ResNet stem)",
    "pool-before-relu": "conv3x3-BN then 2x2 max pooling then ReLU",
    "gap": "conv3x3-BN-ReLU; global average pooling after the last stage",
}


class Probe(InitialisedNet):
    """``depth`` stages of one kind (:data:`KINDS`), zero padding, flatten, linear classifier.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    input_shape : tuple, default (3, 16, 16)
    classes : int, default 10
    channels : int, default 16
    depth : int, default 2
    """

    def __init__(self, kind, input_shape=(3, 16, 16), classes=10, channels=16, depth=2):
        super().__init__()
        if kind not in KINDS:
            raise InvalidArgumentError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
        layers, c_in = [], input_shape[0]
        if kind == "residual":
            layers, c_in = conv_bn_relu(c_in, channels, padding_mode="zeros"), channels
        for _ in range(depth):
            if kind == "residual":
                layers.append(BasicBlock(channels))
            elif kind == "pool-before-relu":
                layers += conv_bn_relu(c_in, channels, padding_mode="zeros")[:2] + [nn.MaxPool2d(2), nn.ReLU()]
            else:
                layers += conv_bn_relu(c_in, channels, padding_mode="zeros")
                layers += {"double-relu": [nn.ReLU()], "maxpool": [nn.MaxPool2d(2)],
                           "maxpool-overlap": [nn.MaxPool2d(3, stride=2, padding=1)]}.get(kind, [])
            c_in = channels
        if kind == "gap":
            layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(math.prod(spatial_after(self.features, input_shape)), classes)
        self.reset_parameters()
