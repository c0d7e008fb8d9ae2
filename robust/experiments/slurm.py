"""Slurm execution through submitit: job arrays that survive time limits and preemption.

A grid's runs are packed into array tasks (:class:`RunBatch`, a
``submitit.helpers.Checkpointable``).  Each array task runs its runs one after the other,
each in a forked child process that calls
:func:`~pathstats.robust.experiments.store.execute`, so the trainer keeps its own signal
handling: SIGTERM makes it stop after writing a checkpoint, and calling it again on the
same run folder resumes exactly.

Slurm sends ``USR2`` about :func:`signal_delay` seconds before an array task's time limit (and at
preemption where the cluster sets ``PreemptParameters=send_user_signal``).  submitit's
handler then calls :meth:`RunBatch.checkpoint`, which sends SIGTERM to the running child,
waits until it has checkpointed and stopped, and returns a ``DelayedSubmission`` of the
same batch; submitit saves it, requeues the task (``scontrol requeue``) and exits.  When
the task starts again it skips the finished runs and resumes the interrupted one from its
checkpoint.  A task is requeued at most ``max_requeues`` times after a time limit
(submitit's ``max_num_timeout``).

Everything needed to follow a grid from another process is in ``DIR/slurm/``:
submitit's pickles and logs (``<job>_<task>_0_log.out``/``.err``) and
``submissions.json`` (array job ids, the runs of each array task, the time limits).
:func:`grid_state` combines it with the run folders and the job states (``squeue``, then
``sacct`` or submitit's result files for jobs Slurm has forgotten) into one state per run:
``pending``, ``running``, ``requeued``, ``done``, ``failed``, ``stopped`` (checkpointed,
but its job ended: rerun the command to resume it) or ``unsubmitted``.  ``--detach``
returns after :func:`submit`; ``--status`` prints :func:`status` and analyses a complete
grid.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import signal
import subprocess
import sys
import threading
import time

from pathstats._io import write_json
from pathstats.errors import RunInterrupted, SlurmError

from .store import is_finished, read_json, read_status

__all__ = ["FOLDER", "RECORD", "SlurmError", "RunBatch", "RunInterrupted", "check_slurm", "signal_delay", "submit",
           "job_states", "grid_state",
           "record_failures", "wait", "run_slurm", "status", "format_status", "format_submission", "STATES"]

#: ``DIR/slurm``: submitit's pickles and logs, and :data:`RECORD`.
FOLDER = "slurm"
#: The submissions of a grid (array job ids, the runs of each array task): what ``--status`` re-attaches to.
RECORD = "submissions.json"
DEFAULT_MAX_REQUEUES = 10
#: submitit's default warning before the time limit; shorter limits get a quarter of their length.
DEFAULT_SIGNAL_DELAY_S = 90
#: A run's state in :func:`grid_state`, in the order of the reports.
STATES = ("done", "running", "requeued", "pending", "failed", "stopped", "unsubmitted", "unknown")
#: Job states in which Slurm may still run the task (it holds or requeues it, or it runs).
_LIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "COMPLETING", "CONFIGURING", "SUSPENDED",
         "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "SPECIAL_EXIT", "RESV_DEL_HOLD"}
_RUNNING = {"RUNNING", "COMPLETING", "CONFIGURING", "SIGNALING", "STAGE_OUT"}


def check_slurm(partition: str | None = None, gpus_per_job: int = 0, time_min=60, runs_per_job: int = 1,
                max_requeues: int = DEFAULT_MAX_REQUEUES) -> None:
    """Validate the Slurm options and that submitit, ``sbatch`` and ``srun`` are here, before any work.

    ``time_min`` is minutes per array task: one number, or a mapping run id -> minutes.

    Examples
    --------
    >>> check_slurm(time_min=0)
    Traceback (most recent call last):
    ...
    pathstats.errors.SlurmError: --time must be at least 1 minute (Slurm's minimum), got 0
    """
    limits = list(time_min.values()) if isinstance(time_min, dict) else [time_min]
    for limit in limits:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise SlurmError(f"--time must be at least 1 minute (Slurm's minimum), got {limit!r}")
    if not isinstance(gpus_per_job, int) or gpus_per_job < 0:
        raise SlurmError(f"--gpus-per-job must be >= 0, got {gpus_per_job!r}")
    if not isinstance(runs_per_job, int) or runs_per_job < 1:
        raise SlurmError(f"--runs-per-job must be at least 1, got {runs_per_job!r}")
    if not isinstance(max_requeues, int) or max_requeues < 0:
        raise SlurmError(f"--max-requeues must be >= 0, got {max_requeues!r}")
    if partition is not None and not partition.strip():
        raise SlurmError("--partition must not be empty")
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise SlurmError("--executor slurm needs submitit: pip install submitit") from None
    import shutil

    missing = [tool for tool in ("sbatch", "srun", "squeue") if shutil.which(tool) is None]
    if missing:
        raise SlurmError(f"--executor slurm needs Slurm's {', '.join(missing)} on the PATH (run on a cluster login node)")


def signal_delay(time_min: int) -> int:
    """Seconds before the time limit at which Slurm is asked to warn a task: submitit's 90 s, less
    for limits under 8 minutes.  Slurm sends the warning when at most this delay plus its 30 s
    check period remains (measured: 15 s into a 1-minute task asked for 15 s), so a quarter
    of the limit, less those 30 s, at least 5 s, leaves short tasks time to work.

    Examples
    --------
    >>> signal_delay(60), signal_delay(6), signal_delay(1)
    (90, 60, 5)
    """
    return min(DEFAULT_SIGNAL_DELAY_S, max(5, int(time_min) * 60 // 4 - 30))


def _log(message: str) -> None:
    # The array task's stdout is submitit's log file DIR/slurm/<job>_<task>_0_log.out.
    print(f"pathstats {time.strftime('%Y-%m-%dT%H:%M:%S')}: {message}", flush=True)


def _child_signals() -> None:
    # The forked child inherits submitit's handlers: Slurm's warning signal is for the array
    # task (whose checkpoint() stops the child with SIGTERM), and SIGTERM must reach the run
    # (the trainer checkpoints and stops on it; before its handler is set, the default ends
    # the child and the run resumes from its previous checkpoint).
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCONT, signal.SIG_DFL)


def _checkpointable_base():
    try:
        from submitit.helpers import Checkpointable
    except ImportError:  # without submitit nothing can be submitted; check_slurm says so
        return object
    return Checkpointable


class RunBatch(_checkpointable_base()):
    """One array task: ``(job, directory, run_fn)`` runs in turn, each in a child process.

    Calling it returns the runs' statuses.  :meth:`checkpoint` (submitit calls it when Slurm
    warns of the time limit or of a preemption) stops the running child after its
    checkpoint and returns a ``DelayedSubmission`` of a fresh batch on the same runs, which
    skips the finished ones when the requeued task starts again.
    """

    def __init__(self, stop_timeout_s: float = 60.0) -> None:
        self.stop_timeout_s = float(stop_timeout_s)
        self._child = None
        self._exited = None
        self._stopping = False

    def __getstate__(self) -> dict:
        return {"stop_timeout_s": self.stop_timeout_s}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["stop_timeout_s"])

    def __call__(self, tasks: list) -> list:
        # Imported here, not at the module's top: this class reaches the job pickled by value
        # (see submit), so that unpickling it, before submitit sets its signal handlers,
        # imports nothing heavy (pathstats imports torch: 20 s on a loaded node, while Slurm's
        # warning kills a process without a handler).
        from .grid import Job
        from .store import is_finished, read_status

        statuses = []
        restart = os.environ.get("SLURM_RESTART_COUNT", "0")
        for job, directory, run_fn in tasks:
            if self._stopping:  # checkpoint() ran but submitit did not exit (a plugin's handler)
                break
            if is_finished(Job(job["train"], tuple(job.get("evaluations", ()))), directory):
                statuses.append(read_status(directory))
                continue
            _log(f"run {job['id']} starts (attempt {read_status(directory).get('attempts', 0) + 1}, "
                 f"Slurm restart {restart})")
            status = self._run_child(job, directory, run_fn)
            _log(f"run {job['id']}: {status.get('status')}" + (f" ({status['error']})" if status.get("error") else ""))
            if status.get("status") == "interrupted" and not self._stopping:
                # Not our SIGTERM (checkpoint() never returns here): Slurm's own, at the time limit
                # without a warning in time, a cancellation, or a preemption without the user signal.
                raise RunInterrupted(f"run {job['id']} was stopped by a signal from Slurm after its checkpoint; "
                                     "rerun the experiment command to resume it")
            statuses.append(status)
        return statuses

    def _run_child(self, job: dict, directory: str, run_fn: str) -> dict:
        from pathstats._io import write_json

        from .store import execute, read_status

        os.makedirs(directory, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()  # this process has imported everything and computed nothing: the child starts at once
        if pid == 0:  # pragma: no cover - the child's coverage is the run's
            code = 1
            try:
                _child_signals()
                execute(job, directory, run_fn)
                code = 0
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        exited = threading.Event()
        returncode = []

        def reap() -> None:
            returncode.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
            exited.set()

        # A thread reaps the child so that the main thread only ever waits on an Event, which
        # checkpoint() (run by submitit's signal handler in the main thread) may wait on too.
        threading.Thread(target=reap, daemon=True).start()
        self._child, self._exited = pid, exited
        while not exited.wait(1.0):
            pass
        self._child = self._exited = None
        status = read_status(directory)
        if returncode[0] != 0 and status.get("status") in ("running", "new"):
            status = {**status, "status": "failed", "error": f"the run's process ended with exit code {returncode[0]}"}
            write_json(os.path.join(directory, "status.json"), status)
        return status

    def checkpoint(self, tasks: list):
        """Stop the running run after its checkpoint; return the batch to requeue."""
        from submitit.helpers import DelayedSubmission

        self._stopping = True
        pid, exited = self._child, self._exited
        if pid is not None and not exited.is_set():
            _log(f"Slurm's warning: stopping the run (pid {pid}) after its checkpoint")
            os.kill(pid, signal.SIGTERM)
            if not exited.wait(self.stop_timeout_s):
                # It resumes from its previous checkpoint; kill it so it writes nothing more.
                _log(f"the run did not stop within {self.stop_timeout_s:.0f} s: killed")
                os.kill(pid, signal.SIGKILL)
                exited.wait(10)
        _log("requeueing this array task; it resumes from the run folders")
        return DelayedSubmission(type(self)(self.stop_timeout_s), tasks)


# --------------------------------------------------------------------------- submission


def _record_path(out: str) -> str:
    return os.path.join(out, FOLDER, RECORD)


def _pack(tasks: list, runs_per_job: int, time_min) -> list:
    """``(minutes, batch)`` pairs: the runs grouped by time limit (``time_min``: minutes, or run id ->
    minutes, the largest for a run it does not name), then packed in order.

    Examples
    --------
    >>> tasks = [({"id": i}, i, "f") for i in "abc"]
    >>> [(limit, [t[1] for t in batch]) for limit, batch in _pack(tasks, 2, {"a": 5, "b": 30, "c": 5})]
    [(5, ['a', 'c']), (30, ['b'])]
    >>> [(limit, len(batch)) for limit, batch in _pack(tasks, 2, 60)]
    [(60, 2), (60, 1)]
    """
    groups: dict = {}
    for task in tasks:
        limit = time_min.get(task[0]["id"], max(time_min.values())) if isinstance(time_min, dict) else time_min
        groups.setdefault(int(limit), []).append(task)
    return [(limit, group[i:i + runs_per_job]) for limit, group in groups.items()
            for i in range(0, len(group), runs_per_job)]


@contextlib.contextmanager
def _pickled_by_value():
    """Let cloudpickle (submitit's pickler) save :class:`RunBatch` by value: the job then unpickles
    it without importing ``pathstats`` (and torch) before submitit's signal handlers are set."""
    import cloudpickle

    module = sys.modules[__name__]
    if not hasattr(cloudpickle, "register_pickle_by_value"):  # cloudpickle < 2: by reference, as before
        yield
        return
    cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)


