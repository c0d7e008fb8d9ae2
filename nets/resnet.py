"""``resnet``: a small residual network (beyond the paper's theorems)."""

from __future__ import annotations

import torch
from torch import nn

from .base import InitialisedNet, conv_bn_relu

__all__ = ["BasicBlock", "ResNet", "ResNet18"]


class BasicBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + skip(x))``, torchvision's post-activation block.

    The skip is the identity, or, where the block changes the size or the
    channel count (``stride > 1`` or ``out_channels != channels``), torchvision's
    down-sampling shortcut ``BatchNorm(conv1x1(x, stride))`` named ``downsample``.
    """

    def __init__(self, channels: int, out_channels: int | None = None, stride: int = 1):
        super().__init__()
        out_channels = out_channels or channels
        self.conv1 = nn.Conv2d(channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or out_channels != channels:
            self.downsample = nn.Sequential(nn.Conv2d(channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(out)) + skip)


class ResNet(InitialisedNet):
    """Stem conv, ``stages`` basic blocks with stride-2 conv transitions, global average pooling, linear.

    Zero padding throughout (as in torchvision's ResNets), so border inputs get
    fewer paths; the identity additions are outside the paper's (H), so only
    model mode predicts this net.
    """

    def __init__(self, input_shape=(3, 32, 32), classes=10, channels=32, stages=3):
        super().__init__()
        layers = conv_bn_relu(input_shape[0], channels, padding_mode="zeros")
        for stage in range(stages):
            layers.append(BasicBlock(channels))
            if stage < stages - 1:
                layers += conv_bn_relu(channels, channels, stride=2, padding_mode="zeros")
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, classes)
        self.reset_parameters()


class ResNet18(InitialisedNet):
    """torchvision's ResNet-18 layout: 7x7 stride-2 stem, 3x3 stride-2 max pooling, 4 stages of 2 basic blocks.

    Stages have ``width``, ``2 width``, ``4 width`` and ``8 width`` channels
    (torchvision: ``width = 64``); stages 2 to 4 start with a stride-2 block whose
    shortcut is a 1x1 convolution and BatchNorm.  Global average pooling feeds
    the linear classifier.  Zero padding throughout.

    Parameters
    ----------
    input_shape : tuple, default (3, 32, 32)
    classes : int, default 10
    width : int, default 64
        Channels of the stem and the first stage (small values for tests).
    stem_pool : bool, default True
        Keep the stem's max pooling (False: the CIFAR habit of dropping it).
    """

    def __init__(self, input_shape=(3, 32, 32), classes=10, width=64, stem_pool=True):
        super().__init__()
        layers = [nn.Conv2d(input_shape[0], width, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        if stem_pool:
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        channels = width
        for stage in range(4):
            out = width * 2**stage
            layers += [BasicBlock(channels, out, stride=1 if stage == 0 else 2), BasicBlock(out)]
            channels = out
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, classes)
        self.reset_parameters()
