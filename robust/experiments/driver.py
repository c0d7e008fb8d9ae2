"""Run an experiment end to end: validate, expand, execute what is missing, collect, analyse."""

from __future__ import annotations

import os
import sys
import time

from pathstats._io import check_output_path, write_json
from pathstats.progress import progress as progress_bar
from pathstats.provenance import provenance

from . import catalogue
from .executors import ExecutorError, check_slurm, run_local, run_slurm
from .grid import expand, run_id
from .report import write_report
from .store import DEFAULT_RUN_FN, collect, is_finished, read_json, read_status, run_dir

__all__ = ["plan", "validate", "run_experiment", "analyse", "EXECUTORS"]

EXECUTORS = ("local", "slurm")


def plan(name: str, data: str = "digits", scale: str = "paper") -> list:
    """The jobs of experiment ``name`` on ``data`` at ``scale`` (``quick``, ``medium`` or ``paper``).

    Examples
    --------
    >>> jobs = plan("fig2", scale="quick")
    >>> len(jobs), sorted({job.train["size"] for job in jobs})
    (18, [8, 16, 32])
    """
    return expand(catalogue.get(name).grid(scale), data)


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


def _fingerprint(records: list, scale: str) -> str:
    from pathstats import __version__

    state = [[r["id"], r["status"], r["attempts"], len(r["metrics"]), sorted(k for k, v in r["evaluations"].items() if v)]
             for r in records]
    return run_id({"records": state, "scale": scale, "version": __version__})


def analyse(name: str, out: str, jobs: list, scale: str) -> dict:
    """Collect the runs, write ``results.csv``, the figures, ``claims.json`` and ``report.md``.

    When no run changed since the last analysis (``analysis.json`` records a fingerprint
    of the runs' states) and its files are all there, they are kept as they are.
    """
    experiment = catalogue.get(name)
    records = collect(out, jobs)
    fingerprint = _fingerprint(records, scale)
    previous = read_json(os.path.join(out, "analysis.json"), {})
    claims = read_json(os.path.join(out, "claims.json"))
    files = [os.path.join(out, f) for f in ("results.csv", "report.md")] + previous.get("figures", [])
    if previous.get("fingerprint") == fingerprint and claims is not None and all(os.path.exists(f) for f in files):
        return {"records": records, "figures": previous["figures"], "claims": claims}
    from .analysis import analyse_tables
    from .tables import read_tables, write_tables

    write_tables(out, records)
    results, epochs_rows = read_tables(out)  # the analysis reads nothing but the tables (as --reanalyse does)
    epochs = int(experiment.grid(scale).train.get("epochs", 20))
    context = {"last_epochs": min(20, max(1, epochs // 2)), "scale": scale,
               "complete": all(r["status"] == "done" for r in records)}
    if any(r["status"] == "done" for r in records):
        analysis = analyse_tables(name, results, epochs_rows, out, context)
    else:
        analysis = {"figures": [], "claims": []}
    write_json(os.path.join(out, "claims.json"), analysis["claims"])
    write_report(os.path.join(out, "report.md"), experiment, results, analysis, context)
    write_json(os.path.join(out, "analysis.json"), {"fingerprint": fingerprint, "figures": analysis["figures"]})
    return {"records": records, **analysis}


def run_experiment(name: str, out: str, data: str = "digits", scale: str = "paper", executor: str = "local",
                   jobs: int = 1, threads: int = 1, partition: str | None = None, gpus_per_job: int = 0, time_min: int = 60,
                   runs_per_job: int = 1, retry_failed: bool = False, run_fn: str = DEFAULT_RUN_FN,
                   progress: bool = True) -> dict:
    """Run experiment ``name`` into ``out``: the missing runs, then the analysis.

    Finished runs are skipped (never recomputed); interrupted ones resume from their
    checkpoints; failed ones are skipped unless ``retry_failed``.  Returns a summary:
    ``experiment, out, runs, done, failed, skipped, ran, claims, figures, files,
    elapsed_s, provenance``.
    """
    start = time.perf_counter()
    experiment = catalogue.get(name)
    job_list = plan(name, data, scale)
    slurm = {"partition": partition, "gpus_per_job": gpus_per_job, "time_min": time_min, "runs_per_job": runs_per_job}
    validate(job_list, out, executor, jobs, slurm, run_fn, threads)
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "experiment.json"), {
        "experiment": name, "title": experiment.title, "source": experiment.source, "data": data, "scale": scale,
        "grid": experiment.grid(scale).axes(), "runs": [job.id for job in job_list],
        "provenance": provenance(argv=sys.argv)})

    todo, skipped = [], 0
    for job in job_list:
        directory = run_dir(out, job)
        if is_finished(job, directory) or (read_status(directory).get("status") == "failed" and not retry_failed):
            skipped += 1
        else:
            todo.append((job.to_dict(), directory, run_fn))
    if todo:
        bar = progress_bar(total=len(todo), desc=f"{name}: runs", unit="run", disable=not progress)
        failed = []

        def tick(status):
            bar.update(1)
            if status.get("status") == "failed":
                failed.append(status)
            bar.set_postfix(failed=len(failed))

        try:
            if executor == "local":
                run_local(todo, jobs, threads, progress=tick)
            else:
                run_slurm(todo, os.path.join(out, "slurm"), partition, gpus_per_job, time_min, runs_per_job, progress=tick)
        finally:
            bar.close()
    result = analyse(name, out, job_list, scale)
    records = result["records"]
    counts = {s: sum(r["status"] == s for r in records) for s in ("done", "failed")}
    return {
        "experiment": name, "out": os.path.abspath(out), "data": data, "scale": scale, "executor": executor,
        "runs": len(records), "done": counts["done"], "failed": counts["failed"], "skipped": skipped, "ran": len(todo),
        "failures": [{"id": r["id"], "error": r["error"]} for r in records if r["status"] == "failed"],
        "claims": result["claims"], "figures": result["figures"],
        "files": {k: os.path.join(os.path.abspath(out), v) for k, v in
                  (("results", "results.csv"), ("claims", "claims.json"), ("report", "report.md"))},
        "elapsed_s": time.perf_counter() - start, "provenance": provenance(argv=sys.argv),
    }

