"""Flags that several commands share (``predict``, ``sweep``, ``verify``), and their checks.

The engines are imported by the functions that need them, not here.
"""

from __future__ import annotations

import argparse

from pathstats._validate import check_architecture_input, check_int, parse_architectures, parse_int_list, parse_shape
from pathstats.errors import InvalidArgumentError

__all__ = ["INIT_CHOICES", "add_size_arguments", "add_model_arguments", "input_shape", "check_sizes"]

#: The ``init`` policies a command line can name (a mapping needs the Python API).
INIT_CHOICES = ("he", "torch", "weights")


def add_size_arguments(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
    """``--d`` or ``--shape`` (one of them required), and with ``sweep`` also ``--sizes``."""
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--d", type=int, metavar="D", help="input dimension: 3 x s x s for image architectures")
    size.add_argument("--shape", metavar="C,H,W", help="input shape, e.g. 3,64,48")
    if sweep:
        size.add_argument("--sizes", metavar="S1,S2,...", help="a dimension sweep over sizes s (inputs 3 x s x s; d for fc)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--arch``, the input size, ``--mode``, ``--classes`` and ``--init`` of a prediction."""
    from pathstats.prediction import MODES

    parser.add_argument("--arch", required=True, help="registered architecture (see pathstats archs)")
    add_size_arguments(parser)
    parser.add_argument("--mode", choices=MODES, default="model", help="model (default): the module as initialised; theory: the paper's assumptions (H)/(H') literally "
                        "(docs page \"Command line\", section \"Prediction modes\")")
    parser.add_argument("--classes", type=int, default=10, metavar="K", help="number of classes (default 10)")
    parser.add_argument("--init", choices=INIT_CHOICES, help="model-mode weight variances (default: the declared init)")


def input_shape(args: argparse.Namespace, arch: str | None = None) -> tuple:
    """The input shape of ``--shape``, or of ``--d`` for ``arch`` (default ``--arch``)."""
    from pathstats import nets

    if args.shape:
        return parse_shape(args.shape)
    return nets.shape_for_d(arch or args.arch, check_int(args.d, "--d", minimum=1, hint="the input dimension"))


def check_sizes(args: argparse.Namespace) -> list:
    """The shapes of ``--sizes`` for one registered architecture (two sizes at least)."""
    from pathstats import nets

    archs = parse_architectures(args.arch)
    if len(archs) > 1:
        raise InvalidArgumentError("--sizes sweeps one architecture; give a single --arch")
    arch = nets.get(archs[0])
    sizes = parse_int_list(args.sizes, "--sizes", min_items=2, why="a log-log slope needs at least two sizes")
    shapes = [(arch.channels, s, s) if arch.image else (s,) for s in sizes]
    for shape in shapes:
        check_architecture_input(arch.name, shape, args.classes)
    return shapes