def _sbatch_error_line(text: str) -> str:
    """The line of sbatch's output that says what went wrong (the last one naming an error, else the last)."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no message"])[-1][:300]


def submit(tasks: list, out: str, partition: str | None = None, gpus_per_job: int = 0, time_min=60,
           runs_per_job: int = 1, cpus_per_job: int = 1, max_requeues: int = DEFAULT_MAX_REQUEUES,
           signal_delay_s: int | None = None) -> dict:
    """Submit ``(job, directory, run_fn)`` tasks as job arrays (one per distinct time limit) and
    return at once; the submission is appended to ``out/slurm/submissions.json``.

    ``time_min``: minutes per array task, one number or a mapping run id -> minutes.
    Returns the submission: ``{"submitted", "arrays": [{"job_id", "task_ids", "time_min",
    "signal_delay_s", "max_requeues", "tasks": [[run ids of task 0], ...]}]}`` (``task_ids``:
    Slurm's ids of the tasks, ``"<job>_<i>"``, or ``"<job>"`` for a single task).

    Raises
    ------
    SlurmError
        sbatch refused the job (the reason on one line).
    """
    import submitit

    check_slurm(partition, gpus_per_job, time_min, runs_per_job, max_requeues)
    folder = os.path.join(out, FOLDER)
    os.makedirs(folder, exist_ok=True)
    device = "cuda" if gpus_per_job else "cpu"
    tasks = [({**job, "train": {**job["train"], "device": job["train"].get("device", device)}}, directory, run_fn)
             for job, directory, run_fn in tasks]
    groups: dict = {}
    for limit, batch in _pack(tasks, runs_per_job, time_min):
        groups.setdefault(limit, []).append(batch)
    record = read_json(_record_path(out), {"submissions": []})
    submission = {"submitted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "arrays": []}
    for limit, batches in groups.items():
        delay = signal_delay(limit) if signal_delay_s is None else int(signal_delay_s)
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_python=sys.executable,
                                         slurm_max_num_timeout=int(max_requeues))
        parameters = {"timeout_min": int(limit), "cpus_per_task": int(cpus_per_job), "slurm_array_parallelism": len(batches),
                      "name": "pathstats", "slurm_signal_delay_s": delay}
        if partition:
            parameters["slurm_partition"] = partition
        if gpus_per_job:
            parameters["gpus_per_node"] = int(gpus_per_job)
        executor.update_parameters(**parameters)
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr), _pickled_by_value():  # submitit prints sbatch's stderr before raising
                jobs = executor.map_array(RunBatch(stop_timeout_s=max(5.0, 0.8 * delay)), batches)
        except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedSubmissionError,
                subprocess.SubprocessError, OSError) as exc:
            raise SlurmError(f"sbatch refused the job array: {_sbatch_error_line(str(exc) or stderr.getvalue())} "
                             "(check --partition, --gpus-per-job and --time against the cluster's limits: sinfo)") from None
        # submitit submits one batch as a plain job ("123"), several as an array ("123_0", "123_1", ...)
        submission["arrays"].append({"job_id": jobs[0].job_id.split("_")[0], "time_min": int(limit), "signal_delay_s": delay,
                                     "max_requeues": int(max_requeues), "task_ids": [job.job_id for job in jobs],
                                     "tasks": [[job["id"] for job, _, _ in batch] for batch in batches]})
        # recorded after each array, so that a failure of a later sbatch leaves the earlier ones followable
        write_json(_record_path(out), {"submissions": record["submissions"] + [submission]})
    return submission


# --------------------------------------------------------------------------- state


def _run(command: list, timeout: float = 60.0) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None


def _result_file_state(out: str, task: str) -> str:
    """COMPLETED/FAILED from submitit's result file of a task Slurm no longer knows, else ENDED."""
    path = os.path.join(out, FOLDER, f"{task}_0_result.pkl")  # the job's only Slurm task, 0
    try:
        with open(path, "rb") as f:
            outcome = pickle.load(f)[0]
    except (OSError, pickle.UnpicklingError, EOFError, IndexError, TypeError, AttributeError, ImportError):
        return "ENDED"
    return "COMPLETED" if outcome == "success" else "FAILED"


def job_states(out: str, array_ids: list) -> dict | None:
    """``{task id: (state, reason)}`` of the tasks of jobs ``array_ids`` that Slurm still knows
    (``squeue``), then of the ended ones (``sacct`` where accounting is on); a task id is
    ``"<job>_<i>"`` in an array, ``"<job>"`` alone.  None when ``squeue`` cannot answer."""
    if not array_ids:
        return {}
    states: dict = {}
    answer = _run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(array_ids), "-o", "%i|%T|%r"])
    if answer is None:
        return None
    if answer.returncode != 0 and "invalid job id" not in (answer.stderr or "").lower():
        return None  # the controller does not answer: say unknown rather than guess
    for line in answer.stdout.splitlines() if answer.returncode == 0 else []:
        parts = line.strip().split("|")
        if len(parts) == 3 and "[" not in parts[0]:
            states[parts[0]] = (parts[1], parts[2])
    accounting = _run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(array_ids)])
    if accounting is not None and accounting.returncode == 0:
        for line in accounting.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 2 and "[" not in parts[0] and parts[0] not in states:
                states[parts[0]] = (parts[1].split()[0], "")
    return states


