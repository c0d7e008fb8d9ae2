"""Run an experiment end to end: validate, expand, execute what is missing, collect, analyse.

The analysis reads nothing but the two tables: :func:`analyse` collects the run
folders into records, writes ``results.csv`` and ``epochs.csv`` (:mod:`.tables`), reads
them back and hands them to :func:`.analysis.analyse_tables`; :func:`reanalyse` does the
same from the tables alone (no run folders), so tables from a cluster or a colleague
give the same claims, figures and report.

The output folder belongs to one experiment at one scale on one data set
(``experiment.json``); a folder holding anything else is refused before any work, and
so is data that cannot be read.
"""

from __future__ import annotations

import os
import shlex
import sys
import time

from pathstats._io import check_output_path, write_json
from pathstats.errors import ExperimentFolderError
from pathstats.progress import progress as progress_bar
from pathstats.provenance import provenance

from . import catalogue
from .executors import ExecutorError, GridInterrupted, check_slurm, run_local, run_slurm
from .grid import expand, run_id
from .store import DEFAULT_RUN_FN, collect, is_finished, read_json, read_status, run_dir

__all__ = ["plan", "validate", "run_experiment", "analyse", "reanalyse", "dry_run", "default_out", "data_name",
           "check_out_folder", "flatten", "ExperimentFolderError", "EXECUTORS", "EXPERIMENT_FILE"]

EXECUTORS = ("local", "slurm")
EXPERIMENT_FILE = "experiment.json"
#: The statuses of a run that will not change by running the command again.
FINAL = ("done", "failed")


def plan(name: str, data: str = "digits", scale: str = "paper") -> list:
    """The jobs of experiment ``name`` on ``data`` at ``scale`` (``quick``, ``medium`` or ``paper``).

    Examples
    --------
    >>> jobs = plan("fig2", scale="quick")
    >>> len(jobs), sorted({job.train["size"] for job in jobs})
    (18, [8, 16, 32])
    """
    return expand(catalogue.get(name).grid(scale), data)


def data_name(data: str) -> str:
    """A short name of a data spec for folder names: ``digits``, ``cifar10``, ``folder-<its name>``.

    Examples
    --------
    >>> data_name("digits"), data_name("cifar10:/data/cifar-10-batches-py"), data_name("folder:~/pets/")
    ('digits', 'cifar10', 'folder-pets')
    """
    kind, _, path = data.partition(":")
    if kind == "folder":
        return f"folder-{os.path.basename(os.path.normpath(os.path.expanduser(path))) or 'root'}"
    return kind


def default_out(name: str, scale: str, data: str) -> str:
    """The default output folder, ``experiments/NAME-SCALE-DATA``: runs of another scale or data set
    never land in the same folder.

    Examples
    --------
    >>> default_out("fig1", "quick", "digits"), default_out("fig2", "paper", "cifar10:/data/c")
    ('experiments/fig1-quick-digits', 'experiments/fig2-paper-cifar10')
    """
    return os.path.join("experiments", f"{name}-{scale}-{data_name(data)}")


def check_out_folder(out: str, name: str, scale: str, data: str, ids: list) -> None:
    """Refuse an output folder that holds anything but this experiment at this scale on this data.

    A new or empty folder is accepted; so is one whose ``experiment.json`` names the same
    experiment, scale and data and whose runs all belong to this grid (the same grid, or
    one extended with new runs).  Anything else -- another experiment, scale, data set or
    grid, or a non-empty folder without ``experiment.json`` -- is refused in one line,
    before any work, as ``pathstats train`` refuses a folder with another configuration.
    """
    if not os.path.isdir(out) or not os.listdir(out):
        return
    stored = read_json(os.path.join(out, EXPERIMENT_FILE))
    if not isinstance(stored, dict):
        raise ExperimentFolderError(f"{out} is not empty and holds no readable {EXPERIMENT_FILE}, so it is not the folder "
                                    f"of a pathstats experiment; use another --out (or an empty folder)")
    there = {"experiment": stored.get("experiment"), "scale": stored.get("scale"), "data": stored.get("data")}
    here = {"experiment": name, "scale": scale, "data": data}
    if there != here:
        diff = "; ".join(f"{k} {there[k]!r} there, {here[k]!r} now" for k in here if there[k] != here[k])
        raise ExperimentFolderError(f"{out} holds another experiment ({diff}); use another --out, or repeat that "
                                    "experiment's command to continue it")
    foreign = sorted(set(stored.get("runs") or []) - set(ids))
    if foreign:
        raise ExperimentFolderError(f"{out} holds {len(foreign)} runs that are not in the {name} {scale} grid (e.g. "
                                    f"{foreign[0]}): another grid; use another --out")


