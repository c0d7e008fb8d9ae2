"""Where the runs execute: local processes, or a Slurm cluster through submitit (:mod:`.slurm`).

Both call :func:`~pathstats.robust.experiments.store.execute` on ``(job, directory,
run_fn)`` tasks, so the bookkeeping is the same wherever a run executes.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import queue
import signal

from pathstats._io import write_json
from pathstats.errors import PathstatsError
from pathstats.signals import SignalCatcher

from .store import execute

__all__ = ["ExecutorError", "GridInterrupted", "StopRequests", "STOP_SIGNALS", "assign_devices", "run_local", "run_slurm", "check_slurm",
           "pack"]


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


#: The signals that stop a grid (the exit status of a command they stop: ``pathstats.cli._common.EXIT_SIGNAL``).
STOP_SIGNALS = ("SIGINT", "SIGTERM")


class GridInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the grid (the running runs checkpointed first).

    A :class:`KeyboardInterrupt`, so that :func:`~.store.execute` records the run as
    ``interrupted`` and no ``except Exception`` on the way mistakes it for a failure.
    """

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal = signal_name


class StopRequests(SignalCatcher):
    """The grid's SIGINT/SIGTERM handler: remembers the first signal.

    While a run's own code executes (``in_run``; the trainer installs its own handler,
    which checkpoints at the next step and returns ``interrupted``), the first signal
    also raises :class:`GridInterrupted` there if ``raise_in_run``: an evaluation or a
    test double stops at once, losing nothing written.  A second signal sets ``again``.
    """

    def __init__(self, raise_in_run: bool) -> None:
        super().__init__()
        self.signal: str | None = None
        self.again = False
        self.in_run = False
        self.raise_in_run = raise_in_run

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signal is not None:
            self.again = True
            return
        self.signal = name
        if self.in_run and self.raise_in_run:
            self.in_run = False
            raise GridInterrupted(name)

    @contextlib.contextmanager
    def interruptible(self):
        """Around a run function: the first signal raises :class:`GridInterrupted` there."""
        if self.signal:
            raise GridInterrupted(self.signal)
        self.in_run = True
        try:
            yield
        finally:
            self.in_run = False



def _stopped_by(status: dict) -> str | None:
    """The signal that interrupted a run (the trainer's ``stopped_by``), if any."""
    name = status.get("stopped_by") if isinstance(status, dict) else None
    return name if name in STOP_SIGNALS else None


def _execute_interruptible(stop: StopRequests, task: tuple) -> dict:
    """:func:`execute` that a signal interrupts in the run function (never in the bookkeeping);
    a task is not started once a stop was asked for."""
    if stop.signal:
        raise GridInterrupted(stop.signal)
    return execute(*task, interruptible=stop.interruptible)


def _worker(index: int, tasks, results, threads: int) -> None:
    """A local worker process: run the tasks main sends (``None`` ends it), report each status.

    Messages to main: ``("done", index, task_index, status)`` or ``("stopped", index,
    task_index, signal_name)``.  A signal while the worker waits only marks it stopping.
    """
    _set_threads(threads)
    with StopRequests(raise_in_run=True) as stop:
        while True:
            item = tasks.get()
            if item is None:
                return
            i, task = item
            try:
                status = _execute_interruptible(stop, task)
            except GridInterrupted as exc:
                results.put(("stopped", index, i, exc.signal))
                continue
            except KeyboardInterrupt:  # the trainer's answer to a second SIGINT
                results.put(("stopped", index, i, stop.signal or "SIGINT"))
                continue
            results.put(("done", index, i, status))


def _mark_died(task: tuple, message: str) -> dict:
    """Record on disk that a worker process died in ``task`` (so the report and --retry-failed see it)."""
    from .store import read_status

    _, directory, _ = task
    status = {**read_status(directory), "status": "failed", "error": message}
    write_json(os.path.join(directory, "status.json"), status)
    return status


def run_local(tasks: list, jobs: int = 1, threads: int = 1, progress=None) -> list:
    """Execute ``tasks`` here: in this process for ``jobs == 1``, else in ``jobs`` spawned
    processes (and on the GPUs round-robin, :func:`assign_devices`).

    Each run uses ``threads`` torch CPU threads (default 1: the runs of the grids are
    small, and on a busy machine more threads per small run are many times slower; fill
    the cores with ``jobs``).  ``progress`` (optional) is called with each finished
    status.  Returns the statuses in the order of ``tasks``.

    SIGINT or SIGTERM stops the whole grid: no new run starts, the running ones (here or
    in the workers, to which the signal is passed on) checkpoint and stop, then
    :class:`GridInterrupted` is raised with the signal's name.  A second signal kills
    the workers at once.  A worker process that dies in a run (killed, out of memory)
    records that run as failed and is replaced.
    """
    if jobs < 1:
        raise ExecutorError(f"--jobs must be at least 1, got {jobs}")
    if threads < 1:
        raise ExecutorError(f"--threads must be at least 1, got {threads}")
    tasks = assign_devices(tasks)
    if jobs == 1 or len(tasks) <= 1:
        return _run_here(tasks, threads, progress)
    from ..data import DATA_CACHE_ENV

    if os.environ.get(DATA_CACHE_ENV):
        return _run_workers(tasks, min(jobs, len(tasks)), threads, progress)
    # one memory-mapped copy of the data for all the workers (they inherit the variable), then removed
    import shutil
    import tempfile

    os.environ[DATA_CACHE_ENV] = cache = tempfile.mkdtemp(prefix="pathstats-data-")
    try:
        return _run_workers(tasks, min(jobs, len(tasks)), threads, progress)
    finally:
        del os.environ[DATA_CACHE_ENV]
        shutil.rmtree(cache, ignore_errors=True)


