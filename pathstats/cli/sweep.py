"""``pathstats sweep``: predictions across input sizes, with fitted log-log slopes."""

from __future__ import annotations

import argparse

from pathstats._io import check_figure_path, check_output_path, write_json
from pathstats._validate import check_classes
from pathstats.provenance import provenance

from ._arguments import check_sizes
from ._common import PartialResults, print_result, write_after

__all__ = ["register"]


def register(commands) -> None:
    """Add the ``sweep`` sub-command to the sub-parsers object of ``pathstats``' parser."""
    from pathstats.prediction import MODES

    sweep = commands.add_parser(
        "sweep",
        help="predictions across input sizes, with fitted log-log slopes",
        description="Predict at several image sizes s (inputs 3 x s x s) and fit the "
        "log-log slopes of the predicted gradient norms against d (theory: 1/2 for l1, 0 for l2).",
    )
    sweep.add_argument("--arch", required=True, help="registered architecture (see pathstats archs)")
    sweep.add_argument("--sizes", default="32,64,128,256", help="comma-separated sizes s or, for fc, dimensions d")
    sweep.add_argument("--mode", choices=MODES, default="model")
    sweep.add_argument("--classes", type=int, default=10, metavar="K")
    sweep.add_argument("--json", action="store_true", help="print one JSON object")
    sweep.add_argument("--figure", metavar="FILE.png", help="save the S(x)*d heatmap and the log-log plot "
                       "(format from the extension: .png, .pdf or .svg)")
    sweep.add_argument("--out", metavar="FILE.json", help="write the JSON result there, updated after each finished size")
    sweep.set_defaults(handler=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from pathstats.sweep import run_sweep, save_sweep_figure

    check_classes(args.classes)
    shapes = check_sizes(args)
    if args.figure:
        check_figure_path(args.figure)
    if args.out:
        check_output_path(args.out)
    keeper, finished = PartialResults("sweep", args.out, len(shapes), "sizes"), []

    def keep(partial) -> None:
        finished[:] = [partial]
        keeper.keep(_sweep_dict(partial, shapes, args.argv))

    try:
        result = run_sweep(args.arch, shapes, mode=args.mode, classes=args.classes, progress=not args.json, on_size=keep)
    except KeyboardInterrupt:
        return keeper.interrupted(args.json, lambda data: finished[0].table())
    data = _sweep_dict(result, shapes, args.argv)
    print_result(data, args.json, result.table)
    writes = [(args.figure, lambda: save_sweep_figure(result, args.figure), "")]
    if args.out:  # already written after the last size, unless a write failed then
        writes.insert(0, (args.out, lambda: write_json(args.out, data), ""))
    return write_after("sweep", writes, args.json, keeper.failed)


def _sweep_dict(result, shapes: list, argv: list) -> dict:
    return {**result.to_dict(), "complete": len(result.predictions) == len(shapes),
            "pending_shapes": [list(s) for s in shapes[len(result.predictions):]], "provenance": provenance(argv=argv)}