def grid_state(out: str, jobs: list) -> dict:
    """Each run's state from its folder, its array task in ``out/slurm/submissions.json`` and Slurm.

    Returns ``{"runs": [{"id", "state", "attempts", "task", "slurm_state", "reason", "error"}],
    "counts": {state: n}, "complete": bool, "arrays": [...], "slurm_answered": bool}``;
    ``complete`` when no run is pending, running, requeued or unknown.
    """
    record = read_json(_record_path(out), {"submissions": []})
    task_of: dict = {}
    arrays = []
    for submission in record.get("submissions", []):
        for array in submission.get("arrays", []):
            arrays.append(array)
            for task, run_ids in zip(array["task_ids"], array["tasks"]):
                for run in run_ids:
                    task_of[run] = task  # the latest submission of a run wins
    folders = {job.id: (read_status(os.path.join(out, "runs", job.id)), is_finished(job, os.path.join(out, "runs", job.id)))
               for job in jobs}
    # Slurm is asked only about the tasks of runs whose folders do not say how they ended.
    asked = {task_of[i].split("_")[0] for i, (status, finished) in folders.items()
             if i in task_of and not finished and status.get("status") != "failed"}
    states = job_states(out, sorted(asked))
    runs = []
    for job in jobs:
        status, finished = folders[job.id]
        task = task_of.get(job.id)
        slurm_state, reason = (None, "")
        if task is not None and states is not None:
            slurm_state, reason = states.get(task) or (_result_file_state(out, task), "")
        row = {"id": job.id, "attempts": status.get("attempts", 0), "task": task, "slurm_state": slurm_state,
               "reason": reason if reason not in ("None", "") else "", "error": status.get("error")}
        if finished:
            row["state"] = "done"
        elif status.get("status") == "failed":
            row["state"] = "failed"
        elif task is None:
            row["state"] = "unsubmitted"
        elif states is None:
            row["state"] = "unknown"
        elif slurm_state in _LIVE:
            started = status.get("attempts", 0) > 0
            if slurm_state in _RUNNING and status.get("status") == "running":
                row["state"] = "running"
            else:
                row["state"] = "requeued" if started else "pending"
        elif status.get("status") == "interrupted":
            row["state"] = "stopped"
            row["error"] = (f"checkpointed, but Slurm job {task} ended ({slurm_state}); "
                            "rerun the experiment command to resume it")
        else:
            row["state"] = "failed"
            row["error"] = f"Slurm job {task} ended ({slurm_state}) before the run finished"
        runs.append(row)
    counts = {state: sum(r["state"] == state for r in runs) for state in STATES}
    live = counts["pending"] + counts["running"] + counts["requeued"] + counts["unknown"]
    return {"runs": runs, "counts": counts, "complete": live == 0, "arrays": arrays, "slurm_answered": states is not None}


