"""The ``pathstats`` command line (SPEC section 5).

Every error a user can cause ends the command with one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Sequence

from ._format import format_table
from .analysis import DagReport, analyze_dag
from .errors import PathstatsError
from .generators import EXAMPLES
from .graphio import read_node_link, resolve_node
from .prediction import MODES, predict, save_array
from .robust.cli_attack import register as register_attack
from .robust.cli_experiment import register as register_experiment

__all__ = ["main", "run"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pathstats",
        description="Path sums over computational DAGs and the input-gradient "
        "predictions of Simon-Gabriel et al. (ICML 2019).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    dag = commands.add_parser(
        "dag",
        help="exact path sums, path counts, Lemma 7 and (S) on a DAG file",
        description="Read a DAG in networkx node-link JSON (parallel edges allowed) and "
        "print, per input node, the exact path sum S(x), the exact number of paths to "
        "the output, Lemma 7's total and whether the symmetry assumption (S) holds.",
    )
    source = dag.add_mutually_exclusive_group(required=True)
    source.add_argument("graph", nargs="?", metavar="GRAPH.json", help="node-link JSON file")
    source.add_argument("--example", choices=sorted(EXAMPLES), help="an embedded example DAG instead of a file")
    dag.add_argument("--output", metavar="NODE", help="the output node o (default: the only sink)")
    dag.add_argument("--json", action="store_true", help="print one JSON object")
    dag.add_argument("--max-rows", type=int, default=40, metavar="N", help="input rows in the table (default 40)")
    dag.set_defaults(handler=_cmd_dag)

    predict = commands.add_parser(
        "predict",
        help="predicted input gradients of an architecture at initialisation",
        description="Predict E[(do/dx)^2] per input coordinate at initialisation, with "
        "path sums, Lemma 7, (S), exact path counts, the average-pooling factor and the "
        "predicted norms of logit and loss gradients.",
    )
    _add_model_arguments(predict)
    predict.add_argument("--json", action="store_true", help="print one JSON object")
    predict.add_argument("--save-map", metavar="FILE.npy", help="write the predicted E[(do/dx)^2] map (float64, input shape)")
    predict.set_defaults(handler=_cmd_predict)

    archs = commands.add_parser("archs", help="list the registered architectures")
    archs.add_argument("--json", action="store_true", help="print one JSON object")
    archs.set_defaults(handler=_cmd_archs)

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
    sweep.add_argument("--figure", metavar="FILE.png", help="save the S(x)*d heatmap and the log-log plot")
    sweep.set_defaults(handler=_cmd_sweep)

    verify = commands.add_parser(
        "verify",
        help="Monte Carlo Jacobians over random initialisations against the prediction",
        description="Draw N seeded initialisations of a registered architecture, measure the "
        "input Jacobians of all logits by autograd, and compare E[(do/dx)^2], its total and "
        "the gradient norms with the model-mode prediction (z-scores, map goodness of fit).",
    )
    verify.add_argument("--arch", required=True, help="registered architecture, or several separated by commas to compare "
                        "them (e.g. conv6-strided,conv6-avgpool,conv6-maxpool: Figure 3 at initialisation)")
    _add_size_arguments(verify, sweep=True)
    verify.add_argument("--samples", type=int, default=200, metavar="N", help="initialisations (default 200)")
    verify.add_argument("--seed", type=int, default=0, metavar="S", help="seed of weights, inputs and labels (default 0)")
    verify.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    verify.add_argument("--batch", type=int, metavar="B", help="initialisations evaluated together (default: 64, fewer for large inputs)")
    verify.add_argument("--classes", type=int, default=10, metavar="K")
    verify.add_argument("--raw", action="store_true", help="report raw logit gradients, without integrating the classifier's "
                        "weights analytically (same mean, higher variance)")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.add_argument("--out", metavar="DIR", help="write verify.json and maps.png there")
    verify.set_defaults(handler=_cmd_verify)
    register_attack(commands)
    from pathstats.robust import cli_train; cli_train.register(commands)  # noqa: E702 - one line per command
    register_experiment(commands)
    return parser


def _add_size_arguments(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--d", type=int, metavar="D", help="input dimension: 3 x s x s for image architectures")
    size.add_argument("--shape", metavar="C,H,W", help="input shape, e.g. 3,64,48")
    if sweep:
        size.add_argument("--sizes", metavar="S1,S2,...", help="a dimension sweep over sizes s (inputs 3 x s x s; d for fc)")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", required=True, help="registered architecture (see pathstats archs)")
    _add_size_arguments(parser)
    parser.add_argument("--mode", choices=MODES, default="model", help="model (default) or theory, SPEC section 3")
    parser.add_argument("--classes", type=int, default=10, metavar="K", help="number of classes (default 10)")
    parser.add_argument("--init", choices=["he", "torch", "weights"], help="model-mode weight variances (default: the declared init)")


def _input_shape(args: argparse.Namespace, arch: str | None = None) -> tuple:
    from pathstats import nets

    if args.shape:
        try:
            shape = tuple(int(n) for n in args.shape.split(","))
        except ValueError:
            raise PathstatsError(f"--shape takes comma-separated integers like 3,32,32, not {args.shape!r}") from None
        if not shape or min(shape) < 1:
            raise PathstatsError(f"--shape needs positive sizes, got {args.shape!r}")
        return shape
    return nets.shape_for_d(arch or args.arch, args.d)


def _default_output(G) -> object:
    sinks = [v for v in G if G.out_degree(v) == 0]
    if len(sinks) != 1:
        raise PathstatsError(f"the graph has {len(sinks)} sinks {sinks[:10]!r}; name the output with --output NODE")
    return sinks[0]


def _cmd_dag(args: argparse.Namespace) -> int:
    if args.example:
        G, output = EXAMPLES[args.example][1]()
        source = f"example {args.example}"
    else:
        G, output = read_node_link(args.graph), None
        source = args.graph
    if args.output is not None:
        output = resolve_node(G, args.output)
    elif output is None:
        output = _default_output(G)
    start = time.perf_counter()
    report = analyze_dag(G, output)
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps({**report.to_dict(), "elapsed_s": elapsed}))
    else:
        print(_dag_text(report, source, G.number_of_edges(), elapsed, args.max_rows))
    return 0


def _dag_text(report: DagReport, source: str, n_edges: int, elapsed: float, max_rows: int) -> str:
    d = len(report.inputs)
    class_of = {x: k for k, members in enumerate(report.symmetry_classes, start=1) for x in members}
    rows = [
        [repr(item.node), str(item.path_sum), f"{float(item.path_sum) * d:.6g}", item.path_count, class_of[item.node]]
        for item in report.inputs[:max_rows]
    ]
    lines = [
        f"{source}: output {report.output!r}, d = {d} inputs, {n_edges} edges",
        "",
        format_table(["input x", "S(x) exact", "S(x)*d", "paths", "class"], rows),
    ]
    if d > max_rows:
        lines.append(f"... {d - max_rows} more inputs (--max-rows, or --json for all)")
    scaled = [float(item.path_sum) * d for item in report.inputs]
    lines += [
        "",
        f"Lemma 7 total sum_x S(x) = {report.lemma7_total}" + ("  (= 1, as Lemma 7 says)" if report.lemma7_total == 1 else ""),
    ]
    if report.symmetric:
        lines.append(f"(S) holds: one class of inputs, so S(x) = 1/d = 1/{d} (Lemma 8)")
    else:
        lines.append(
            f"(S) fails: {len(report.symmetry_classes)} classes of inputs; "
            f"S(x)*d ranges from {min(scaled):.6g} to {max(scaled):.6g}"
        )
    lines.append(f"computed in {elapsed:.3g} s")
    return "\n".join(lines)


def _cmd_predict(args: argparse.Namespace) -> int:
    shape = _input_shape(args)
    result = predict(args.arch, shape, mode=args.mode, classes=args.classes, init=args.init)
    if args.save_map:
        save_array(args.save_map, result.grad_sq_map)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(_predict_text(result))
        if args.save_map:
            print(f"wrote {args.save_map} (float64, shape {'x'.join(map(str, result.input_shape))})")
    return 0


def _predict_text(p) -> str:
    r = p.to_dict()
    g, s, logit, loss = r["grad_sq"], r["path_sum"], p.logit_grad, p.loss_grad
    shape = "x".join(map(str, p.input_shape))
    rows = [
        ["E[(do/dx)^2] per coordinate", f"min {g['min']:.4g}  mean {g['mean']:.4g}  max {g['max']:.4g}", f"1/d = {1 / p.d:.4g}"],
        ["E||do/dx||_2^2 (total)", f"{g['total']:.6g}", "Thm 5: 1, Thm 11: x avgpool factor"],
        ["avg-pooling factor 1/(a1...an)", f"{p.avgpool_factor:.6g}", "Theorem 11"],
        ["path sum S(x)*d", f"min {s['min_times_d']:.4g}  max {s['max_times_d']:.4g}", "1 under (S) (Lemma 8)"],
        ["Lemma 7 total sum_x S(x)", f"{r['lemma7_total']:.12g}", "exactly 1 (Lemma 7)"],
        ["symmetry (S)", "holds" if p.symmetric else f"fails: {p.symmetry_classes} classes of inputs", "path-degree multisets"],
        ["paths |P(x,o)|", f"min {r['n_paths']['min']}  max {r['n_paths']['max']}", "exact"],
        ["E||do/dx||_1", f"{logit['l1']:.5g}", "Gaussian approximation"],
        ["", f"<= {logit['l1_upper']:.5g}", "Jensen: sum_x sqrt(E[(do/dx)^2])"],
        [f"E||dL/dx||_2 (K = {p.classes})", f"<= {loss['l2']:.5g}", f"sqrt(E||.||^2), factor (K-1)/K = {loss['factor']:.4g}"],
        ["E||dL/dx||_1", f"{loss['l1']:.5g}  (<= {loss['l1_upper']:.5g})", "Gaussian approx. (Jensen bound)"],
    ]
    header = f"{p.arch}: input {shape} (d = {p.d}), mode {p.mode}, init {p.init}, {p.classes} classes"
    lines = [header, "", format_table(["quantity", "prediction", "reference"], rows, align="lll")]
    lines += [f"note: {note}" for note in p.notes]
    lines.append(f"computed in {p.elapsed_s:.2f} s")
    return "\n".join(lines)


def _cmd_archs(args: argparse.Namespace) -> int:
    from pathstats import nets

    if args.json:
        print(json.dumps({name: arch.description for name, arch in nets.ARCHITECTURES.items()}))
    else:
        print(format_table(["architecture", "description"], [[n, a.description] for n, a in nets.ARCHITECTURES.items()], align="ll"))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from pathstats import nets

    from .sweep import run_sweep, save_sweep_figure

    try:
        sizes = [int(v) for v in args.sizes.split(",")]
    except ValueError:
        raise PathstatsError(f"--sizes takes comma-separated integers like 32,64,128, not {args.sizes!r}") from None
    arch = nets.get(args.arch)
    shapes = [(arch.channels, s, s) if arch.image else (s,) for s in sizes]
    result = run_sweep(args.arch, shapes, mode=args.mode, classes=args.classes, progress=not args.json)
    if args.figure:
        save_sweep_figure(result, args.figure)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(result.table())
        if args.figure:
            print(f"wrote {args.figure}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from pathstats.verify.report import verify, verify_text, write_outputs

    if args.samples < 10:
        raise PathstatsError(f"--samples must be at least 10 for the map test, got {args.samples}")
    if args.batch is not None and args.batch < 1:
        raise PathstatsError(f"--batch must be a positive number of initialisations, got {args.batch}")
    if args.sizes or "," in args.arch:
        return _verify_many(args)
    report, result, prediction = verify(args.arch, _input_shape(args), samples=args.samples, seed=args.seed,
                                        device=args.device, classes=args.classes, batch=args.batch, progress=not args.json,
                                        reduce=not args.raw)
    written = write_outputs(args.out, report, result, prediction) if args.out else []
    if args.json:
        print(json.dumps(report))
    else:
        print(verify_text(report))
        for path in written:
            print(f"wrote {path}")
    return 0


def _verify_many(args: argparse.Namespace) -> int:
    import os

    from pathstats import nets
    from pathstats.verify.scaling import compare_architectures, comparison_text, save_comparison_plot, save_sweep_plot, sweep_text, verify_sweep

    from ._io import write_json

    options = dict(samples=args.samples, seed=args.seed, device=args.device, batch=args.batch, progress=not args.json,
                   reduce=not args.raw)
    if args.sizes:
        if "," in args.arch:
            raise PathstatsError("--sizes sweeps one architecture; give a single --arch")
        try:
            sizes = [int(v) for v in args.sizes.split(",")]
        except ValueError:
            raise PathstatsError(f"--sizes takes comma-separated integers like 32,64,128, not {args.sizes!r}") from None
        arch = nets.get(args.arch)
        data = verify_sweep(args.arch, [(arch.channels, s, s) if arch.image else (s,) for s in sizes], **options)
        text, name = sweep_text(data), "sweep"
    else:
        archs = args.arch.split(",")
        data = compare_architectures(archs, _input_shape(args, archs[0]), **options)
        text, name = comparison_text(data), "comparison"
    written = []
    if args.out:
        written.append(os.path.join(args.out, f"{name}.json"))
        write_json(written[-1], data)
        written.append(os.path.join(args.out, f"{name}.png"))
        (save_sweep_plot if args.sizes else save_comparison_plot)(data, written[-1])
    print(json.dumps(data) if args.json else text)
    if not args.json:
        for path in written:
            print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    args.argv = None if argv is None else list(argv)  # for provenance's command line
    try:
        return args.handler(args)
    except PathstatsError as exc:
        print(f"pathstats {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pathstats: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (e.g. ``| head``) left early
        sys.stdout = open(os.devnull, "w")
        return 1


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
