"""Bookkeeping that belongs to no engine: run folders, status, resumption, results.csv.

``DIR/runs/<id>/`` holds ``job.json`` (the training configuration and the evaluations),
``status.json`` (``running``, ``done``, ``interrupted`` or ``failed``, with the error and the number of
attempts), and what the run function writes there (the trainer's ``config.json``,
checkpoint, ``metrics.jsonl``, ``result.json``; ``evaluations/<name>-<hash>.json``).
Every file is written atomically.  :func:`execute` wraps the run function: a crash or a
non-finite result is recorded as ``failed`` and returned, never raised, so the grid goes
on.  A run is finished when its status is ``done`` and every file it promised exists;
re-running an experiment skips finished runs and calls the run function again on the
others, which resumes from the checkpoint.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import socket
import time
import traceback

from pathstats._io import write_json

from ..runfolder import read_json, read_run
from .grid import Job, run_id

__all__ = ["DEFAULT_RUN_FN", "run_dir", "evaluation_file", "read_json", "read_status", "is_finished", "execute",
           "execute_batch", "load_run_fn", "collect", "RUNS"]

RUNS = "runs"
DEFAULT_RUN_FN = "pathstats.robust.experiments.runner:run_one"


def run_dir(out: str, job: Job) -> str:
    """``out/runs/<id>``."""
    return os.path.join(out, RUNS, job.id)


def evaluation_file(directory: str, evaluation: dict) -> str:
    """Where an evaluation's result lives: ``evaluations/<name>-<hash of its options>.json``.

    Examples
    --------
    >>> evaluation_file("r", {"name": "bounds", "n": 200})
    'r/evaluations/bounds-...json'
    """
    return os.path.join(directory, "evaluations", f"{evaluation['name']}-{run_id(evaluation)[:10]}.json")


def read_status(directory: str) -> dict:
    """The run's status (``{"status": "new"}`` if it never started)."""
    return read_json(os.path.join(directory, "status.json"), {"status": "new", "attempts": 0})


def is_finished(job: Job, directory: str) -> bool:
    """Done, with its result and every evaluation on disk."""
    if read_status(directory).get("status") != "done" or not os.path.exists(os.path.join(directory, "result.json")):
        return False
    return all(os.path.exists(evaluation_file(directory, e)) for e in job.evaluations)


def load_run_fn(path: str):
    """Import ``"module:function"``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _non_finite(value, where: str = "") -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return where or "value"
    if isinstance(value, dict):
        for k, v in value.items():
            found = _non_finite(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _non_finite(v, f"{where}[{i}]")
            if found:
                return found
    return None


def execute(job: dict, directory: str, run_fn: str = DEFAULT_RUN_FN, interruptible=contextlib.nullcontext) -> dict:
    """Run one job in ``directory`` through ``run_fn(job, directory)``, recording its status.

    Returns the status written to ``status.json``; never raises for a failing run
    (exception or non-finite number in its result): the failure is recorded with the
    error's last line and traceback.  A run the trainer stopped on a signal, or a
    :class:`KeyboardInterrupt` (re-raised), is recorded ``interrupted`` with ``stopped_by``;
    the next attempt resumes it.  ``interruptible()`` is entered around the run function
    alone (the local executor lets a signal interrupt the run there, never the bookkeeping).
    """
    os.makedirs(directory, exist_ok=True)
    previous = read_status(directory)
    status = {"id": job.get("id") or run_id(job["train"]), "status": "running", "attempts": previous.get("attempts", 0) + 1,
              "host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(os.path.join(directory, "job.json"), job)
    write_json(os.path.join(directory, "status.json"), status)
    start = time.perf_counter()
    try:
        function = load_run_fn(run_fn)
        with interruptible():
            summary = function(job, directory)
        bad = _non_finite(summary)
        if bad:
            raise FloatingPointError(f"non-finite {bad} in the run's result (diverged training?)")
        if isinstance(summary, dict) and summary.get("status") == "interrupted":
            status.update(status="interrupted", error=summary.get("reason"), stopped_by=summary.get("stopped_by"))
        else:
            status.update(status="done", error=None)
    except KeyboardInterrupt as exc:  # a signal stopped the grid: resumed by the next attempt
        status.update(status="interrupted", error="stopped by a signal", stopped_by=getattr(exc, "signal", "SIGINT"),
                      elapsed_s=time.perf_counter() - start)
        write_json(os.path.join(directory, "status.json"), status)
        raise
    except BaseException as exc:  # noqa: BLE001 - a failed run is recorded, the grid goes on
        status.update(status="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0][:500],
                      traceback=traceback.format_exc()[-4000:])
    status.update(elapsed_s=time.perf_counter() - start, finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    write_json(os.path.join(directory, "status.json"), status)
    return status


def execute_batch(tasks: list) -> list:
    """:func:`execute` on each ``(job, directory, run_fn)`` in turn (several small runs packed into one
    scheduler job)."""
    return [execute(job, directory, run_fn) for job, directory, run_fn in tasks]


def collect(out: str, jobs: list) -> list:
    """One record per job: ``id, dir, train, status, error, attempts, elapsed_s, result, run_config, metrics,
    evaluations`` (by name); the trainer's files read by :func:`pathstats.robust.runfolder.read_run`."""
    records = []
    for job in jobs:
        directory = run_dir(out, job)
        status = read_status(directory)
        run = read_run(directory)
        evaluations = {e["name"]: read_json(evaluation_file(directory, e)) for e in job.evaluations}
        records.append({"id": job.id, "dir": directory, "train": dict(job.train), "status": status.get("status"),
                        "error": status.get("error"), "attempts": status.get("attempts", 0),
                        "elapsed_s": status.get("elapsed_s"), "result": run["result"], "run_config": run["config"],
                        "metrics": run["metrics"], "evaluations": evaluations})
    return records


