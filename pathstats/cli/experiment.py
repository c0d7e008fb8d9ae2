"""``pathstats experiment NAME``: the papers' experiments as one command each.

Exit status (also in ``pathstats experiment --help``): 0 every run of the grid done;
2 bad input refused before any work (one line on stderr); 3 some runs failed (the others
done; claims, figures and report from the finished runs); 4 every run failed (no claims);
130 / 143 stopped by SIGINT / SIGTERM after the running runs checkpointed (repeat the
command to continue; the report is marked incomplete).
"""

from __future__ import annotations

import argparse
import json
import sys

from pathstats._format import format_table
from pathstats.errors import ExecutorError, InvalidArgumentError, PathstatsError
from pathstats.robust.experiments import EXPERIMENTS, dry_run, get, reanalyse, run_experiment
from pathstats.robust.experiments.catalogue import SCALES
from pathstats.robust.experiments.driver import default_out, flatten

from ._common import EXIT_ALL_FAILED, EXIT_OK, EXIT_SIGNAL, EXIT_SOME_FAILED, EXIT_USAGE, print_result
from .train import add_config_argument

#: Width of the terminal claims table's claim column: longer claims wrap at word boundaries.
CLAIM_WIDTH = 70

_EPILOG = (f"exit status: {EXIT_OK} every run done; {EXIT_USAGE} bad input (refused before any work); {EXIT_SOME_FAILED} some "
           f"runs failed (claims from the others); {EXIT_ALL_FAILED} every run failed; {EXIT_SIGNAL['SIGINT']}/"
           f"{EXIT_SIGNAL['SIGTERM']} stopped by SIGINT/SIGTERM after the running runs checkpointed (repeat the command to continue)")

__all__ = ["register"]


