"""``pathstats predict``: predicted input gradients of an architecture at initialisation."""

from __future__ import annotations

import argparse

from pathstats._format import format_table
from pathstats._io import check_output_path
from pathstats._validate import check_architecture_input, check_classes
from pathstats.errors import InvalidArgumentError
from pathstats.provenance import provenance

from ._arguments import add_model_arguments, input_shape
from ._common import check_extension, print_result, write_after

__all__ = ["register"]


def register(commands) -> None:
    """Add the ``predict`` sub-command to the sub-parsers object of ``pathstats``' parser."""
    predict = commands.add_parser(
        "predict",
        help="predicted input gradients of an architecture at initialisation",
        description="Predict E[(do/dx)^2] per input coordinate at initialisation, with "
        "path sums, Lemma 7, (S), exact path counts, the average-pooling factor and the "
        "predicted norms of logit and loss gradients.",
    )
    add_model_arguments(predict)
    predict.add_argument("--json", action="store_true", help="print one JSON object")
    predict.add_argument("--save-map", metavar="FILE.npy", help="write the predicted E[(do/dx)^2] map (float64, input shape)")
    predict.set_defaults(handler=_cmd_predict)


def _check_model_arguments(args: argparse.Namespace) -> tuple:
    """Check what predict needs before any work; return the input shape."""
    from pathstats import nets

    nets.get(args.arch)
    check_classes(args.classes)
    if args.mode == "theory" and args.init is not None:
        raise InvalidArgumentError(f"--init {args.init} sets the weight variances of model mode; theory mode uses those "
                                   "of the paper's (H)/(H') by definition: drop --init, or use --mode model")
    shape = input_shape(args)
    check_architecture_input(args.arch, shape, args.classes)
    return shape


def _cmd_predict(args: argparse.Namespace) -> int:
    from pathstats.prediction import predict, save_array

    shape = _check_model_arguments(args)
    if args.save_map:
        check_output_path(args.save_map)
        check_extension(args.save_map, ".npy", "--save-map")
    result = predict(args.arch, shape, mode=args.mode, classes=args.classes, init=args.init, progress=not args.json)
    print_result(lambda: {**result.to_dict(), "provenance": provenance(argv=args.argv)}, args.json, lambda: _predict_text(result))
    shape_text = "x".join(map(str, result.input_shape))
    return write_after("predict", [(args.save_map, lambda: save_array(args.save_map, result.grad_sq_map),
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
