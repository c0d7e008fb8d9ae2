"""``conv8``: the CNN of the up-sampled CIFAR-10 experiments (paper, Appendix G.1)."""

from __future__ import annotations

from torch import nn

from .base import InitialisedNet, conv_bn_relu

__all__ = ["Conv8"]


class Conv8(InitialisedNet):
    """Eight ``conv3x3 -> BatchNorm -> ReLU`` blocks dilated by ``size // native_side``.

    2x2 max pooling follows blocks 2, 4, 6 and 8, then a global max pooling
    feeds one neuron per channel to the linear layer.  Dilation keeps the
    kernels' reach in the image the same at 32, 64, 128 and 256 pixels;
    reflect padding equals the dilation, so convolutions keep the size.
    ``native_side`` is the side of the images before up-sampling (default 32,
    CIFAR-10's): up-sampled 8-pixel digits at 16, 32, 64 get dilation 2, 4, 8.
    """

    def __init__(self, input_shape=(3, 32, 32), classes=10, channels=64, native_side=32):
        super().__init__()
        dilation = max(1, input_shape[-1] // int(native_side))
        layers, c_in = [], input_shape[0]
        for block in range(1, 9):
            layers += conv_bn_relu(c_in, channels, dilation=dilation)
            c_in = channels
            if block % 2 == 0:
                layers.append(nn.MaxPool2d(2))
        layers.append(nn.AdaptiveMaxPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, classes)
        self.reset_parameters()