def record_failures(out: str, state: dict) -> None:
    """Write ``failed`` into the status of runs whose job ended while they ran (killed: out of
    memory, node failure, cancelled), so that the grid's books say so (``--retry-failed`` reruns them)."""
    for row in state["runs"]:
        if row["state"] == "failed" and row["slurm_state"] is not None:
            directory = os.path.join(out, "runs", row["id"])
            status = read_status(directory)
            if status.get("status") in ("running", "new"):
                write_json(os.path.join(directory, "status.json"), {**status, "status": "failed", "error": row["error"]})


def _live_conflicts(out: str, tasks: list) -> None:
    from .grid import Job as _Job

    jobs = [_Job(job["train"], tuple(job.get("evaluations", ()))) for job, _, _ in tasks]
    state = grid_state(out, jobs)
    live = [r for r in state["runs"] if r["state"] in ("pending", "running", "requeued")]
    if live:
        ids = sorted({r["task"].split("_")[0] for r in live})
        raise SlurmError(f"{len(live)} runs of {out} are still queued or running on Slurm (job {', '.join(ids)}); "
                         f"follow them with --status, or scancel {' '.join(ids)} first")


def wait(out: str, tasks: list, progress=None, poll_s: float = 5.0, timeout_s: float | None = None) -> list:
    """Wait until no run of ``tasks`` is pending, running or requeued; return their statuses in order.

    ``progress`` (optional) is called with each run's status once it is done or failed.
    """
    from .grid import Job as _Job

    jobs = [_Job(job["train"], tuple(job.get("evaluations", ()))) for job, _, _ in tasks]
    directories = [directory for _, directory, _ in tasks]
    reported: set = set()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        state = grid_state(out, jobs)
        record_failures(out, state)
        for row, directory in zip(state["runs"], directories):
            if row["state"] in ("done", "failed", "stopped") and row["id"] not in reported:
                reported.add(row["id"])
                if progress:
                    progress(read_status(directory))
        if state["complete"]:
            return [read_status(directory) for directory in directories]
        if deadline is not None and time.monotonic() > deadline:
            raise SlurmError(f"the Slurm jobs of {out} did not finish within {timeout_s:.0f} s")
        time.sleep(poll_s)


