"""The ``pathstats`` command line (documented on the docs page "Command line").

Every error a user can cause ends the command with one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Sequence

from ._format import format_table
from ._io import check_figure_path, check_output_path, write_json
from ._validate import (check_architecture_input, check_classes, check_device, check_int, check_seed, parse_architectures,
                        parse_int_list, parse_shape)
from .errors import InvalidArgumentError, OutputPathError, PathstatsError
from .provenance import provenance

if TYPE_CHECKING:
    from .analysis import DagReport

# The engines (torch, networkx, numpy) are imported by the commands that use them, not
# here: `pathstats --version` and argument errors answer without loading them.

__all__ = ["main", "run"]

#: The ``init`` policies a command line can name (a mapping needs the Python API).
INIT_CHOICES = ("he", "torch", "weights")
EXIT_USAGE = 2
EXIT_WRITE = 1
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    from .generators import EXAMPLES
    from .prediction import MODES

    parser = _Parser(
        prog="pathstats",
        description="Path sums over computational DAGs and the input-gradient "
        "predictions of Simon-Gabriel et al. (ICML 2019).",
    )
    parser.add_argument("--version", action="version", version=_version())
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
    source.add_argument("graph", nargs="?", metavar="GRAPH.json", help="node-link JSON file, or - for standard input")
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
    sweep.add_argument("--figure", metavar="FILE.png", help="save the S(x)*d heatmap and the log-log plot "
                       "(format from the extension: .png, .pdf or .svg)")
    sweep.add_argument("--out", metavar="FILE.json", help="write the JSON result there, updated after each finished size")
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
    from pathstats.robust import cli_attack, cli_experiment, cli_train

    for module in (cli_attack, cli_train, cli_experiment):  # each robustness command lives in its own module
        module.register(commands)
    return parser


def _add_size_arguments(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--d", type=int, metavar="D", help="input dimension: 3 x s x s for image architectures")
    size.add_argument("--shape", metavar="C,H,W", help="input shape, e.g. 3,64,48")
    if sweep:
        size.add_argument("--sizes", metavar="S1,S2,...", help="a dimension sweep over sizes s (inputs 3 x s x s; d for fc)")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    from .prediction import MODES

    parser.add_argument("--arch", required=True, help="registered architecture (see pathstats archs)")
    _add_size_arguments(parser)
    parser.add_argument("--mode", choices=MODES, default="model", help="model (default): the module as initialised; theory: the paper's assumptions (H)/(H') literally "
                        "(docs page \"Command line\", section \"Prediction modes\")")
    parser.add_argument("--classes", type=int, default=10, metavar="K", help="number of classes (default 10)")
    parser.add_argument("--init", choices=INIT_CHOICES, help="model-mode weight variances (default: the declared init)")


def _input_shape(args: argparse.Namespace, arch: str | None = None) -> tuple:
    from . import nets

    if args.shape:
        return parse_shape(args.shape)
    return nets.shape_for_d(arch or args.arch, check_int(args.d, "--d", minimum=1, hint="the input dimension"))


def _default_output(G) -> object:
    from .dag import check_acyclic

    check_acyclic(G)  # a cycle, not the count of sinks it leaves, is what is wrong with such a graph
    sinks = [v for v in G if G.out_degree(v) == 0]
    if len(sinks) != 1:
        raise PathstatsError(f"the graph has {len(sinks)} sinks {sinks[:10]!r}; name the output with --output NODE")
    return sinks[0]


def _cmd_dag(args: argparse.Namespace) -> int:
    from .analysis import analyze_dag
    from .generators import EXAMPLES
    from .graphio import read_node_link, resolve_node

    check_int(args.max_rows, "--max-rows", minimum=0)
    if args.example:
        G, output = EXAMPLES[args.example][1]()
        source = f"example {args.example}"
    else:
        G, output = read_node_link(args.graph), None
        source = "standard input" if args.graph == "-" else args.graph
    if args.output is not None:
        output = resolve_node(G, args.output)
    elif output is None:
        output = _default_output(G)
    start = time.perf_counter()
    report = analyze_dag(G, output, progress=not args.json)
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps({**report.to_dict(), "elapsed_s": elapsed, "provenance": provenance(argv=args.argv)}))
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


def _check_model_arguments(args: argparse.Namespace) -> tuple:
    """Check what predict needs before any work; return the input shape."""
    from . import nets

    nets.get(args.arch)
    check_classes(args.classes)
    if args.mode == "theory" and args.init is not None:
        raise InvalidArgumentError(f"--init {args.init} sets the weight variances of model mode; theory mode uses those "
                                   "of the paper's (H)/(H') by definition: drop --init, or use --mode model")
    shape = _input_shape(args)
    check_architecture_input(args.arch, shape, args.classes)
    return shape


def _cmd_predict(args: argparse.Namespace) -> int:
    from .prediction import predict, save_array

    shape = _check_model_arguments(args)
    if args.save_map:
        check_output_path(args.save_map)
        _check_extension(args.save_map, ".npy", "--save-map")
    result = predict(args.arch, shape, mode=args.mode, classes=args.classes, init=args.init, progress=not args.json)
    if args.json:
        print(json.dumps({**result.to_dict(), "provenance": provenance(argv=args.argv)}))
    else:
        print(_predict_text(result))
    shape_text = "x".join(map(str, result.input_shape))
    return _write_after("predict", [(args.save_map, lambda: save_array(args.save_map, result.grad_sq_map),
                                     f"(float64, shape {shape_text})")], args.json)


def _predict_text(p) -> str:
    r = p.to_dict()
    g, s, logit, loss = r["grad_sq"], r["path_sum"], p.logit_grad, p.loss_grad
    shape = "x".join(map(str, p.input_shape))
    reference = "Thm 5: 1" + (", Thm 11: x avg-pooling factor" if p.has_avgpool else "")
    rows = [
        ["E[(do/dx)^2] per coordinate", f"min {g['min']:.4g}  mean {g['mean']:.4g}  max {g['max']:.4g}", f"1/d = {1 / p.d:.4g}"],
        ["E||do/dx||_2^2 (total)", f"{g['total']:.6g}", reference],
    ]
    if p.has_avgpool:
        where = ", ".join(f"{layer}: a = {a}" for layer, a in p.avgpool_layers.items())
        rows.append(["avg-pooling factor 1/(a1...an)", f"{p.avgpool_factor:.6g}", f"Theorem 11 ({where})"])
    for layer, routing in p.maxpool_routing.items():
        rows.append([f"max-pooling routing ({layer})", f"P(open arg-max) {routing['open_argmax']:.4g}",
                     f"uniform 1/n x P(open) = {routing['uniform']:.4g}, n = {routing['window']}"])
    if p.gates:
        opened = list(p.gates.values())
        rows.append(["ReLU gates P(open)", f"min {min(opened):.4g}  max {max(opened):.4g}", "1/2 for a centred input"])
    rows += [
        ["path sum S(x)*d", f"min {s['min_times_d']:.4g}  max {s['max_times_d']:.4g}", "1 under (S) (Lemma 8)"],
        ["Lemma 7 total sum_x S(x)", f"{r['lemma7_total']:.12g}", "exactly 1 (Lemma 7)"],
        ["symmetry (S)", "holds" if p.symmetric else f"fails: {p.symmetry_classes} classes of inputs", "path-degree multisets"],
        ["paths |P(x,o)|", f"min {r['n_paths']['min']}  max {r['n_paths']['max']}", "exact"],
        ["E||do/dx||_1", f"{logit['l1']:.5g}", "Gaussian approximation"],
        ["", f"<= {logit['l1_upper']:.5g}", "Jensen: sum_x sqrt(E[(do/dx)^2])"],
    ]
    if loss is not None:  # each bound with the assumption under which it holds (Prediction.loss_grad)
        any_softmax = loss["any_softmax"]
        rows += [
            [f"E||dL/dx||_2 (K = {p.classes})", f"<= {loss['l2']:.5g} if the softmax is uniform",
             f"q_k = 1/K: factor (K-1)/K = {loss['factor']:.4g}; at init E[factor] >= that"],
            ["", f"< {any_softmax['l2_upper']:.5g} for any softmax", "factor < 2; logit gradients uncorrelated"],
            ["E||dL/dx||_1", f"{loss['l1']:.5g}  (<= {loss['l1_upper']:.5g}) if uniform",
             f"Gaussian approx. (Jensen); any softmax: < {any_softmax['l1_upper']:.5g}"],
        ]
    header = f"{p.arch}: input {shape} (d = {p.d}), mode {p.mode}, init {p.init}, {p.classes} classes"
    lines = [header, "", format_table(["quantity", "prediction", "reference"], rows, align="lll")]
    lines += [f"note: {note}" for note in p.notes]
    lines.append(f"computed in {p.elapsed_s:.2f} s")
    return "\n".join(lines)


def _cmd_archs(args: argparse.Namespace) -> int:
    from . import nets

    if args.json:
        print(json.dumps({name: arch.description for name, arch in nets.ARCHITECTURES.items()}))
    else:
        print(format_table(["architecture", "description"], [[n, a.description] for n, a in nets.ARCHITECTURES.items()], align="ll"))
    return 0


def _check_sizes(args: argparse.Namespace) -> list:
    """The shapes of ``--sizes`` for one registered architecture (two sizes at least)."""
    from . import nets

    archs = parse_architectures(args.arch)
    if len(archs) > 1:
        raise InvalidArgumentError("--sizes sweeps one architecture; give a single --arch")
    arch = nets.get(archs[0])
    sizes = parse_int_list(args.sizes, "--sizes", min_items=2, why="a log-log slope needs at least two sizes")
    shapes = [(arch.channels, s, s) if arch.image else (s,) for s in sizes]
    for shape in shapes:
        check_architecture_input(arch.name, shape, args.classes)
    return shapes


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import run_sweep, save_sweep_figure

    check_classes(args.classes)
    shapes = _check_sizes(args)
    if args.figure:
        check_figure_path(args.figure)
    if args.out:
        check_output_path(args.out)
    keeper, finished = _PartialResults("sweep", args.out, len(shapes), "sizes"), []

    def keep(partial) -> None:
        finished[:] = [partial]
        keeper.keep(_sweep_dict(partial, shapes, args.argv))

    try:
        result = run_sweep(args.arch, shapes, mode=args.mode, classes=args.classes, progress=not args.json, on_size=keep)
    except KeyboardInterrupt:
        return keeper.interrupted(lambda data: json.dumps(data) if args.json else finished[0].table())
    data = _sweep_dict(result, shapes, args.argv)
    print(json.dumps(data) if args.json else result.table())
    writes = [(args.figure, lambda: save_sweep_figure(result, args.figure), "")]
    if args.out:  # already written after the last size, unless a write failed then
        writes.insert(0, (args.out, lambda: write_json(args.out, data), ""))
    return _write_after("sweep", writes, args.json, keeper.failed)


def _sweep_dict(result, shapes: list, argv: list) -> dict:
    return {**result.to_dict(), "complete": len(result.predictions) == len(shapes),
            "pending_shapes": [list(s) for s in shapes[len(result.predictions):]], "provenance": provenance(argv=argv)}


class _PartialResults:
    """Keeps a long command's finished parts: written to ``path`` (if any) after each
    part, printed if the command is interrupted."""

    def __init__(self, command: str, path: str | None, parts: int, unit: str) -> None:
        self.command, self.path, self.parts, self.unit = command, path, parts, unit
        self.data, self.done, self.failed, self.written = None, 0, False, False

    def keep(self, data: dict) -> None:
        self.data, self.done = data, len(data["rows"])
        if self.path and not self.failed:
            try:
                write_json(self.path, data)
                self.written = True
            except PathstatsError as exc:  # keep computing; the result is printed at the end
                self.failed = True
                print(f"pathstats {self.command}: warning: {exc}; the run goes on and prints its result", file=sys.stderr)

    def interrupted(self, render) -> int:
        if self.data is not None:
            print(render(self.data))
        where = (f"they are in {self.path}" if self.written and not self.failed else "they are printed above")
        finished = f"the {self.done} finished {self.unit} are kept: {where}" if self.done else f"no {self.unit[:-1]} had finished"
        print(f"pathstats {self.command}: interrupted after {self.done} of {self.parts} {self.unit}; {finished}",
              file=sys.stderr)
        return EXIT_INTERRUPTED


def _check_extension(path: str, extension: str, option: str) -> None:
    if not path.lower().endswith(extension):
        raise OutputPathError(f"{option} writes {extension} files; end the file name with {extension}, not {path!r}")


def _write_after(command: str, writes: list, quiet: bool, failed: bool = False) -> int:
    """Write files after the result is printed: a failed write never loses the result,
    and is reported on stderr (exit status 1)."""
    status = EXIT_WRITE if failed else 0
    for path, write, detail in writes:
        if not path:
            continue
        try:
            write()
        except PathstatsError as exc:
            print(f"pathstats {command}: error: the result is printed above, but {exc}", file=sys.stderr)
            status = EXIT_WRITE
            continue
        if not quiet:
            print(f"wrote {path}" + (f" {detail}" if detail else ""))
    return status


def _check_verify_arguments(args: argparse.Namespace) -> list:
    """Check everything verify needs and plan each run (model, prediction, the map
    test's minimum) before any Monte Carlo; return the plans."""
    from pathstats.verify.report import check_batch_memory, check_samples_before_planning, check_verify_samples, plan_verify

    from .progress import progress

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
        shapes = _check_sizes(args)
        archs = [args.arch] * len(shapes)
        check_seed(args.seed + len(shapes) - 1, "--seed (plus one per size)")
    else:
        archs = parse_architectures(args.arch)
        shape = _input_shape(args, archs[0])
        for arch in archs:
            check_architecture_input(arch, shape, args.classes)
        shapes = [shape] * len(archs)
    for arch, shape in zip(archs, shapes):
        check_samples_before_planning(arch, shape, args.samples, "--samples")
        if args.batch is not None:
            check_batch_memory(arch, shape, min(args.batch, args.samples), "--batch", args.classes)
    args.finished = _finished_sizes(os.path.join(args.out, "sweep.json"), args, shapes) if args.resume else []
    plans = []
    with progress(total=len(archs), desc="planning: predictions before the Monte Carlo",
                  unit="size" if args.sizes else "net", disable=args.json, delay=2.0) as bar:
        for arch, shape in zip(archs, shapes):
            plans.append(plan_verify(arch, shape, args.classes, init=args.init))
            bar.update()
    for plan in plans:
        check_verify_samples(plan, args.samples, "--samples")
    return plans


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
    print(json.dumps(report) if args.json else verify_text(report))
    written: list = []
    status = _write_after("verify", [(args.out, lambda: written.extend(
        write_outputs(args.out, report, result, prediction, figure_format=args.figure_format)), "")], True)
    if not args.json:
        for path in written:
            print(f"wrote {path}")
    return status


def _verify_many(args: argparse.Namespace, plans: list) -> int:
    from pathstats.verify.scaling import compare_architectures, comparison_text, save_comparison_plot, save_sweep_plot, sweep_text, verify_sweep

    name = "sweep" if args.sizes else "comparison"
    json_path = os.path.join(args.out, f"{name}.json") if args.out else None
    figure_path = os.path.join(args.out, f"{name}.{args.figure_format}") if args.out else None
    keeper = _PartialResults("verify", json_path, len(plans), "sizes" if args.sizes else "nets")
    options = dict(samples=args.samples, seed=args.seed, device=args.device, batch=args.batch, progress=not args.json,
                   reduce=not args.raw, classes=args.classes, plans=plans)

    def keep(data: dict) -> None:
        data["provenance"] = provenance(args.seed, args.device, args.argv)
        keeper.keep(data)

    text = sweep_text if args.sizes else comparison_text
    try:
        if args.sizes:
            data = verify_sweep(args.arch, [p.input_shape for p in plans], on_row=keep, finished=args.finished, **options)
        else:
            data = compare_architectures([p.arch for p in plans], plans[0].input_shape, on_row=keep, **options)
    except KeyboardInterrupt:
        return keeper.interrupted(lambda partial: json.dumps(partial) if args.json else text(partial))
    data["provenance"] = provenance(args.seed, args.device, args.argv)
    print(json.dumps(data) if args.json else text(data))
    plot = save_sweep_plot if args.sizes else save_comparison_plot
    writes = [(figure_path, lambda: plot(data, figure_path), "")]
    if keeper.failed:
        writes.insert(0, (json_path, lambda: write_json(json_path, data), ""))
    elif json_path and not args.json:
        print(f"wrote {json_path}")
    return _write_after("verify", writes, args.json, keeper.failed)


def _finished_sizes(path: str, args: argparse.Namespace, shapes: list) -> list:
    """The rows that an interrupted run of this sweep left in ``path`` (for --resume)."""
    from pathstats.verify.scaling import resumable_rows

    if not os.path.exists(path):
        print(f"pathstats verify: nothing to resume in {args.out} yet: running every size", file=sys.stderr)
        return []
    try:
        with open(path) as f:
            data = json.load(f)
        rows = resumable_rows(data, args.arch, shapes, args.samples, args.device, seed=args.seed,
                              batch=args.batch, reduce=not args.raw, classes=args.classes, init=args.init)
    except (OSError, ValueError, RecursionError) as exc:  # unreadable, not JSON, or not this sweep
        raise InvalidArgumentError(f"--resume: cannot continue from {path}: {_one_line(exc)}; give the same options, "
                                   "or another --out folder") from None
    print(f"pathstats verify: resuming: {len(rows)} of {len(shapes)} sizes already finished in {path}", file=sys.stderr)
    return rows


def _version() -> str:
    """The versions, read without importing torch (its metadata has the same version string)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    try:
        torch_version = version("torch")
    except PackageNotFoundError:  # an unusual install (e.g. a source build on the path): ask torch itself
        import torch

        torch_version = torch.__version__
    return f"pathstats {__version__} (torch {torch_version}, Python {platform.python_version()})"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status.

    0: done; 1: the result was printed but a file could not be written, or an
    internal error (one line; ``PATHSTATS_DEBUG=1`` shows the traceback); 2: a bad
    input, refused before the work; 130: interrupted (finished parts of a sweep kept).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # before the parser, whose commands import the engines (seconds); exits as argparse's would
        print(_version())
        raise SystemExit(0)
    parser = _build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    prefix = f"pathstats {args.command}"
    try:
        return args.handler(args)
    except PathstatsError as exc:
        print(f"{prefix}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader (e.g. ``| head``) left early
        sys.stdout = open(os.devnull, "w")
        return 1
    except RecursionError:
        print(f"{prefix}: error: the input is nested too deeply to process", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError:
        print(f"{prefix}: error: out of memory; use a smaller input, fewer --samples or a smaller --batch", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug: one line, the traceback on request
        if os.environ.get("PATHSTATS_DEBUG"):
            raise
        if type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(exc):  # torch's, GPU or CPU
            print(f"{prefix}: error: out of memory; use a smaller input, fewer --samples or a smaller --batch", file=sys.stderr)
            return EXIT_USAGE
        print(f"{prefix}: internal error: {type(exc).__name__}: {_one_line(exc)[:300]} (a bug: please report it with "
              "the command line; PATHSTATS_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_WRITE


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
