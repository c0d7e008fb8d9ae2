"""``conv6-avgpool``, ``conv6-maxpool``, ``conv6-strided``: the nets of Figure 3 (Appendix B).

Six ``conv3x3 -> BatchNorm -> ReLU`` blocks; after every second block the size
is halved by a 2x2 average pooling, a 2x2 max pooling, or (strided) by giving
that block's convolution stride 2; then a global average pooling feeds one
neuron per channel to the linear layer.
"""

from __future__ import annotations

from torch import nn

from pathstats.errors import InvalidArgumentError

from .base import InitialisedNet, conv_bn_relu

__all__ = ["PooledConv6"]

DOWNSAMPLING = ("avgpool", "maxpool", "strided")


class PooledConv6(InitialisedNet):
    """Six conv blocks, down-sampling by ``downsampling`` after blocks 2, 4, 6, global average pooling.

    ``padding_mode`` of the convolutions: "reflect" (registered, as the authors'
    code), or "zeros" / "circular" (the variants on which model mode's
    approximations are measured separately).
    """

    def __init__(self, input_shape=(3, 32, 32), classes=10, channels=64, downsampling="avgpool", padding_mode="reflect"):
        super().__init__()
        if downsampling not in DOWNSAMPLING:
            raise InvalidArgumentError(f"downsampling must be one of {DOWNSAMPLING}, not {downsampling!r}")
        layers, c_in = [], input_shape[0]
        for block in range(1, 7):
            stride = 2 if downsampling == "strided" and block % 2 == 0 else 1
            layers += conv_bn_relu(c_in, channels, stride=stride, padding_mode=padding_mode)
            c_in = channels
            if block % 2 == 0 and downsampling != "strided":
                layers.append(nn.AvgPool2d(2) if downsampling == "avgpool" else nn.MaxPool2d(2))
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, classes)
        self.reset_parameters()