def validate(jobs: list, out: str, executor: str, jobs_n: int, slurm: dict, run_fn: str, threads: int = 1) -> None:
    """Refuse bad input before any work: every training configuration (with the real trainer),
    the output folder, the executor and its options."""
    check_output_path(out, directory=True)
    if executor not in EXECUTORS:
        raise ExecutorError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if not isinstance(jobs_n, int) or jobs_n < 1:
        raise ExecutorError(f"--jobs must be a positive integer, got {jobs_n!r}")
    if not isinstance(threads, int) or threads < 1:
        raise ExecutorError(f"--threads must be a positive integer, got {threads!r}")
    if executor == "slurm":
        check_slurm(**slurm)
    if run_fn == DEFAULT_RUN_FN:
        from ..data import check_data_spec
        from ..train import TrainConfig

        for job in jobs:
            config = TrainConfig.from_dict(job.train).resolved()
            config.validate()
            check_data_spec(config.data, config.size)


def _check_data(jobs: list) -> None:
    """Read every data set of the grid (contents, not only names) before the first run."""
    from ..data import check_data_files

    for spec in dict.fromkeys(job.train["data"] for job in jobs):
        check_data_files(spec)


def _fingerprint(records: list, scale: str, complete: bool) -> str:
    from pathstats import __version__

    state = [[r["id"], r["status"], r["attempts"], len(r["metrics"]), sorted(k for k, v in r["evaluations"].items() if v)]
             for r in records]
    return run_id({"records": state, "scale": scale, "complete": complete, "version": __version__})


def _last_epochs(epochs) -> int:
    """How many final epochs the bands of Figures 2 and 12 pool (half the run, at most 20)."""
    return min(20, max(1, int(epochs) // 2))


def _analyse_tables(name: str, results: list, epochs: list, out: str, context: dict) -> dict:
    """The tables' rows -> ``analyse_tables`` -> figures, ``claims.json`` and ``report.md`` in ``out``."""
    from . import analysis as _analysis
    from . import report as _report

    experiment = catalogue.get(name)
    if any(row.get("status", "done") == "done" for row in results):
        analysis = _analysis.analyse_tables(name, results, epochs, out, context)
    else:  # nothing finished: nothing to draw or test
        analysis = {"figures": [], "claims": []}
    write_json(os.path.join(out, "claims.json"), analysis["claims"])
    _report.write_report(os.path.join(out, "report.md"), experiment, results, analysis, context)
    return analysis


def analyse(name: str, out: str, jobs: list, scale: str, interrupted: bool = False) -> dict:
    """Collect the runs, write ``results.csv`` and ``epochs.csv``, then the figures, ``claims.json``
    and ``report.md`` from those tables alone.

    The context given to the analysis is ``{"scale", "complete", "last_epochs"}``;
    ``complete`` is False while a run of the grid is neither done nor failed (or the grid
    was ``interrupted``), and the report then says its claims are not final.  When no run
    changed since the last analysis (``analysis.json`` records a fingerprint of the runs'
    states) and its files are all there, they are kept as they are.
    """
    from . import tables

    experiment = catalogue.get(name)
    records = collect(out, jobs)
    complete = not interrupted and all(r["status"] in FINAL for r in records)
    fingerprint = _fingerprint(records, scale, complete)
    previous = read_json(os.path.join(out, "analysis.json"), {})
    claims = read_json(os.path.join(out, "claims.json"))
    files = [os.path.join(out, f) for f in ("results.csv", "epochs.csv", "report.md")] + previous.get("figures", [])
    if previous.get("fingerprint") == fingerprint and claims is not None and all(os.path.exists(f) for f in files):
        return {"records": records, "complete": complete, "figures": previous["figures"], "claims": claims}
    tables.write_tables(out, records)
    context = {"scale": scale, "complete": complete,
               "last_epochs": _last_epochs(experiment.grid(scale).train.get("epochs", 20))}
    results, epochs = tables.read_tables(out)  # the analysis sees exactly what --reanalyse would
    analysis = _analyse_tables(name, results, epochs, out, context)
    write_json(os.path.join(out, "analysis.json"), {"fingerprint": fingerprint, "figures": analysis["figures"]})
    return {"records": records, "complete": complete, "figures": analysis["figures"], "claims": analysis["claims"]}


def _grid_of_tables(name: str, results: list, scale: str | None) -> tuple:
    """The scale of the tables' grid (``scale`` if given, else the scale whose grid holds every
    run id of the tables, else ``paper``) and whether the tables cover that grid with final runs."""
    ids = {row.get("id") for row in results}
    statuses = {row.get("id"): row.get("status", "done") for row in results}
    data = {row.get("data") for row in results}
    candidates = [scale] if scale else list(catalogue.SCALES)
    grids = {}
    if len(data) == 1 and None not in data:
        (spec,) = data
        for s in candidates:
            try:
                grids[s] = {job.id for job in plan(name, spec, s)}
            except ValueError:  # the experiment has no grid at that scale
                continue
    if scale is None:
        scale = next((s for s, grid in grids.items() if ids <= grid), "paper")
    grid = grids.get(scale)
    complete = bool(grid) and ids <= grid and all(statuses.get(i) in FINAL for i in grid)
    return scale, complete


def reanalyse(name: str, directory: str, out: str | None = None, scale: str | None = None) -> dict:
    """Claims, figures and report of experiment ``name`` from ``directory/results.csv`` and
    ``directory/epochs.csv`` alone (no run folders, no training), written to ``out``
    (default: ``directory``).

    The scale is ``scale``, or the one whose grid holds the tables' run ids (else
    ``paper``); the report is marked incomplete unless the tables hold every run of that
    grid, each done or failed.
    """
    experiment = catalogue.get(name)
    if scale is not None and scale not in catalogue.SCALES:
        raise ExperimentFolderError(f"--scale must be one of {', '.join(catalogue.SCALES)}, got {scale!r}")
    if not os.path.isdir(directory):
        raise ExperimentFolderError(f"--reanalyse {directory}: no such folder; give a folder with results.csv and "
                                    "epochs.csv")
    missing = [f for f in ("results.csv", "epochs.csv") if not os.path.isfile(os.path.join(directory, f))]
    if missing:
        raise ExperimentFolderError(f"--reanalyse {directory}: no {' or '.join(missing)} there; give the folder of an "
                                    "experiment's tables")
    stored = read_json(os.path.join(directory, EXPERIMENT_FILE))
    if isinstance(stored, dict) and stored.get("experiment") not in (None, name):
        raise ExperimentFolderError(f"--reanalyse {directory}: its tables are experiment {stored['experiment']!r}, "
                                    f"not {name!r}; name that experiment")
    out = out or directory
    check_output_path(out, directory=True)
    if os.path.abspath(out) != os.path.abspath(directory) and os.path.isdir(out) and os.listdir(out):
        there = read_json(os.path.join(out, EXPERIMENT_FILE))
        if not (isinstance(there, dict) and there.get("experiment") == name):
            raise ExperimentFolderError(f"{out} is not empty and holds no {name} experiment; use another --out")
    from . import tables

    start = time.perf_counter()
    results, epochs_rows = tables.read_tables(directory)
    scale, complete = _grid_of_tables(name, results, scale)
    epochs = {row.get("epochs") for row in results if row.get("epochs") not in (None, "")}
    try:
        last = _last_epochs(max(int(float(e)) for e in epochs)) if epochs else _last_epochs(
            experiment.grid(scale).train.get("epochs", 20))
    except ValueError:
        last = _last_epochs(20)
    os.makedirs(out, exist_ok=True)
    context = {"scale": scale, "complete": complete, "last_epochs": last}
    analysis = _analyse_tables(name, results, epochs_rows, out, context)
    return {"experiment": name, "reanalysed": os.path.abspath(directory), "out": os.path.abspath(out), "scale": scale,
            "complete": complete, "runs": len(results), "done": sum(r.get("status", "done") == "done" for r in results),
            "failed": sum(r.get("status") == "failed" for r in results), "claims": analysis["claims"],
            "figures": analysis["figures"],
            "files": {k: os.path.join(os.path.abspath(out), v) for k, v in (("claims", "claims.json"), ("report", "report.md"))},
            "elapsed_s": time.perf_counter() - start, "provenance": provenance(argv=sys.argv)}


def flatten(value, prefix: str = "") -> dict:
    """Nested dicts as one dict of dotted paths to their leaves (lists are leaves).

    Examples
    --------
    >>> flatten({"train": {"eps": 0.1}, "units": {"eps": {"pixel": {"inf": 0.02}}, "d": 64}})
    {'train.eps': 0.1, 'units.eps.pixel.inf': 0.02, 'units.d': 64}
    """
    if not isinstance(value, dict):
        return {prefix: value}
    out = {}
    for key, item in value.items():
        out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def dry_run(name: str, data: str = "digits", scale: str = "paper", out: str | None = None) -> dict:
    """Every run of the grid with its full resolved configuration, its strengths in both units
    (:meth:`TrainConfig.units`) and its evaluations, without training or loading data
    (the data spec is checked).  ``shared`` holds the settings equal across all runs, as
    dotted paths to their leaves (:func:`flatten`: ``train.epochs``, ``units.eps.pixel.inf``),
    ``varying`` names the others.  With ``out`` (refused as :func:`run_experiment` refuses
    it), each run's status there (``new`` if none).
    """
    from ..data import check_data_spec
    from ..train import TrainConfig

    experiment = catalogue.get(name)
    jobs = plan(name, data, scale)
    if out is not None:
        check_output_path(out, directory=True)
        check_out_folder(out, name, scale, data, [job.id for job in jobs])
    runs = []
    for job in jobs:
        config = TrainConfig.from_dict(job.train).resolved()
        config.validate()
        check_data_spec(config.data, config.size)
        run = {"id": job.id, "train": config.to_dict(), "units": config.units(),
               "evaluations": [dict(e) for e in job.evaluations]}
        if out is not None:
            run["status"] = read_status(run_dir(out, job)).get("status")
        runs.append(run)
    flat = [flatten({"train": r["train"], "units": r["units"]}) for r in runs]
    keys = list(dict.fromkeys(k for row in flat for k in row))
    varying = [k for k in keys if any(row.get(k) != flat[0].get(k) for row in flat)]
    shared = {k: flat[0].get(k) for k in keys if k not in varying}
    evaluations = [dict(e) for e in experiment.grid(scale).evaluations]
    return {"experiment": name, "title": experiment.title, "source": experiment.source, "scale": scale, "data": data,
            "out": out, "n_runs": len(runs), "shared": shared, "varying": varying, "evaluations": evaluations,
            "runs": runs}


def run_experiment(name: str, out: str, data: str = "digits", scale: str = "paper", executor: str = "local",
                   jobs: int = 1, threads: int = 1, partition: str | None = None, gpus_per_job: int = 0, time_min: int = 60,
                   runs_per_job: int = 1, retry_failed: bool = False, run_fn: str = DEFAULT_RUN_FN,
                   progress: bool = True, detach: bool = False, max_requeues: int = 10) -> dict:
    """Run experiment ``name`` into ``out``: the missing runs, then the analysis.

    Finished runs are skipped (never recomputed); interrupted ones resume from their
    checkpoints; failed ones are skipped unless ``retry_failed``.  SIGINT or SIGTERM stops
    the whole grid after the running runs checkpoint; the tables of what finished are then
    written (no figures, no report: :func:`reanalyse` gives them, marked incomplete) and
    ``interrupted`` names the signal.  Returns a
    summary: ``experiment, out, data, scale, executor, runs, done, failed, pending,
    skipped, ran, complete, interrupted, failures, claims, figures, files, elapsed_s,
    provenance``.  On Slurm with ``detach``, it returns after submitting:
    ``experiment, out, scale, ran, skipped, submission, status_command`` (:mod:`.slurm`).
    """
    start = time.perf_counter()
    experiment = catalogue.get(name)
    job_list = plan(name, data, scale)
    slurm = {"partition": partition, "gpus_per_job": gpus_per_job, "time_min": time_min, "runs_per_job": runs_per_job,
             "max_requeues": max_requeues}
    validate(job_list, out, executor, jobs, slurm, run_fn, threads)
    check_out_folder(out, name, scale, data, [job.id for job in job_list])
    todo, skipped = [], 0
    for job in job_list:
        directory = run_dir(out, job)
        if is_finished(job, directory) or (read_status(directory).get("status") == "failed" and not retry_failed):
            skipped += 1
        else:
            todo.append((job.to_dict(), directory, run_fn))
    if todo and run_fn == DEFAULT_RUN_FN:
        _check_data(job_list)
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, EXPERIMENT_FILE), {
        "experiment": name, "title": experiment.title, "source": experiment.source, "data": data, "scale": scale,
        "grid": experiment.grid(scale).axes(), "runs": [job.id for job in job_list],
        "provenance": provenance(argv=sys.argv)})
    interrupted = None
    if todo:
        bar = progress_bar(total=len(todo), desc=f"{name}: runs", unit="run", disable=not progress or detach)
        failed = []

        def tick(status):
            if status.get("status") in FINAL:
                bar.update(1)
            if status.get("status") == "failed":
                failed.append(status)
            bar.set_postfix(failed=len(failed))

        try:
            if executor == "local":
                run_local(todo, jobs, threads, progress=tick)
            else:
                from . import slurm as _slurm

                submitted = run_slurm(todo, os.path.join(out, _slurm.FOLDER), partition, gpus_per_job, time_min, runs_per_job,
                                      progress=tick, detach=detach, max_requeues=max_requeues)
                if detach:
                    return {"experiment": name, "out": os.path.abspath(out), "scale": scale, "detached": True,
                            "ran": len(todo), "skipped": skipped, "submission": submitted,
                            "status_command": f"pathstats experiment {name} --out {shlex.quote(out)} --status"}
        except KeyboardInterrupt as exc:  # GridInterrupted, or the trainer's answer to a second Ctrl-C
            interrupted = exc.signal if isinstance(exc, GridInterrupted) else "SIGINT"
        finally:
            bar.close()
    if interrupted is None:
        result = analyse(name, out, job_list, scale)
    else:
        # stop within seconds (a scheduler kills what outlives its grace period): the tables of
        # what finished, no figures; --reanalyse DIR analyses them, marked incomplete
        from . import tables

        records = collect(out, job_list)
        tables.write_tables(out, records)
        result = {"records": records, "complete": False, "claims": [], "figures": []}
    records = result["records"]
    counts = {s: sum(r["status"] == s for r in records) for s in FINAL}
    return {
        "experiment": name, "out": os.path.abspath(out), "data": data, "scale": scale, "executor": executor,
        "runs": len(records), "done": counts["done"], "failed": counts["failed"],
        "pending": len(records) - counts["done"] - counts["failed"], "skipped": skipped, "ran": len(todo),
        "complete": result["complete"], "interrupted": interrupted,
        "failures": [{"id": r["id"], "error": r["error"]} for r in records if r["status"] == "failed"],
        "claims": result["claims"], "figures": result["figures"],
        "files": {k: os.path.join(os.path.abspath(out), v) for k, v in
                  (("results", "results.csv"), ("epochs", "epochs.csv"), ("claims", "claims.json"),
                   ("report", "report.md"))},
        "elapsed_s": time.perf_counter() - start, "provenance": provenance(argv=sys.argv),
    }
