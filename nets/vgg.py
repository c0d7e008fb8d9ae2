"""``vgg``: a VGG-style network (VGG-11 layout with BatchNorm, CIFAR head)."""

from __future__ import annotations

from torch import nn

from .base import InitialisedNet, conv_bn_relu

__all__ = ["VGG", "VGG11"]

#: VGG-11 ("A"): channels of each ``conv3x3-BN-ReLU`` block in units of ``width``, "M" a 2x2 max pooling.
VGG11 = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")


class VGG(InitialisedNet):
    """``conv3x3 -> BatchNorm -> ReLU`` blocks (zero padding) with 2x2 max pooling, global average pooling, linear.

    Parameters
    ----------
    input_shape : tuple, default (3, 32, 32)
    classes : int, default 10
    width : int, default 64
        Channels of the first block (VGG: 64); the others scale with it.
    layout : sequence, default :data:`VGG11`
        Block widths in units of ``width`` and ``"M"`` for a max pooling.
    """

    def __init__(self, input_shape=(3, 32, 32), classes=10, width=64, layout=VGG11):
        super().__init__()
        layers, c_in = [], input_shape[0]
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += conv_bn_relu(c_in, width * item, padding_mode="zeros")
                c_in = width * item
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, classes)
        self.reset_parameters()
