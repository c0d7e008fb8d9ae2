"""The registry of architectures: name -> how to build it and what input it reads."""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from dataclasses import dataclass
from typing import Callable

from torch import nn

from pathstats.errors import InvalidArgumentError, PathstatsError, UnknownArchitectureError

from .conv6 import Conv6
from .conv8 import Conv8
from .fc import FullyConnected
from .pooled import PooledConv6
from .resnet import ResNet, ResNet18
from .vgg import VGG

__all__ = ["Architecture", "ARCHITECTURES", "UnknownArchitectureError", "get", "build", "shape_for_d", "measured_gap"]

#: model mode against the Monte Carlo on each registered net at its default input,
#: written by ``benchmarks/registered_gaps.py`` (with the provenance of each measurement)
MEASURED_GAPS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "measured_gaps.json")


@dataclass(frozen=True)
class Architecture:
    """A registered network: a factory ``(input_shape, classes) -> nn.Module``."""

    name: str
    description: str
    factory: Callable[..., nn.Module]
    image: bool = True  # reads 3 x s x s images; else a flat vector of d numbers
    channels: int = 3
    width_option: str | None = "channels"  # the factory's keyword that sets the width (``build(channels=...)``)
    native_side_option: bool = False  # the factory reads ``native_side`` (conv8's dilation)

    def default_shape(self, d: int) -> tuple:
        return shape_for_d(self, d)

    def build(self, input_shape: tuple, classes: int = 10, *, channels: int | None = None,
              native_side: int | None = None, **options) -> nn.Module:
        """Build the module for an input shape (batch axis excluded), in eval mode.

        ``channels`` sets the width (every registered net has one: conv nets their
        channels, ``resnet18``/``vgg`` their base width, ``fc`` its hidden widths);
        ``native_side`` is the image side before up-sampling, read by nets whose
        layout depends on it (``conv8``'s dilation) and ignored by the others.

        >>> get("conv6").build((3, 32, 32), channels=8).classifier.in_features
        8
        """
        if channels is not None:
            if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
                raise InvalidArgumentError(f"--channels must be a positive integer, got {channels!r}")
            # fc's width is that of each of its three hidden layers
            options[self.width_option] = (channels,) * 3 if self.width_option == "widths" else channels
        if native_side is not None and self.native_side_option:
            options["native_side"] = native_side
        try:
            return self.factory(input_shape=tuple(input_shape), classes=classes, **options).eval()
        except (RuntimeError, ValueError) as exc:
            raise InvalidArgumentError(f"{self.name} cannot read inputs of shape {tuple(input_shape)}: {str(exc).splitlines()[0]}") from None


ARCHITECTURES = {
    arch.name: arch
    for arch in [
        Architecture("conv6", "paper 4.1: input BN, 6 x (conv3x3-BN-ReLU), 64 ch, strides 1,2,2,2,2,2, reflect pad, fc",
                     Conv6),
        Architecture("conv8", "paper G.1: 8 x (conv3x3-BN-ReLU) dilated size/native side (32 by default), 2x2 max pools, "
                     "global max pool, fc", Conv8, native_side_option=True),
        Architecture("conv6-avgpool", "paper App. B: 6 conv blocks, 2x2 avg pool after blocks 2,4,6, global avg pool, fc",
                     lambda **kw: PooledConv6(downsampling="avgpool", **kw)),
        Architecture("conv6-maxpool", "paper App. B: as conv6-avgpool with 2x2 max pools", lambda **kw: PooledConv6(downsampling="maxpool", **kw)),
        Architecture("conv6-strided", "paper App. B: as conv6-avgpool, blocks 2,4,6 convolve with stride 2 instead",
                     lambda **kw: PooledConv6(downsampling="strided", **kw)),
        Architecture("fc", "Theorem 4: fully connected ReLU net, 3 hidden layers of 512, linear logits",
                     FullyConnected, image=False, width_option="widths"),
        Architecture("resnet", "residual net: stem, 3 identity-skip basic blocks (32 ch, zero pad), global avg pool, fc", ResNet),
        Architecture("resnet18", "torchvision-style ResNet-18: 7x7/2 stem, 3x3/2 max pool, 4 x 2 post-add-ReLU basic blocks "
                     "(64-512 ch, 1x1 conv+BN shortcuts), global avg pool, fc; option width", ResNet18, width_option="width"),
        Architecture("resnet18-nopool", "resnet18 without the stem max pooling (the CIFAR habit); option width",
                     lambda **kw: ResNet18(stem_pool=False, **kw), width_option="width"),
        Architecture("vgg", "VGG-11 layout: 8 x (conv3x3-BN-ReLU), 2x2 max pools, 64-512 ch, global avg pool, fc; option width", VGG, width_option="width"),
    ]
}


def get(name: str) -> Architecture:
    """Return the registered architecture ``name``."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise UnknownArchitectureError(f"unknown architecture {name!r}; registered: {', '.join(ARCHITECTURES)}") from None


def shape_for_d(arch: Architecture | str, d: int) -> tuple:
    """Read ``--d D`` as an input shape: ``(3, s, s)`` for images, ``(d,)`` otherwise.

    Raises
    ------
    PathstatsError
        If ``d`` is not ``3 s^2``; the message names the nearest ``d`` that work.

    Examples
    --------
    >>> shape_for_d("conv6", 3072)
    (3, 32, 32)
    >>> shape_for_d("conv6", 3000)
    Traceback (most recent call last):
    ...
    pathstats.errors.InvalidArgumentError: conv6 reads 3 x s x s images, and d = 3000 is not 3 s^2: try --d 2883 (3x31x31) or --d 3072 (3x32x32), or give --shape C,H,W
    """
    arch = get(arch) if isinstance(arch, str) else arch
    if d < 1:
        raise InvalidArgumentError(f"d must be positive, got {d}")
    if not arch.image:
        return (d,)
    c = arch.channels
    side = math.isqrt(d // c)
    if c * side * side == d and side > 0:
        return (c, side, side)
    low, high = max(side, 1), side + 1
    raise InvalidArgumentError(
        f"{arch.name} reads {c} x s x s images, and d = {d} is not {c} s^2: try --d {c * low * low} ({c}x{low}x{low}) "
        f"or --d {c * high * high} ({c}x{high}x{high}), or give --shape C,H,W"
    )


def build(name: str, input_shape: tuple, classes: int = 10, **options) -> nn.Module:
    """Build registered architecture ``name`` for ``input_shape``, in eval mode."""
    return get(name).build(input_shape, classes, **options)


@lru_cache(maxsize=1)
def _measured_gaps() -> dict:
    try:
        with open(MEASURED_GAPS_PATH) as f:
            return json.load(f)["entries"]
    except (OSError, ValueError, KeyError):
        return {}


def measured_gap(name: str, input_shape: tuple) -> dict | None:
    """The stored measurement of model mode against the Monte Carlo for registered
    net ``name`` at ``input_shape`` (declared initialisation, 10 classes), or None.

    The entry has ``predicted`` and ``measured`` ``E||do/dx||_2^2``, the ``stderr``,
    ``z``, the number of initialisations ``samples``, the ``seed`` and the provenance.

    Examples
    --------
    >>> gap = measured_gap("conv6-avgpool", (3, 32, 32))
    >>> gap["measured"] > gap["predicted"], gap["samples"] >= 1000
    (True, True)
    >>> measured_gap("conv6", (3, 64, 64)) is None
    True
    """
    entry = _measured_gaps().get(name)
    if entry is None or tuple(entry["input_shape"]) != tuple(input_shape):
        return None
    return entry
