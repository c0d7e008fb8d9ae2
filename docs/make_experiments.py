"""The experiments page's tables, generated from the one description of each experiment.

At every docs build, :func:`write_sections` writes ``_generated/experiments.rst`` from
:data:`pathstats.robust.experiments.EXPERIMENTS` (commands, grids) and from the quick
and medium runs' results kept in ``docs/experiments/NAME/`` and ``docs/experiments/NAME-medium/``
(claims table, figures), and
``_generated/protocols.inc`` (included by ``protocols.rst``): per experiment, the
settings table (setting / paper / authors' code / pathstats / medium / reason) rendered by
:func:`pathstats.robust.experiments.catalogue.settings_rows` from the same records and
grids that run, the three scales' grids and the medium grid's projected cost.  Those results
take minutes to compute, longer than a docs build should, so they are kept in the
repository; regenerate them with::

    python docs/make_experiments.py --regenerate [NAME ...] [--scale quick|medium] [--jobs 2] [--work DIR]

which runs ``pathstats experiment NAME --data digits --scale SCALE`` for each experiment into
``DIR/NAME-SCALE`` (resuming what is there) and copies its figures (PNG), its tables, ``claims.json`` and
``report.md`` into ``docs/experiments/NAME/``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil

from pathstats.robust.experiments.catalogue import SCALES, settings_rows

HERE = os.path.dirname(os.path.abspath(__file__))
KEPT = os.path.join(HERE, "experiments")


def _table(header: list, rows: list) -> list:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header] + rows:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return lines + [""]


def _grid_rows(grid) -> list:
    axes = grid.axes()
    methods = "; ".join(f"``{m}`` {', '.join(f'{e:g}' for e in s)}" for m, s in axes["methods"].items())
    sizes = ", ".join("native" if s is None else str(s) for s in axes["sizes"])
    train = ", ".join(f"{k} {v}" for k, v in axes["train"].items())
    evaluations = "; ".join(f"{e['name']} ({', '.join(f'{k} {v}' for k, v in e.items() if k != 'name')})"
                            for e in axes["evaluations"]) or "per-epoch metrics only"
    return [", ".join(f"``{a}``" for a in axes["archs"]), sizes, methods, ", ".join(map(str, axes["seeds"])),
            str(grid.n_runs), train, evaluations]


def _text(value) -> str:
    """A table cell's text with reStructuredText's inline markup characters escaped."""
    return (str(value).replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("`", "\\`")
            .replace("_", "\\_"))


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def section(experiment) -> list:
    """The reStructuredText section of one experiment."""
    name = experiment.name
    title = f"``{name}``: {experiment.title}"
    lines = [title, "-" * len(title), "", f"*{experiment.source}.* {experiment.summary}", "",
             ".. code-block:: console", "",
             f"   $ pathstats experiment {name} --data digits --quick --jobs 2   # minutes on a laptop CPU",
             f"   $ pathstats experiment {name} --data cifar10:DIR --executor slurm --partition gpu --gpus-per-job 1", ""]
    lines += _table(["grid", "architectures", "sizes", "methods and strengths", "seeds", "runs", "training", "evaluations"],
                    [[f"``--scale {scale}``"] + _grid_rows(experiment.grid(scale)) for scale in SCALES])
    lines += [f"The settings of each scale against the paper and the authors' code: :ref:`protocol-{name}`.", ""]
    for scale in ("medium", "quick"):
        lines += kept_run_section(name, scale)
    return lines


def kept_folder(name: str, scale: str) -> str:
    """Where the docs keep an experiment's results at ``scale`` (the quick runs keep their historical folder)."""
    return os.path.join(KEPT, name if scale == "quick" else f"{name}-{scale}")


def kept_run_section(name: str, scale: str) -> list:
    """The claims table (the paper's statement and its source next to our statistic and verdict)
    and the figures of the run kept for ``scale``, with the command that regenerates them."""
    folder = kept_folder(name, scale)
    rel = os.path.relpath(folder, HERE)
    command = f"python docs/make_experiments.py --regenerate {name} --scale {scale}"
    claims_file = os.path.join(folder, "claims.json")
    if not os.path.exists(claims_file):
        return [f"No {scale} run kept yet: ``{command}``.", ""]
    with open(claims_file) as f:
        claims = json.load(f)
    counts = {v: sum(c["verdict"] == v for c in claims) for v in ("holds", "fails", "inconclusive", "untested")}
    lines = [f"**The {scale} run** (kept in ``docs/{rel}/``: ``results.csv``, ``epochs.csv``, ``claims.json``, "
             f"``report.md``, figures; regenerate with ``{command}``): "
             + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".", ""]
    findings = os.path.join(folder, "findings.inc")  # not .rst: Sphinx would read it as a page of its own
    if os.path.exists(findings):  # what the team read in the run, written after it (with the figures it cites)
        with open(findings) as f:
            lines += [f.read().rstrip(), ""]
    lines += _table(["the paper's statement", "source", "statistic", "value [95% CI]", "n", "expected", "verdict"],
                    [[_text(c["claim"]), _text(c.get("source", "")), _text(c["statistic"]),
                      f"{_number(c['value'])} [{_number(c['ci_low'])}, {_number(c['ci_high'])}]",
                      str(c.get("n", "")), _text(c["expected"]), f"**{c['verdict']}**"] for c in claims])
    for png in sorted(glob.glob(os.path.join(folder, "*.png"))):
        lines += [f".. image:: /{os.path.relpath(png, HERE)}", f"   :alt: {name} {scale} run, "
                  f"{os.path.basename(png)[:-4]}", ""]
    return lines