def register(commands) -> None:
    """Add the ``experiment`` sub-command to the CLI's sub-parsers."""
    parser = commands.add_parser(
        "experiment",
        help="run one of the papers' experiments (grid, figures, claims table); 'experiment list' names them",
        description="Train the experiment's grid of networks (skipping finished runs, resuming interrupted ones), "
        "evaluate them, and write DIR/results.csv, the figures (PNG and PDF), DIR/claims.json and DIR/report.md. "
        f"Experiments: {', '.join(EXPERIMENTS)}; 'pathstats experiment list' describes them. SIGINT or SIGTERM stops "
        "the whole grid after the running runs checkpoint; the same command continues it.",
        epilog=_EPILOG,
    )
    parser.add_argument("name", metavar="NAME", help=f"{' | '.join(EXPERIMENTS)} | list")
    add_config_argument(parser, "data", standalone=True)  # pathstats train's --data, default included
    parser.add_argument("--out", metavar="DIR", help="output folder (default: experiments/NAME-SCALE-DATA, e.g. "
                        "experiments/fig1-quick-digits); a folder holding another experiment, scale, data set or grid "
                        "is refused")
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
    # Slurm grids that outlive the command (robust/experiments/slurm.py)
    parser.add_argument("--detach", action="store_true", help="slurm: submit and return at once (prints the job ids); "
                        "follow the grid with --status")
    parser.add_argument("--status", action="store_true", help="report the progress of the grid in --out (per run: pending, "
                        "running, requeued, done, failed; from the run folders and Slurm) and analyse it once complete")
    parser.add_argument("--max-requeues", type=int, default=10, metavar="N", help="slurm: times an array task may be "
                        "requeued after reaching its time limit, resuming from its checkpoints (default 10)")
    parser.add_argument("--retry-failed", action="store_true", help="run failed runs again (default: keep their failure)")
    parser.add_argument("--dry-run", action="store_true", help="print every run of the grid with its full configuration "
                        "and its strengths in both units, without training")
    parser.add_argument("--reanalyse", metavar="DIR", help="claims, figures and report from DIR/results.csv and "
                        "DIR/epochs.csv alone (no run folders, no training); written to --out (default DIR)")
    parser.add_argument("--plan", action="store_true", help="measure a few steps of each run type on this device and "
                        "print the projected wall time, device-hours and memory per run and in total; runs nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=_cmd_experiment)


def _list(args: argparse.Namespace) -> int:
    rows = [{"name": e.name, "title": e.title, "source": e.source, "runs": e.paper.n_runs, "quick_runs": e.quick.n_runs}
            for e in EXPERIMENTS.values()]
    print_result({"experiments": rows}, args.json, lambda: format_table(
        ["name", "title", "source", "runs", "quick runs"], [[r["name"], r["title"], r["source"], r["runs"], r["quick_runs"]] for r in rows]),
        indent=1)
    return EXIT_OK


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _text(summary: dict) -> str:
    if "reanalysed" in summary:
        head = (f"{summary['experiment']}: reanalysed {summary['runs']} runs ({summary['done']} done, "
                f"{summary['failed']} failed) from the tables in {summary['reanalysed']}, scale {summary['scale']}")
    else:
        head = (f"{summary['experiment']}: {summary['runs']} runs ({summary['done']} done, {summary['failed']} failed, "
                f"{summary['pending']} pending; {summary['ran']} run now, {summary['skipped']} skipped) "
                f"in {summary['elapsed_s']:.1f} s")
    lines = [head + ("" if summary["complete"] else "; INCOMPLETE grid: the claims are not final"), ""]
    rows = [[c["claim"], _number(c["value"]),
             "n/a" if c["ci_low"] is None else f"[{c['ci_low']:.3g}, {c['ci_high']:.3g}]", c["expected"], c["verdict"]]
            for c in summary["claims"]]
    if rows:
        lines += [format_table(["claim", "value", "95% CI", "expected", "verdict"], rows, wrap={0: CLAIM_WIDTH}), ""]
    for failure in summary.get("failures", []):
        lines.append(f"failed run {failure['id']}: {failure['error']}")
    lines += [f"wrote {path}" for path in list(summary["files"].values()) + summary["figures"]]
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return str(value)


def _dry_text(plan: dict) -> str:
    """A table of the runs (id and the settings that vary) and the shared settings."""
    flat = [flatten({"train": r["train"], "units": r["units"]}) for r in plan["runs"]]
    first = flat[0]

    def shown(key: str) -> bool:
        if key.startswith("train."):
            return True
        # the table keeps the numbers; a strength whose unit leaves it unchanged is shown once,
        # as the training setting; the words (what a strength is taken as) are in --json
        same = "train." + key.split(".", 1)[1]
        if same in first and all(row.get(key) == row.get(same) for row in flat):
            return False
        return all(row.get(key) is None or isinstance(row.get(key), (int, float)) for row in flat)

    varying = [k for k in plan["varying"] if shown(k)]
    has_status = any("status" in r for r in plan["runs"])
    headers = ["id"] + [k.split(".", 1)[1] for k in varying] + (["status"] if has_status else [])
    rows = [[run["id"]] + [_cell(row.get(k, "")) for k in varying] + ([run.get("status", "")] if has_status else [])
            for run, row in zip(plan["runs"], flat)]
    lines = [f"{plan['experiment']} at scale {plan['scale']} on {plan['data']}: {plan['n_runs']} runs "
             f"({plan['title']}; {plan['source']}); dry run, nothing trained", "",
             format_table(headers, rows, align="l" * len(headers)), "", "shared by every run:"]
    width = max((len(k) for k in plan["shared"]), default=0)
    lines += [f"  {k.ljust(width)}  {_cell(v)}" for k, v in plan["shared"].items()]
    lines.append("evaluations of each trained network: " + (", ".join(json.dumps(e) for e in plan["evaluations"])
                                                            or "none (the per-epoch metrics only)"))
    lines.append("every setting of every run, with what each strength is taken as: --json")
    return "\n".join(lines)


def _cmd_experiment(args: argparse.Namespace) -> int:
    if args.name == "list":
        return _list(args)
    get(args.name)  # unknown names are refused before anything else
    if args.executor not in ("local", "slurm"):
        raise ExecutorError(f"--executor must be local or slurm, got {args.executor!r}")
    if args.quick and args.scale not in (None, "quick"):
        raise InvalidArgumentError(f"--quick is an alias of --scale quick; it contradicts --scale {args.scale}")
    if args.dry_run and args.reanalyse:
        raise InvalidArgumentError("--dry-run and --reanalyse exclude each other: a dry run trains nothing, a reanalysis "
                                   "reads finished tables")
    explicit = "quick" if args.quick else args.scale
    if args.reanalyse is not None:
        summary = reanalyse(args.name, args.reanalyse, out=args.out, scale=explicit)
        print_result(summary, args.json, lambda: _text(summary), indent=1)
        return EXIT_OK
    scale = explicit or "paper"
    if args.dry_run:
        plan = dry_run(args.name, args.data, scale, out=args.out or default_out(args.name, scale, args.data))
        print_result(plan, args.json, lambda: _dry_text(plan), indent=1)
        return EXIT_OK
    if args.plan:  # measured on this device, nothing run or written
        import torch

        from pathstats.robust.experiments.planning import format_plan, plan_grid

        planned = plan_grid(args.name, data=args.data, scale=scale, jobs=args.jobs,
                            device="cuda" if torch.cuda.is_available() else "cpu")
        print_result(planned, args.json, lambda: format_plan(planned), indent=1)
        return EXIT_OK
    out = args.out or default_out(args.name, scale, args.data)
    if args.status or args.detach:
        from pathstats.robust.experiments import slurm

        if args.detach and args.executor != "slurm":
            raise InvalidArgumentError("--detach needs --executor slurm (a local grid runs in this process)")
        if args.status:
            summary = slurm.status(args.name, out, scale=explicit)
            print_result(summary, args.json, lambda: slurm.format_status(summary), indent=1)
            return EXIT_OK
    summary = run_experiment(args.name, out, data=args.data, scale=scale, executor=args.executor, jobs=args.jobs,
                             threads=args.threads, partition=args.partition, gpus_per_job=args.gpus_per_job,
                             time_min=args.time, runs_per_job=args.runs_per_job, retry_failed=args.retry_failed,
                             detach=args.detach, max_requeues=args.max_requeues)
    if summary.get("detached"):
        print_result(summary, args.json, lambda: slurm.format_submission(summary), indent=1)
        return EXIT_OK
    print_result(summary, args.json, lambda: _text(summary), indent=1)
    prefix = f"pathstats experiment {args.name}"
    if summary["interrupted"]:
        print(f"{prefix}: stopped by {summary['interrupted']} after the running runs checkpointed "
              f"({summary['done']} of {summary['runs']} runs done; their tables are in {out}, "
              f"--reanalyse {out} analyses them); repeat the command to continue", file=sys.stderr)
        return EXIT_SIGNAL[summary["interrupted"]]
    if summary["failed"] and not summary["done"]:
        print(f"{prefix}: error: every run failed ({summary['failed']} of {summary['runs']}), e.g. "
              f"{summary['failures'][0]['error']}; see {out}/results.csv", file=sys.stderr)
        return EXIT_ALL_FAILED
    if summary["failed"]:
        print(f"{prefix}: {summary['failed']} of {summary['runs']} runs failed (listed above and in the report); "
              "the claims use the others", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK
