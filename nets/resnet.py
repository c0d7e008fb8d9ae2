"""``resnet``: a small residual network (beyond the paper's theorems)."""

from __future__ import annotations

import torch
from torch import nn

from .base import InitialisedNet, conv_bn_relu

__all__ = ["BasicBlock", "ResNet"]


class BasicBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + x)``: an identity skip connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


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