def run_slurm(tasks: list, folder: str, partition: str | None = None, gpus_per_job: int = 0, time_min=60,
              runs_per_job: int = 1, cpus_per_job: int = 1, progress=None, detach: bool = False,
              max_requeues: int = DEFAULT_MAX_REQUEUES, signal_delay_s: int | None = None, poll_s: float = 5.0):
    """The Slurm executor: submit ``tasks`` (:func:`submit`), then wait for them (:func:`wait`) and
    return their statuses in order, or with ``detach`` return the submission at once.

    ``folder`` is ``DIR/slurm`` (``DIR`` holds ``runs/``).
    """
    out = os.path.dirname(os.path.abspath(folder))
    _live_conflicts(out, tasks)
    submission = submit(tasks, out, partition, gpus_per_job, time_min, runs_per_job, cpus_per_job, max_requeues,
                        signal_delay_s)
    if detach:
        return submission
    return wait(out, tasks, progress=progress, poll_s=poll_s)


# --------------------------------------------------------------------------- --status


def status(name: str, out: str, scale: str | None = None, analyse: bool = True) -> dict:
    """The progress of experiment ``name``'s grid in ``out`` (from ``out/experiment.json``, the run
    folders and Slurm); when no run is pending, running or requeued, the driver's analysis.

    Returns :func:`grid_state`'s dict plus ``experiment, out, scale, data, analysed, files``.
    """
    from .driver import analyse as analyse_grid
    from .driver import plan

    recorded = read_json(os.path.join(out, "experiment.json"))
    if not recorded:
        raise SlurmError(f"{out} holds no experiment (no experiment.json): run 'pathstats experiment {name} --out {out} "
                         "--executor slurm --detach' first")
    if recorded.get("experiment") != name:
        raise SlurmError(f"{out} holds experiment {recorded.get('experiment')!r}, not {name!r}")
    if scale is not None and scale != recorded.get("scale"):
        raise SlurmError(f"{out} holds the {recorded.get('scale')} grid of {name}, not --scale {scale}")
    scale, data = recorded.get("scale", "paper"), recorded.get("data", "digits")
    jobs = plan(name, data, scale)
    state = grid_state(out, jobs)
    record_failures(out, state)
    summary = {"experiment": name, "out": os.path.abspath(out), "scale": scale, "data": data, **state,
               "analysed": False, "files": {}}
    if state["complete"] and analyse:
        result = analyse_grid(name, out, jobs, scale)
        summary["analysed"] = True
        summary["claims"] = result["claims"]
        summary["files"] = {**{k: os.path.join(os.path.abspath(out), v) for k, v in
                               (("results", "results.csv"), ("claims", "claims.json"), ("report", "report.md"))},
                            "figures": result["figures"]}
    return summary


