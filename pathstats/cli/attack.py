"""``pathstats attack``: vulnerability of a network to an attack, next to Lemma 2's prediction.

``--eps`` is the paper's dimension-free ``eps_inf`` (pixel-range units); an l_p
attack on inputs of ``d`` numbers uses the radius ``eps_p = eps_inf d^(1/p)`` (eq. 3),
and the report prints both.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from pathstats.errors import InvalidArgumentError, PathstatsError
from pathstats.robust.attacks import PGD_STEPS, lp_radius
from pathstats.robust.runfolder import open_trained
from pathstats.robust.vulnerability import ATTACKS

from ._common import EXIT_OK, print_result

__all__ = ["register", "attack_command", "attack_text"]

NORMS = {"inf": math.inf, "2": 2.0}
DEFAULT_STEPS = {"pgd": PGD_STEPS, "deepfool": 50}


def register(commands) -> None:
    """Add the ``attack`` sub-command to the sub-parsers object of ``pathstats``' parser."""
    parser = commands.add_parser(
        "attack",
        help="adversarial vulnerability of a network to an attack, next to Lemma 2's first-order prediction",
        description="Attack the test split with PGD, the fast gradient method or DeepFool and report the "
        "adversarial vulnerability (fraction of predictions changed), accuracy before and after, the loss damage "
        "and Lemma 2's first-order prediction eps_p E||dL/dx||_q, each with its standard error. --eps is the "
        "pixel-wise eps_inf; an l_p attack uses eps_p = eps_inf d^(1/p).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="DIR", help="a trained run's folder (pathstats train --out): its network with "
                        "the weights of its last checkpoint, on its data")
    source.add_argument("--arch", metavar="NAME", help="a freshly initialised registered network (see pathstats archs)")
    parser.add_argument("--data", metavar="DATA", help="digits, cifar10:DIR or folder:DIR (required with --arch; "
                        "with --run, the run's)")
    parser.add_argument("--size", type=int, metavar="S", help="up-sample the images to S x S by copying pixels")
    parser.add_argument("--attack", required=True, choices=list(ATTACKS))
    parser.add_argument("--norm", choices=list(NORMS), default="inf", help="attack norm (default inf)")
    parser.add_argument("--eps", type=float, required=True, metavar="E",
                        help="pixel-wise eps_inf (e.g. 0.005); the l_p radius is E d^(1/p)")
    parser.add_argument("--steps", type=int, metavar="N", help=f"iterations (default: pgd {DEFAULT_STEPS['pgd']}, deepfool {DEFAULT_STEPS['deepfool']}; fgm takes one)")
    parser.add_argument("--n", type=int, metavar="N", help="attack the first N test images (default: all)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the network's initialisation (--arch) and of PGD's random start (default 0)")
    parser.add_argument("--device", default="cpu", metavar="D", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=attack_command)


def _validate(args: argparse.Namespace) -> None:
    """Refuse every bad flag in one line, before any data or model is loaded."""
    from pathstats import nets
    from pathstats._validate import check_device, check_seed
    from pathstats.robust.data import check_data_spec, check_model_input, native_shape

    if not (math.isfinite(args.eps) and args.eps > 0):
        raise InvalidArgumentError(f"--eps must be a positive pixel-wise radius such as 0.005, got {args.eps}")
    if args.steps is not None:
        if args.attack == "fgm":
            raise InvalidArgumentError("--steps does not apply to fgm, which takes exactly one step; leave it out")
        if args.steps < 1:
            raise InvalidArgumentError(f"--steps must be at least 1, got {args.steps}")
    if args.n is not None and args.n < 1:
        raise InvalidArgumentError(f"--n must be a positive number of test images, got {args.n}")
    if args.size is not None and args.size < 1:
        raise InvalidArgumentError(f"--size must be a positive image side, got {args.size}")
    check_device(args.device)
    check_seed(args.seed)
    if args.run is not None:
        config = open_trained(args.run, f"--run {args.run}").config
        for flag, given, trained in (("--data", args.data, config.data), ("--size", args.size, config.size)):
            if given is not None and given != trained:
                used = f"with {flag} {trained}" if trained is not None else f"without {flag}"
                raise InvalidArgumentError(f"--run {args.run} was trained {used}; leave {flag} out")
        args.data, args.size = config.data, config.size
        check_data_spec(args.data, args.size)
        return
    if args.data is None:
        raise InvalidArgumentError("--arch needs --data DATA (digits, cifar10:DIR or folder:DIR)")
    nets.get(args.arch)
    check_data_spec(args.data, args.size)
    channels, height, width = native_shape(args.data)  # a folder's channels are its images' (1 for grayscale)
    check_model_input(args.arch, (channels, args.size or height, args.size or width))


def _trained_model(run, device: str):
    """The run's network with the weights of its last checkpoint, and a description of it."""
    model, state = run.load_model(device)
    config = run.config
    source = (f"trained run {run.path} (method {config.method}, eps {config.eps:g}, seed {config.seed}; "
              f"checkpoint after epoch {state['epoch']}, status {run.status})")
    return model, source


