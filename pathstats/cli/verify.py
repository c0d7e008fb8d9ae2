"""``pathstats verify``: Monte Carlo Jacobians over random initialisations against the prediction.

The work (planning, the Monte Carlo, sweeps, comparisons, resuming) is
:mod:`pathstats.verify`'s; this module parses the flags, checks them and prints.
"""

from __future__ import annotations

import argparse
import os
import sys

from pathstats._io import check_output_path, write_json
from pathstats._validate import check_architecture_input, check_classes, check_device, check_int, check_seed, parse_architectures
from pathstats.errors import InvalidArgumentError
from pathstats.provenance import provenance

from ._arguments import INIT_CHOICES, add_size_arguments, check_sizes, input_shape
from ._common import PartialResults, print_result, write_after

__all__ = ["register"]


def register(commands) -> None:
    """Add the ``verify`` sub-command to the sub-parsers object of ``pathstats``' parser."""
    verify = commands.add_parser(
        "verify",
        help="Monte Carlo Jacobians over random initialisations against the prediction",
        description="Draw N seeded initialisations of a registered architecture, measure the "
        "input Jacobians of all logits by autograd, and compare E[(do/dx)^2], its total and "
        "the gradient norms with the model-mode prediction (z-scores, map goodness of fit).",
    )
    verify.add_argument("--arch", required=True, help="registered architecture, or several separated by commas to compare "
                        "them (e.g. conv6-strided,conv6-avgpool,conv6-maxpool: Figure 3 at initialisation)")
    add_size_arguments(verify, sweep=True)
    verify.add_argument("--samples", type=int, default=200, metavar="N", help="initialisations (default 200)")
    verify.add_argument("--seed", type=int, default=0, metavar="S", help="seed of weights, inputs and labels (default 0)")
    verify.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    verify.add_argument("--batch", type=int, metavar="B", help="initialisations evaluated together (default: 64, fewer for large inputs)")
    verify.add_argument("--classes", type=int, default=10, metavar="K")
    verify.add_argument("--init", choices=INIT_CHOICES, help="the law each initialisation is drawn from, and the "
                        "prediction's variances: he (N(0, 2/fan_in)), torch (each layer's own reset_parameters, biases "
                        "included), weights (N(0, the mean square of the built weights)); default: the declared init")
    verify.add_argument("--raw", action="store_true", help="report raw logit gradients, without integrating the classifier's "
                        "weights analytically (same mean, higher variance)")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.add_argument("--out", metavar="DIR", help="write verify.json and maps.png there (sweeps and comparisons: "
                        "sweep.json or comparison.json, updated after each finished size or net, and a figure)")
    verify.add_argument("--resume", action="store_true", help="with --sizes and --out: keep the sizes that an interrupted "
                        "run of the same sweep (same options) finished in DIR/sweep.json, and run the others")
    verify.add_argument("--figure-format", choices=["png", "pdf", "svg"], default="png", help="format of the figure "
                        "written under --out (default png)")
    verify.set_defaults(handler=_cmd_verify)


def _check_verify_arguments(args: argparse.Namespace) -> list:
    """Check every flag verify takes and plan each run (model, prediction, the map
    test's minimum) before any Monte Carlo; return the plans."""
    from pathstats.verify.report import plan_runs

    check_seed(args.seed)
    check_classes(args.classes)
    check_device(args.device)
    check_int(args.samples, "--samples", minimum=2)
    if args.batch is not None:
        check_int(args.batch, "--batch", minimum=1, hint="initialisations evaluated together")
    if args.out:
        check_output_path(args.out, directory=True)
    if args.resume and not (args.sizes and args.out):
        raise InvalidArgumentError("--resume continues a sweep: give --sizes and the --out folder of the interrupted run")
    if args.sizes:
        shapes = check_sizes(args)
        archs = [args.arch] * len(shapes)
        check_seed(args.seed + len(shapes) - 1, "--seed (plus one per size)")
    else:
        archs = parse_architectures(args.arch)
        shape = input_shape(args, archs[0])
        for arch in archs:
            check_architecture_input(arch, shape, args.classes)
        shapes = [shape] * len(archs)
    args.finished = _finished_sizes(os.path.join(args.out, "sweep.json"), args, shapes) if args.resume else []
    return plan_runs(archs, shapes, args.samples, classes=args.classes, batch=args.batch, init=args.init,
                     progress=not args.json, unit="size" if args.sizes else "net", names=("--samples", "--batch"))


def _cmd_verify(args: argparse.Namespace) -> int:
    from pathstats.verify.report import verify, verify_text, write_outputs

    plans = _check_verify_arguments(args)
    if len(plans) > 1 or args.sizes:
        return _verify_many(args, plans)
    plan = plans[0]
    report, result, prediction = verify(plan.arch, plan.input_shape, samples=args.samples, seed=args.seed,
                                        device=args.device, classes=args.classes, batch=args.batch, progress=not args.json,
                                        reduce=not args.raw, plan=plan)
    report["provenance"] = provenance(args.seed, args.device, args.argv)
    print_result(report, args.json, lambda: verify_text(report))
    written: list = []
    status = write_after("verify", [(args.out, lambda: written.extend(
        write_outputs(args.out, report, result, prediction, figure_format=args.figure_format)), "")], True)
    if not args.json:
        for path in written:
            print(f"wrote {path}")
    return status


def _verify_many(args: argparse.Namespace, plans: list) -> int:
    from pathstats.verify.scaling import comparison_text, save_comparison_plot, save_sweep_plot, sweep_text, verify_plans

    name = "sweep" if args.sizes else "comparison"
    json_path = os.path.join(args.out, f"{name}.json") if args.out else None
    figure_path = os.path.join(args.out, f"{name}.{args.figure_format}") if args.out else None
    keeper = PartialResults("verify", json_path, len(plans), "sizes" if args.sizes else "nets")

    def keep(data: dict) -> None:
        data["provenance"] = provenance(args.seed, args.device, args.argv)
        keeper.keep(data)

    text = sweep_text if args.sizes else comparison_text
    try:
        data = verify_plans(plans, args.samples, sweep=bool(args.sizes), seed=args.seed, device=args.device, batch=args.batch,
                            progress=not args.json, reduce=not args.raw, classes=args.classes, on_row=keep,
                            finished=args.finished)
    except KeyboardInterrupt:
        return keeper.interrupted(args.json, text)
    data["provenance"] = provenance(args.seed, args.device, args.argv)
    print_result(data, args.json, lambda: text(data))
    plot = save_sweep_plot if args.sizes else save_comparison_plot
    writes = [(figure_path, lambda: plot(data, figure_path), "")]
    if keeper.failed:
        writes.insert(0, (json_path, lambda: write_json(json_path, data), ""))
    elif json_path and not args.json:
        print(f"wrote {json_path}")
    return write_after("verify", writes, args.json, keeper.failed)


def _finished_sizes(path: str, args: argparse.Namespace, shapes: list) -> list:
    """The rows that an interrupted run of this sweep left in ``path`` (for --resume)."""
    from pathstats.verify.scaling import read_resumable_rows

    try:
        rows = read_resumable_rows(path, args.arch, shapes, args.samples, args.device, seed=args.seed,
                                   batch=args.batch, reduce=not args.raw, classes=args.classes, init=args.init)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"--resume: {exc}; give the same options, or another --out folder") from None
    if rows is None:
        print(f"pathstats verify: nothing to resume in {args.out} yet: running every size", file=sys.stderr)
        return []
    print(f"pathstats verify: resuming: {len(rows)} of {len(shapes)} sizes already finished in {path}", file=sys.stderr)
    return rows