def format_status(summary: dict) -> str:
    """``--status``'s text: the counts, the array tasks, one line per run not done, what to do next."""
    from pathstats._format import format_table

    counts = summary["counts"]
    lines = [f"{summary['experiment']} ({summary['scale']}, {summary['data']}) in {summary['out']}: "
             f"{len(summary['runs'])} runs: " + ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s] or s == "done")]
    for array in summary["arrays"]:
        lines.append(f"  Slurm job array {array['job_id']}: {len(array['tasks'])} tasks, time limit {array['time_min']} min")
    if not summary["slurm_answered"]:
        lines.append("  squeue did not answer: the job states are unknown (is SLURM_CONF right, the controller up?)")
    rows = [[r["id"], r["state"], r["attempts"], r["task"] or "", (r["slurm_state"] or "") + (f" ({r['reason']})" if r["reason"] else ""),
             (r["error"] or "")[:90]] for r in summary["runs"] if r["state"] != "done"]
    if rows:
        lines += ["", format_table(["run", "state", "attempts", "slurm task", "slurm state", "note"], rows)]
    lines.append("")
    if not summary["complete"]:
        lines.append(f"not complete yet: run 'pathstats experiment {summary['experiment']} --out {summary['out']} --status' again")
    else:
        undone = len(summary["runs"]) - counts["done"]
        if undone:
            lines.append(f"{undone} runs did not finish: rerun 'pathstats experiment {summary['experiment']} --out "
                         f"{summary['out']} --scale {summary['scale']} --executor slurm' to resume them "
                         "(with --retry-failed for the failed ones)")
        if summary["analysed"]:
            lines.append("the grid is complete: analysed")
            lines += [f"wrote {p}" for p in [summary["files"][k] for k in ("results", "claims", "report")]
                      + list(summary["files"].get("figures", []))]
    return "\n".join(lines)


def format_submission(summary: dict) -> str:
    """``--detach``'s text: the job ids and the command that follows the grid."""
    lines = [f"{summary['experiment']}: submitted {summary['ran']} runs ({summary['skipped']} already finished or failed)"]
    for array in summary["submission"]["arrays"]:
        lines.append(f"  Slurm job array {array['job_id']}: {len(array['tasks'])} tasks, time limit {array['time_min']} min")
    lines.append(f"follow it with: {summary['status_command']}")
    return "\n".join(lines)