def protocol_section(experiment) -> list:
    """The reStructuredText section of one experiment's protocol: the settings table and the
    medium grid's projected single-core cost."""
    from pathstats.robust.experiments.catalogue import medium_minutes

    name = experiment.name
    title = f"``{name}``: {experiment.source}"
    lines = [f".. _protocol-{name}:", "", title, "-" * len(title), ""]
    lines += _table(["setting", "paper", "authors' code", "pathstats (paper scale)", "pathstats (medium)", "why different"],
                    [[_text(cell) for cell in row] for row in settings_rows(experiment)])
    medium = experiment.medium
    lines += [f"Medium grid: {medium.n_runs} runs, {medium.train['epochs']} epochs, evaluated every "
              f"{medium.train.get('eval_every', 1)} (and at epoch 0 and the last); projected "
              f"{medium_minutes(medium):.0f} minutes on one CPU core from the measured costs"
              + (" (plus the evaluations after training)." if medium.evaluations else "."), ""]
    if experiment.medium_note:
        lines += [_text(experiment.medium_note[0].upper() + experiment.medium_note[1:]) + ".", ""]
    return lines


def write_sections(directory: str) -> str:
    """Write ``directory/experiments.rst`` (one section per experiment) and
    ``directory/protocols.inc`` (one settings table per experiment); return the first's path."""
    from pathstats.robust.experiments import EXPERIMENTS
    from pathstats.robust.experiments.catalogue import MEDIUM_COST, MEDIUM_NET_COST

    os.makedirs(directory, exist_ok=True)
    lines = []
    for experiment in EXPERIMENTS.values():
        lines += section(experiment)
    path = os.path.join(directory, "experiments.rst")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    protocol = _table(["method", "seconds per step (conv6, 16 channels, 32 px, batch 32)"],
                      [["one evaluated epoch", f"{MEDIUM_COST['eval']:.1f}"]]
                      + [[f"``{m}``", f"{v:.4f}"] for m, v in MEDIUM_COST.items() if m != "eval"])
    protocol += _table(["network", "size", "channels", "cost relative to conv6, 16 channels, 32 px"],
                       [[f"``{arch}``", str(size), str(channels), f"{v:.2f}"]
                        for (arch, size, channels), v in MEDIUM_NET_COST.items()])
    for experiment in EXPERIMENTS.values():
        protocol += protocol_section(experiment)
    # not .rst: Sphinx would read it as a page of its own besides docs/protocols.rst's include,
    # and its section labels would be defined twice
    with open(os.path.join(directory, "protocols.inc"), "w") as f:
        f.write("\n".join(protocol) + "\n")
    return path


KEPT_FILES = ("experiment.json", "results.csv", "epochs.csv", "claims.json", "report.md")


def regenerate(names: list, work: str, jobs: int, scale: str = "quick") -> None:
    """Run the ``scale`` grids of ``names`` on digits into ``work/NAME-SCALE`` (resuming what is
    there) and keep their tables, claims, report and figures (PNG) in ``docs/experiments``."""
    from pathstats.robust.experiments import run_experiment

    for name in names:
        out = os.path.join(work, f"{name}-{scale}")
        summary = run_experiment(name, out, data="digits", scale=scale, jobs=jobs)
        keep = kept_folder(name, scale)
        os.makedirs(keep, exist_ok=True)
        for path in glob.glob(os.path.join(out, "*.png")) + [os.path.join(out, f) for f in KEPT_FILES]:
            if os.path.exists(path):
                shutil.copy(path, keep)
        print(f"{name}: {summary['done']} done, {summary['failed']} failed; kept in {keep}")


if __name__ == "__main__":
    from pathstats.robust.experiments import EXPERIMENTS

    parser = argparse.ArgumentParser(description="Regenerate the runs shown on the experiments page.")
    parser.add_argument("--regenerate", nargs="*", metavar="NAME", help=f"experiments (default: all of {', '.join(EXPERIMENTS)})")
    parser.add_argument("--work", default="experiments-quick", help="where the runs go (default experiments-quick)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--scale", default="quick", choices=("quick", "medium"),
                        help="quick (minutes) or medium (about an hour per experiment on 2 cores)")
    args = parser.parse_args()
    if args.regenerate is None:
        parser.error("nothing to do: give --regenerate [NAME ...]")
    regenerate(args.regenerate or list(EXPERIMENTS), args.work, args.jobs, args.scale)
