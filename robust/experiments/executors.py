"""Where the runs execute: local processes, or a Slurm cluster through submitit.

Both call :func:`~pathstats.robust.experiments.store.execute` on ``(job, directory,
run_fn)`` tasks, so the bookkeeping is the same wherever a run executes.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed

from pathstats._io import write_json
from pathstats.errors import PathstatsError

from .store import execute, execute_batch

__all__ = ["ExecutorError", "assign_devices", "run_local", "run_slurm", "check_slurm", "pack"]


class ExecutorError(PathstatsError, ValueError):
    """An executor option is invalid, or the executor is not usable here."""


def assign_devices(tasks: list, n_gpus: int | None = None) -> list:
    """Give each task whose job names no device ``cuda:<i mod n_gpus>`` (round-robin), or ``cpu``.

    Examples
    --------
    >>> tasks = [({"train": {}}, "a", "f"), ({"train": {"device": "cpu"}}, "b", "f"), ({"train": {}}, "c", "f")]
    >>> [t[0]["train"]["device"] for t in assign_devices(tasks, n_gpus=2)]
    ['cuda:0', 'cpu', 'cuda:1']
    >>> [t[0]["train"]["device"] for t in assign_devices(tasks, n_gpus=0)]
    ['cpu', 'cpu', 'cpu']
    """
    if n_gpus is None:
        import torch

        n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    out, k = [], 0
    for job, directory, run_fn in tasks:
        train = dict(job["train"])
        if "device" not in train:
            train["device"] = f"cuda:{k % n_gpus}" if n_gpus else "cpu"
            k += 1
        out.append(({**job, "train": train}, directory, run_fn))
    return out


def _set_threads(threads: int) -> int:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    return previous


def run_local(tasks: list, jobs: int = 1, threads: int = 1, progress=None) -> list:
    """Execute ``tasks`` here: in this process for ``jobs == 1``, else in ``jobs`` spawned
    processes (and on the GPUs round-robin, :func:`assign_devices`).

    Each run uses ``threads`` torch CPU threads (default 1: the runs of the grids are
    small, and on a busy machine more threads per small run are many times slower; fill
    the cores with ``jobs``).  ``progress`` (optional) is called with each finished
    status.  Returns the statuses in the order of ``tasks``.
    """
    if jobs < 1:
        raise ExecutorError(f"--jobs must be at least 1, got {jobs}")
    if threads < 1:
        raise ExecutorError(f"--threads must be at least 1, got {threads}")
    tasks = assign_devices(tasks)
    statuses = [None] * len(tasks)
    if jobs == 1 or len(tasks) <= 1:
        previous = _set_threads(threads)
        try:
            for i, task in enumerate(tasks):
                statuses[i] = execute(*task)
                if progress:
                    progress(statuses[i])
        finally:
            _set_threads(previous)
        return statuses
    from ..data import DATA_CACHE_ENV

    if not os.environ.get(DATA_CACHE_ENV):  # one memory-mapped copy of the data for all the workers, then removed
        import shutil
        import tempfile

        os.environ[DATA_CACHE_ENV] = cache = tempfile.mkdtemp(prefix="pathstats-data-")
        try:
            return run_local(tasks, jobs, threads, progress)
        finally:
            del os.environ[DATA_CACHE_ENV]
            shutil.rmtree(cache, ignore_errors=True)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_set_threads, initargs=(threads,)) as pool:
        futures = {pool.submit(execute, *task): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                statuses[i] = future.result()
            except Exception as exc:  # the worker process itself died (killed, out of memory)
                statuses[i] = {"status": "failed", "error": f"worker process died: {type(exc).__name__}: {exc}"}
            if progress:
                progress(statuses[i])
    return statuses


def pack(tasks: list, per_job: int) -> list:
    """Split ``tasks`` into consecutive batches of at most ``per_job``.

    Examples
    --------
    >>> pack(list(range(5)), 2)
    [[0, 1], [2, 3], [4]]
    """
    return [tasks[i:i + per_job] for i in range(0, len(tasks), per_job)]


def check_slurm(partition: str | None = None, gpus_per_job: int = 0, time_min: int = 60, runs_per_job: int = 1) -> None:
    """Validate the Slurm options and that submitit and ``sbatch`` are here, before any work."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ExecutorError("--executor slurm needs submitit: pip install submitit") from None
    import shutil

    if shutil.which("sbatch") is None:
        raise ExecutorError("--executor slurm needs Slurm's sbatch on the PATH (run on a cluster login node)")
    if gpus_per_job < 0:
        raise ExecutorError(f"--gpus-per-job must be >= 0, got {gpus_per_job}")
    if time_min < 1:
        raise ExecutorError(f"--time must be at least 1 minute, got {time_min}")
    if runs_per_job < 1:
        raise ExecutorError(f"--runs-per-job must be at least 1, got {runs_per_job}")
    if partition is not None and not partition.strip():
        raise ExecutorError("--partition must not be empty")


def run_slurm(tasks: list, folder: str, partition: str | None = None, gpus_per_job: int = 0, time_min: int = 60,
              runs_per_job: int = 1, cpus_per_job: int = 1, progress=None) -> list:
    """Submit ``tasks`` as one Slurm job array (``runs_per_job`` runs packed per array task)
    through submitit, with this Python (``sys.executable``), and wait for it.

    Logs and submitit's pickles go to ``folder``.  A task whose array element died
    (time limit, node failure) is reported failed unless its own status says otherwise.
    """
    import submitit

    from .store import read_status

    check_slurm(partition, gpus_per_job, time_min, runs_per_job)
    tasks = [({**job, "train": {**job["train"], "device": job["train"].get("device", "cuda" if gpus_per_job else "cpu")}},
              directory, run_fn) for job, directory, run_fn in tasks]
    batches = pack(tasks, runs_per_job)
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_python=sys.executable)
    parameters = {"timeout_min": int(time_min), "cpus_per_task": int(cpus_per_job), "slurm_array_parallelism": len(batches),
                  "name": "pathstats"}
    if partition:
        parameters["slurm_partition"] = partition
    if gpus_per_job:
        parameters["gpus_per_node"] = int(gpus_per_job)
    executor.update_parameters(**parameters)
    jobs = executor.map_array(execute_batch, batches)
    statuses = []
    for job, batch in zip(jobs, batches):
        try:
            results = job.result()
        except Exception as exc:  # noqa: BLE001 - the array element itself failed
            message = f"slurm job {job.job_id} failed: {str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}"
            results = []
            for _, directory, _ in batch:
                status = read_status(directory)
                if status.get("status") != "done":
                    status = {**status, "status": "failed", "error": message}
                    write_json(os.path.join(directory, "status.json"), status)  # resumed by --retry-failed
                results.append(status)
        for status in results:
            statuses.append(status)
            if progress:
                progress(status)
    return statuses


def default_runs_per_job(n_tasks: int, max_array: int = 1000) -> int:
    """Pack runs so that an array has at most ``max_array`` elements."""
    return max(1, math.ceil(n_tasks / max_array))