def _fresh_model(arch: str, input_shape: tuple, classes: int, seed: int, device: str):
    """A registered network initialised from ``seed`` (the global RNG is left untouched)."""
    from pathstats import nets

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nets.build(arch, input_shape, classes)
    return model.to(device)


def attack_command(args: argparse.Namespace) -> int:
    """The ``attack`` handler: validate, load, attack, report (text or ``--json``)."""
    from pathstats.provenance import provenance
    from pathstats.robust.data import load_dataset
    from pathstats.robust.vulnerability import vulnerability

    _validate(args)
    start = time.perf_counter()
    data = load_dataset(args.data, size=args.size, device=args.device)
    if args.run is not None:
        run = open_trained(args.run, f"--run {args.run}")
        model, source = _trained_model(run, args.device)
        arch = run.config.arch
    else:
        model = _fresh_model(args.arch, data.input_shape, data.classes, args.seed, args.device)
        source, arch = f"freshly initialised (seed {args.seed})", args.arch
    n = data.test_x.shape[0] if args.n is None else min(args.n, data.test_x.shape[0])
    x, y = data.test_x[:n], data.test_y[:n]
    d = int(x[0].numel())
    eps_p = lp_radius(args.eps, d, args.norm)
    options = {"bounds": data.bounds}
    if args.attack != "fgm":
        options["steps"] = args.steps or DEFAULT_STEPS[args.attack]
    if args.attack == "pgd":
        options["seed"] = args.seed
    result = vulnerability(model, x, y, attack=args.attack, norm=NORMS[args.norm], eps=eps_p, progress=not args.json,
                           **options)
    report = {
        "attack": args.attack,
        "norm": result["norm"],
        "eps_inf": args.eps,
        "eps_p": eps_p,
        "d": d,
        "n": result["n"],
        "steps": options.get("steps", 1),
        "model": {"arch": arch, "source": source, "input_shape": list(data.input_shape)},
        "data": {"spec": args.data, "size": args.size, "split": "test", "first": n},
        **{k: v for k, v in result.items() if k not in ("attack", "norm", "eps", "d", "n")},
        "first_order_approximation": "first_order_damage = eps_p E||dL/dx||_q, Lemma 2's first-order Taylor term",
        "elapsed_s": time.perf_counter() - start,
        "provenance": provenance(seed=args.seed, device=args.device, argv=getattr(args, "argv", None)),
    }
    print_result(report, args.json, lambda: attack_text(report))
    return EXIT_OK


def _row(label: str, report: dict, key: str, note: str = "", digits: int = 4) -> list:
    value, se = report[key], report.get(f"{key}_se")
    return [label, f"{value:.{digits}g}", "" if se is None else f"{se:.2g}", note]


def attack_text(report: dict) -> str:
    """The human-readable report of ``pathstats attack``."""
    from pathstats._format import format_table

    norm = report["norm"]
    q = report["dual_exponent"]
    radius = "the l_inf radius" if norm == "inf" else f"eps_{norm} = eps_inf d^(1/{norm}) = {report['eps_p']:.5g}"
    header = [
        f"{report['attack']} l_{norm}, {report['steps']} step(s): eps_inf = {report['eps_inf']:g}, {radius} (d = {report['d']})",
        f"{report['model']['arch']} {report['model']['source']}, {report['data']['spec']}"
        + (f" at {report['data']['size']}x{report['data']['size']}" if report["data"]["size"] else "")
        + f", first {report['n']} test images",
    ]
    rows = [
        _row("accuracy, clean", report, "accuracy_clean"),
        _row("accuracy, after attack", report, "accuracy_adv"),
        _row("vulnerability (class changed)", report, "vulnerability", "Definition 1"),
        _row("0-1 damage (accuracy drop)", report, "zero_one_damage"),
        _row("loss damage E[dL], measured", report, "loss_damage", "cross-entropy"),
        _row(f"first-order eps_p E||dL/dx||_{q}", report, "first_order_damage", "Lemma 2 (first-order approximation)"),
        _row("ratio first-order / measured", report, "first_order_ratio", "delta-method stderr")
        if "first_order_ratio_note" not in report else ["ratio first-order / measured", "none", "", report["first_order_ratio_note"]],
        _row("E||dL/dx||_1", report, "grad_l1"),
        _row("E||dL/dx||_2", report, "grad_l2"),
    ]
    if report["attack"] == "deepfool":
        rows.append(_row("DeepFool success (unbounded)", report, "deepfool_success"))
        rows.append(["DeepFool median l_" + norm + " distance", f"{report['deepfool_median_distance']:.4g}", "", "successes only"])
    lines = header + ["", format_table(["quantity", "estimate", "stderr", "note"], rows, align="lrrl")]
    lines.append(f"standard errors over n = {report['n']} images taken as independent samples")
    lines += [f"warning: {message}" for message in report["checks"]]
    lines.append(f"computed in {report['elapsed_s']:.1f} s")
    return "\n".join(lines)
