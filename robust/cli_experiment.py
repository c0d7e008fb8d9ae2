"""``pathstats experiment NAME``: the papers' experiments as one command each."""

from __future__ import annotations

import argparse
import json

from pathstats._format import format_table
from pathstats.errors import PathstatsError

from .experiments import EXPERIMENTS, get, run_experiment
from .experiments.catalogue import SCALES

__all__ = ["register"]


def register(commands) -> None:
    """Add the ``experiment`` sub-command to the CLI's sub-parsers."""
    parser = commands.add_parser(
        "experiment",
        help="run one of the papers' experiments (grid, figures, claims table); 'experiment list' names them",
        description="Train the experiment's grid of networks (skipping finished runs, resuming interrupted ones), "
        "evaluate them, and write DIR/results.csv, the figures (PNG and PDF), DIR/claims.json and DIR/report.md. "
        f"Experiments: {', '.join(EXPERIMENTS)}; 'pathstats experiment list' describes them.",
    )
    parser.add_argument("name", metavar="NAME", help=f"{' | '.join(EXPERIMENTS)} | list")
    parser.add_argument("--data", default="digits", help="digits (default, embedded), cifar10:DIR or folder:DIR")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: experiments/NAME, or experiments/NAME-quick)")
    parser.add_argument("--scale", choices=SCALES, default=None,
                        help="quick: tests the pipeline in minutes; medium: decides the central claims in about an hour "
                        "on 2 CPU cores; paper: the papers' grid (default)")
    parser.add_argument("--quick", action="store_true", help="alias of --scale quick")
    parser.add_argument("--executor", default="local", help="local (default) or slurm (through submitit)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="local: runs in parallel processes (default 1)")
    parser.add_argument("--threads", type=int, default=1, metavar="T",
                        help="local: torch CPU threads per run (default 1; fill the cores with --jobs)")
    parser.add_argument("--partition", help="slurm: the partition")
    parser.add_argument("--gpus-per-job", type=int, default=0, metavar="G", help="slurm: GPUs per array task (default 0)")
    parser.add_argument("--time", type=int, default=60, metavar="MIN", help="slurm: time limit per array task in minutes "
                        "(default 60)")
    parser.add_argument("--runs-per-job", type=int, default=1, metavar="K",
                        help="slurm: small runs packed into one array task (default 1)")
    parser.add_argument("--retry-failed", action="store_true", help="run failed runs again (default: keep their failure)")
    parser.add_argument("--plan", action="store_true", help="measure a few steps of each run type on this device and "
                        "print the projected wall time, device-hours and memory per run and in total; runs nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_cmd_experiment)


def _list(args: argparse.Namespace) -> int:
    rows = [{"name": e.name, "title": e.title, "source": e.source, "runs": e.paper.n_runs, "quick_runs": e.quick.n_runs}
            for e in EXPERIMENTS.values()]
    if args.json:
        print(json.dumps({"experiments": rows}, indent=1))
    else:
        print(format_table(["name", "title", "source", "runs", "quick runs"],
                           [[r["name"], r["title"], r["source"], r["runs"], r["quick_runs"]] for r in rows]))
    return 0


def _text(summary: dict) -> str:
    lines = [f"{summary['experiment']}: {summary['runs']} runs ({summary['done']} done, {summary['failed']} failed; "
             f"{summary['ran']} run now, {summary['skipped']} skipped) in {summary['elapsed_s']:.1f} s", ""]
    rows = [[c["claim"][:70], "n/a" if c["value"] is None else f"{c['value']:.3g}",
             "n/a" if c["ci_low"] is None else f"[{c['ci_low']:.3g}, {c['ci_high']:.3g}]", c["expected"], c["verdict"]]
            for c in summary["claims"]]
    if rows:
        lines += [format_table(["claim", "value", "95% CI", "expected", "verdict"], rows), ""]
    for failure in summary["failures"]:
        lines.append(f"failed run {failure['id']}: {failure['error']}")
    lines += [f"wrote {path}" for path in list(summary["files"].values()) + summary["figures"]]
    return "\n".join(lines)


def _cmd_experiment(args: argparse.Namespace) -> int:
    if args.name == "list":
        return _list(args)
    get(args.name)  # unknown names are refused before anything else
    if args.executor not in ("local", "slurm"):
        raise PathstatsError(f"--executor must be local or slurm, got {args.executor!r}")
    if args.quick and args.scale not in (None, "quick"):
        raise PathstatsError(f"--quick is an alias of --scale quick; it contradicts --scale {args.scale}")
    scale = "quick" if args.quick else (args.scale or "paper")
    out = args.out or f"experiments/{args.name}{'' if scale == 'paper' else '-' + scale}"
    if args.plan:  # measured on this device, nothing run or written
        import torch

        from .experiments.plan import format_plan, plan_grid

        planned = plan_grid(args.name, data=args.data, scale=scale, jobs=args.jobs,
                            device="cuda" if torch.cuda.is_available() else "cpu")
        print(json.dumps(planned, indent=1) if args.json else format_plan(planned))
        return 0
    summary = run_experiment(args.name, out, data=args.data, scale=scale, executor=args.executor, jobs=args.jobs, threads=args.threads,
                             partition=args.partition, gpus_per_job=args.gpus_per_job, time_min=args.time,
                             runs_per_job=args.runs_per_job, retry_failed=args.retry_failed)
    print(json.dumps(summary, indent=1) if args.json else _text(summary))
    return 0
