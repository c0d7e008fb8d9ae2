"""Hypothesis strategies for small random torch networks built from supported layers."""

from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import nn

from pathstats.nets.base import spatial_after


class Residual(nn.Module):
    """``x + f(x)``: an identity skip connection around a shape-preserving body."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return self.body(x) + x


class Stack(nn.Module):
    def __init__(self, blocks, head):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.head = head

    def forward(self, x):
        return self.head(torch.flatten(self.blocks(x), 1))


@st.composite
def conv_layer(draw, channels: int, size: int, allow_stride: bool = True):
    """A Conv2d that fits a ``size x size`` input, any padding mode, stride, dilation, groups."""
    kernel = draw(st.integers(1, min(3, size)))
    dilation = draw(st.integers(1, 2)) if kernel > 1 and size >= 2 * kernel else 1
    span = dilation * (kernel - 1)
    mode = draw(st.sampled_from(["zeros", "circular", "reflect", "replicate"]))
    max_pad = min(span, size - 1) if mode == "reflect" else span
    padding = draw(st.integers(0, max(0, max_pad)))
    stride = draw(st.integers(1, 2)) if allow_stride else 1
    groups = draw(st.sampled_from([g for g in (1, 2, 3) if channels % g == 0]))
    out_channels = groups * draw(st.integers(1, 2))
    return nn.Conv2d(channels, out_channels, kernel, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, padding_mode=mode, bias=False)


@st.composite
def small_nets(draw, theory: bool = False, conv_only: bool = False):
    """A random stack of supported layers with a linear head, in eval mode, and its input shape.

    Convolutions (any padding mode, stride, dilation, groups), BatchNorm with
    random per-channel statistics, ReLU, LeakyReLU, average / max / adaptive
    pooling, nearest up-sampling and residual blocks.  With ``theory=True`` only
    layers inside (H') are drawn (no max pooling, residual addition or LeakyReLU).
    """
    input_shape = (draw(st.integers(1, 3)), draw(st.integers(3, 6)), draw(st.integers(3, 6)))
    shape, blocks = input_shape, []
    for _ in range(draw(st.integers(1, 3))):
        channels, size = shape[0], min(shape[1:])
        kinds = ["conv", "avgpool", "adaptive-avg", "upsample"] + ([] if theory else ["maxpool", "adaptive-max", "residual"])
        kinds = ["conv"] if conv_only else kinds
        choice = draw(st.sampled_from(kinds))
        if choice == "conv":
            layer = draw(conv_layer(channels, size))
            extra = draw(st.sampled_from(["relu", "bn", "none"] + ([] if theory else ["leaky"])))
            tail = {"relu": [nn.ReLU()], "bn": [_random_batchnorm(draw, layer.out_channels), nn.ReLU()],
                    "leaky": [nn.LeakyReLU(0.2)], "none": []}[extra]
            block = nn.Sequential(layer, *tail)
        elif choice in ("avgpool", "maxpool"):
            kernel = draw(st.integers(1, min(3, size)))
            stride = draw(st.integers(1, kernel))
            padding = draw(st.integers(0, kernel // 2))
            if choice == "avgpool":
                block = nn.AvgPool2d(kernel, stride, padding, count_include_pad=draw(st.booleans()))
            else:
                block = nn.MaxPool2d(kernel, stride, padding, ceil_mode=draw(st.booleans()))
        elif choice == "adaptive-avg":
            block = nn.AdaptiveAvgPool2d(draw(st.integers(1, size)))
        elif choice == "adaptive-max":
            block = nn.AdaptiveMaxPool2d(draw(st.integers(1, size)))
        elif choice == "upsample" and max(shape[1:]) <= 5:
            block = nn.Upsample(scale_factor=draw(st.integers(2, 3)), mode="nearest")
        elif choice == "residual":
            mode = draw(st.sampled_from(["zeros", "circular", "reflect", "replicate"])) if size >= 2 else "zeros"
            block = Residual(nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, padding_mode=mode, bias=False), nn.ReLU()))
        else:
            continue
        blocks.append(block)
        shape = spatial_after(nn.Sequential(*blocks), input_shape)
    head = nn.Linear(int(torch.tensor(shape).prod()), draw(st.integers(2, 3)))
    torch.manual_seed(draw(st.integers(0, 2**16)))
    return Stack(blocks, head).eval(), input_shape


def _random_batchnorm(draw, channels: int) -> nn.BatchNorm2d:
    """BatchNorm with per-channel gains that differ, so channels are not exchangeable."""
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([draw(st.sampled_from([0.5, 1.0, 2.0])) for _ in range(channels)]))
        bn.running_var.copy_(torch.tensor([draw(st.sampled_from([0.25, 1.0, 4.0])) for _ in range(channels)]))
    return bn
