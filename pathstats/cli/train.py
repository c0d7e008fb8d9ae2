"""``pathstats train``: regularised training with per-epoch robustness metrics (resumable)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from pathstats.robust.methods import get_method
from pathstats.robust.train import DATA_DEFAULTS, TrainConfig, TrainError, train

from ._common import EXIT_DIVERGED, EXIT_OK, EXIT_SIGNAL, print_result

__all__ = ["register", "config_from_args", "add_config_argument"]


def register(commands) -> None:
    """Add the ``train`` sub-command to the sub-parsers object of ``pathstats``' parser."""
    parser = commands.add_parser(
        "train",
        help="train a registered net with a gradient penalty or adversarial training, with robustness metrics",
        description="Train a registered architecture with one of the training methods of Simon-Gabriel et al. "
        "(2019), Finlay & Oberman (2019) and Roth et al. (2020); every epoch, measure loss, accuracy, "
        "E||dL/dx||_1, E||dL/dx||_2 and l_inf PGD vulnerability on the test split and a fixed training subset "
        "(with standard errors), and checkpoint. Re-running the same command continues the run; SIGINT or "
        "SIGTERM stops it cleanly after a checkpoint.",
    )
    groups = {None: parser}
    for f in dataclasses.fields(TrainConfig):
        group = f.metadata["cli"]["group"]
        if group not in groups:
            groups[group] = parser.add_argument_group(group)
        add_config_argument(groups[group], f.name)
    parser.add_argument("--max-steps", type=int, metavar="N",
                        help="stop after N steps of this invocation, with a checkpoint (repeat the command to continue)")
    parser.add_argument("--out", required=True, metavar="DIR", help="run folder: config.json, metrics.jsonl, "
                        "checkpoint.pt, result.json")
    parser.add_argument("--json", action="store_true", help="print result.json's object")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(handler=_cmd_train)


def _field(name: str) -> dataclasses.Field:
    return {f.name: f for f in dataclasses.fields(TrainConfig)}[name]


def add_config_argument(parser, name: str, *, standalone: bool = False) -> None:
    """Add the flag of :class:`TrainConfig`'s field ``name`` to ``parser`` (or an argument group).

    Flag, type, choices, help and shown default all come from the field (its annotation,
    default and ``metadata["cli"]``), so ``TrainConfig`` is their one home.  In ``pathstats
    train`` an absent flag leaves no attribute (``argparse.SUPPRESS``) and the field's
    default applies in :func:`config_from_args`; ``standalone`` (another command sharing the
    flag) makes it optional, with the field's default as its parsed value.

    Examples
    --------
    >>> parser = argparse.ArgumentParser()
    >>> add_config_argument(parser, "eval_steps")
    >>> vars(parser.parse_args([])), vars(parser.parse_args(["--eval-steps", "3"]))
    ({}, {'eval_steps': 3})
    >>> add_config_argument(parser, "data", standalone=True)
    >>> parser.parse_args([]).data
    'digits'
    """
    f = _field(name)
    cli, default = f.metadata["cli"], f.default
    flag = "--" + name.replace("_", "-")
    kind = _annotation_type(name)
    required = cli["required"] and not standalone
    if required:
        shown = None
    elif name in DATA_DEFAULTS["digits"]:
        digits, other = DATA_DEFAULTS["digits"][name], DATA_DEFAULTS["other"][name]
        shown = f"default {digits} on digits, {other} otherwise"
    elif cli["default_text"] is not None:
        shown = f"default {cli['default_text']}"
    elif kind is bool and not default:
        shown = None  # a switch: absent means off
    elif kind is bool:
        shown = "default yes"
    else:
        shown = f"default {default:g}" if isinstance(default, float) else f"default {default}"
    options = {"help": cli["help"] + (f" ({shown})" if shown else ""),
               "default": default if standalone else argparse.SUPPRESS}
    if required:
        options["required"] = True
    if kind is bool:
        options["action"] = argparse.BooleanOptionalAction if default else "store_true"
    else:
        options.update(type=kind, metavar=cli["metavar"], choices=cli["choices"])
        if cli["choices"] is not None:
            options.pop("metavar")  # argparse shows the choices
    parser.add_argument(flag, **options)


def _annotation_type(name: str) -> type:
    # "int | None" -> int: the type a flag's text is read as
    hint = typing.get_type_hints(TrainConfig)[name]
    kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
    return kinds[0]


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``pathstats train`` arguments (absent flags: the fields' defaults).

    A regularised method needs its strength: without ``--eps`` it would train at strength 0
    (plain training under the method's name), so that is refused; ``--eps 0`` asks for it.
    """
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    method = get_method(given.get("method", _field("method").default))
    if method.name != "none" and "eps" not in given:
        raise TrainError(f"--method {method.name} needs a strength: give --eps E (--eps 0 trains without the penalty)")
    return TrainConfig(**given)


def _fmt(row: dict, key: str) -> str:
    value, se = row.get(key), row.get(key + "_se")
    if value is None:
        return "-"
    return f"{value:.4g} +- {se:.2g}" if se is not None else f"{value:.4g}"


def _summary(result: dict) -> str:
    config, row = result["config"], result.get("metrics")
    lines = [f"{config['arch']} on {config['data']}, method {config['method']} eps {config['eps']:g}: "
             f"{result['status']} after {result['epochs_done']}/{config['epochs']} epochs, "
             f"{result['steps_done']} steps, {result['elapsed_s']:.1f} s"]
    if row:
        lines.append(f"epoch {row['epoch']} (mean +- standard error over images; PGD l_inf eps {row['eval_eps']:g}):")
        for split, n in (("test", row.get("test_n")), ("train", row.get("train_n"))):
            lines.append(f"  {split:5s} (n={n}): loss {_fmt(row, split + '_loss')}, accuracy {_fmt(row, split + '_accuracy')}, "
                         f"E||dL/dx||_1 {_fmt(row, split + '_grad_l1')}, E||dL/dx||_2 {_fmt(row, split + '_grad_l2')}, "
                         f"vulnerability {_fmt(row, split + '_vulnerability')}, "
                         f"loss damage {_fmt(row, split + '_loss_damage')}")
    if result.get("reason"):
        lines.append(result["reason"])
    peak = result.get("peak_memory") or {}
    if peak.get("resident_bytes"):
        from pathstats.resources import format_bytes
        lines.append(f"peak memory: {format_bytes(peak['resident_bytes'])} resident"
                     + (f", {format_bytes(peak['device_bytes'])} on the device" if "device_bytes" in peak else ""))
    lines.append(f"run folder: {result['out']}")
    return "\n".join(lines)


def _cmd_train(args: argparse.Namespace) -> int:
    result = train(config_from_args(args), args.out, progress=not args.quiet, max_steps=args.max_steps)
    print_result(result, args.json, lambda: _summary(result))
    if result["status"] == "diverged":
        print(f"pathstats train: error: {result['reason']}", file=sys.stderr)
        return EXIT_DIVERGED
    if result["status"] == "interrupted":
        print(f"pathstats train: {result['reason']}", file=sys.stderr)
        return EXIT_SIGNAL.get(result.get("stopped_by"), EXIT_OK)
    return EXIT_OK