def _run_here(tasks: list, threads: int, progress) -> list:
    statuses = [None] * len(tasks)
    previous = _set_threads(threads)
    try:
        with StopRequests(raise_in_run=True) as stop:
            for i, task in enumerate(tasks):
                statuses[i] = _execute_interruptible(stop, task)
                if progress:
                    progress(statuses[i])
                name = stop.signal or _stopped_by(statuses[i])
                if name:
                    raise GridInterrupted(name)
    finally:
        _set_threads(previous)
    return statuses


def _run_workers(tasks: list, jobs: int, threads: int, progress) -> list:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers: dict = {}  # index -> (process, its task queue)
    busy: dict = {}  # worker index -> task index
    statuses = [None] * len(tasks)
    todo = list(range(len(tasks)))[::-1]

    def start(index: int) -> None:
        queue_ = context.Queue()
        process = context.Process(target=_worker, args=(index, queue_, results, threads), daemon=True,
                                  name=f"pathstats-run-{index}")
        process.start()
        workers[index] = (process, queue_)

    def feed(index: int) -> None:
        if todo and not stop.signal:
            i = todo.pop()
            busy[index] = i
            workers[index][1].put((i, tasks[i]))

    def finish(i: int, status: dict) -> None:
        statuses[i] = status
        if progress:
            progress(status)

    with StopRequests(raise_in_run=False) as stop:
        try:
            for index in range(jobs):
                start(index)
                feed(index)
            forwarded = False
            while busy:
                if stop.again:
                    raise GridInterrupted(stop.signal)
                if stop.signal and not forwarded:
                    # the runs checkpoint and stop; SIGTERM whatever the signal, because a terminal's
                    # Ctrl-C already reached the workers and a second SIGINT would stop the trainer
                    # without its checkpoint
                    for index in busy:
                        _signal_process(workers[index][0], signal.SIGTERM)
                    forwarded = True
                try:
                    kind, index, i, payload = results.get(timeout=0.2)
                except queue.Empty:
                    for index in [k for k in busy if not workers[k][0].is_alive()]:
                        i = busy.pop(index)
                        if stop.signal:  # killed on the way out: the run resumes next time
                            continue
                        code = workers[index][0].exitcode
                        finish(i, _mark_died(tasks[i], f"worker process died (exit code {code}); "
                                                       "out of memory, or killed"))
                        if todo:  # a fresh worker takes its place
                            start(index)
                            feed(index)
                    continue
                busy.pop(index, None)
                if kind == "stopped":
                    stop.signal = stop.signal or payload
                    continue
                finish(i, payload)
                if _stopped_by(payload):
                    stop.signal = stop.signal or _stopped_by(payload)
                feed(index)
        finally:
            for process, queue_ in workers.values():
                if process.is_alive():
                    try:
                        queue_.put(None)
                    except (OSError, ValueError):
                        pass
            for process, _ in workers.values():
                process.join(timeout=0 if stop.again else 10)
                if process.is_alive():
                    process.kill()
                    process.join(timeout=5)
        if stop.signal:
            raise GridInterrupted(stop.signal)
    return statuses


def _signal_process(process, signum) -> None:
    try:
        os.kill(process.pid, signum)
    except (ProcessLookupError, TypeError):
        pass


def pack(tasks: list, per_job: int) -> list:
    """Split ``tasks`` into consecutive batches of at most ``per_job``.

    Examples
    --------
    >>> pack(list(range(5)), 2)
    [[0, 1], [2, 3], [4]]
    """
    return [tasks[i:i + per_job] for i in range(0, len(tasks), per_job)]


def check_slurm(partition: str | None = None, gpus_per_job: int = 0, time_min=60, runs_per_job: int = 1, **options) -> None:
    """Validate the Slurm options before any work (:func:`.slurm.check_slurm`)."""
    from .slurm import check_slurm as _check

    _check(partition, gpus_per_job, time_min, runs_per_job, **options)


def run_slurm(tasks: list, folder: str, partition: str | None = None, gpus_per_job: int = 0, time_min=60,
              runs_per_job: int = 1, cpus_per_job: int = 1, progress=None, **options):
    """Run ``tasks`` as Slurm job arrays that requeue themselves at time limits and preemptions
    (:func:`.slurm.run_slurm`; ``detach=True`` returns the submission at once)."""
    from .slurm import run_slurm as _run

    return _run(tasks, folder, partition, gpus_per_job, time_min, runs_per_job, cpus_per_job, progress, **options)


def default_runs_per_job(n_tasks: int, max_array: int = 1000) -> int:
    """Pack runs so that an array has at most ``max_array`` elements."""
    return max(1, math.ceil(n_tasks / max_array))
