"""The Slurm executor against a REAL single-node Slurm cluster that the test starts and stops.

Debian's slurmctld, slurmd and munge (``.ci/run`` installs them); outside CI the tests
that need the cluster are skipped when they are missing, in CI (``CI`` set) they fail
instead.  The cluster lets a requeued job start again 10 s after its requeue (Slurm's
default: 120 s), so that the time-limit test, whose run is longer than its 2-minute time
limit, loses little time between attempts.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.helpers.fake_runs import fake_run
from tests.helpers.slurm_cluster import SlurmUnavailable, slurm_available, slurm_cluster

from pathstats.cli import main
from pathstats.robust.experiments import get, plan, run_experiment
from pathstats.robust.experiments.slurm import RunBatch, SlurmError, format_submission

#: The repository root: a Slurm job imports the test double as ``tests.helpers.fake_runs`` from it.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = slurm_available()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Slurm test: {reason}")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    try:
        with slurm_cluster(str(root), cred_expire=10) as env:
            yield env
    except SlurmUnavailable as exc:
        pytest.fail(f"the test cluster did not start: {exc}")


def test_grid_runs_as_a_job_array_on_slurm_and_survives_a_preemption(cluster, tmp_path, monkeypatch):
    """The grid as one array of two tasks, waited for; one task is preempted (Slurm's warning
    signal, as ``scancel --signal=USR2`` sends it, like submitit's own tests) while its first
    run is halfway: it checkpoints, requeues, and the grid completes."""
    monkeypatch.setenv("SLURM_CONF", cluster["SLURM_CONF"])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    out = str(tmp_path / "fig2")
    n = get("fig2").quick.n_runs
    slow = plan("fig2", scale="quick")[0]
    _slow_env(monkeypatch, slow.id, 1.0)
    preempted = []

    def preempt_when_halfway():
        log, deadline = os.path.join(out, "runs", slow.id, "calls.log"), time.monotonic() + 120
        while time.monotonic() < deadline and not (os.path.exists(log) and len(open(log).read().split()) >= 3):
            time.sleep(0.2)
        with open(os.path.join(out, "slurm", "submissions.json")) as f:
            task = json.load(f)["submissions"][0]["arrays"][0]["job_id"] + "_0"
        preempted.append(subprocess.run(["scancel", "--signal=USR2", task], capture_output=True, timeout=30).returncode)

    threading.Thread(target=preempt_when_halfway, daemon=True).start()
    # 15 min: submitit counts a warning in the first 5 minutes of a limit over 12.5 min as a preemption
    summary = run_experiment("fig2", out, scale="quick", executor="slurm", runs_per_job=9, time_min=15,
                             run_fn=FAKE, progress=False)
    assert preempted == [0]
    assert (summary["ran"], summary["done"], summary["failed"]) == (n, n, 0)
    with open(os.path.join(out, "results.csv")) as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["done"] * n
    # one array of two tasks (9 runs packed per task), run with this very Python
    scripts = glob.glob(os.path.join(out, "slurm", "*submission.sh"))
    assert len(scripts) == 1
    with open(scripts[0]) as f:
        script = f.read()
    assert "#SBATCH --array=0-1" in script and sys.executable in script and "#SBATCH --signal=USR2@90" in script
    with open(glob.glob(os.path.join(out, "slurm", "*_0_0_log.out"))[0]) as f:
        log = f.read()
    assert "this job is preempted" in log and "(10 remaining timeouts)" in log  # a preemption is not a time-out
    with open(os.path.join(out, "runs", slow.id, "status.json")) as f:
        assert json.load(f)["attempts"] == 2
    with open(os.path.join(out, "runs", slow.id, "calls.log")) as f:
        assert f.read().split() == [str(e) for e in range(1, slow.train["epochs"] + 1)]  # no epoch computed twice
    again = run_experiment("fig2", out, scale="quick", executor="slurm", run_fn=FAKE, progress=False)
    assert (again["ran"], again["skipped"]) == (0, n)


FAKE = "tests.helpers.fake_runs:fake_run"


def _slow_env(monkeypatch, run_id: str, epoch_s: float) -> None:
    monkeypatch.setenv("FAKE_SLOW_IDS", run_id)
    monkeypatch.setenv("FAKE_EPOCH_S", str(epoch_s))


def _files(directory: str) -> dict:
    """What a run's result is: its metrics, result and evaluations (not its bookkeeping)."""
    out = {}
    for root, _, names in os.walk(directory):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), directory)
            if rel == "metrics.jsonl" or rel == "result.json" or rel.startswith("evaluations"):
                with open(os.path.join(root, name)) as f:
                    out[rel] = f.read()
    return out


def _uninterrupted(job, tmp_path, monkeypatch) -> dict:
    """The files of ``job`` run here in one go, at full speed."""
    directory = str(tmp_path / "uninterrupted")
    os.makedirs(directory)
    monkeypatch.delenv("FAKE_SLOW_IDS")
    assert fake_run(job.to_dict(), directory)["status"] == "done"
    return _files(directory)


def test_checkpoint_stops_the_run_after_its_checkpoint_and_resubmits_the_batch(tmp_path, monkeypatch):
    """What submitit's USR2 handler does, in this process: checkpoint(), then exit; the
    returned submission (pickled, as submitit saves it) finishes the runs; the interrupted
    run resumes from its checkpoint, computing each epoch once."""
    jobs = plan("fig2", scale="quick")[:2]
    slow = jobs[0]
    _slow_env(monkeypatch, slow.id, 0.5)
    tasks = [(job.to_dict(), str(tmp_path / "runs" / job.id), FAKE) for job in jobs]
    batch = RunBatch(stop_timeout_s=20)
    resubmitted = []

    def on_warning(signum, frame):  # submitit's handler: checkpoint, requeue, sys.exit
        resubmitted.append(batch.checkpoint(tasks))
        sys.exit(-1)

    def warn_after_two_epochs():
        log = tmp_path / "runs" / slow.id / "calls.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (log.exists() and len(log.read_text().split()) >= 2):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, on_warning)
    try:
        threading.Thread(target=warn_after_two_epochs, daemon=True).start()
        with pytest.raises(SystemExit):
            batch(tasks)
    finally:
        signal.signal(signal.SIGUSR2, previous)
    with open(tmp_path / "runs" / slow.id / "status.json") as f:
        status = json.load(f)
    assert (status["status"], status["attempts"]) == ("interrupted", 1)
    assert (tmp_path / "runs" / slow.id / "fake_checkpoint.json").exists()
    assert not (tmp_path / "runs" / jobs[1].id).exists()  # the batch stopped at the interrupted run
    delayed = pickle.loads(pickle.dumps(resubmitted[0]))
    assert isinstance(delayed.function, RunBatch) and delayed.args == (tasks,)
    assert [s["status"] for s in delayed.result()] == ["done", "done"]
    with open(tmp_path / "runs" / slow.id / "status.json") as f:
        assert json.load(f)["attempts"] == 2
    epochs = (tmp_path / "runs" / slow.id / "calls.log").read_text().split()
    assert epochs == [str(e) for e in range(1, slow.train["epochs"] + 1)]  # each epoch computed once
    assert _files(str(tmp_path / "runs" / slow.id)) == _uninterrupted(slow, tmp_path, monkeypatch)


def test_a_run_stopped_by_slurm_itself_ends_its_task_with_the_checkpoint_kept(tmp_path, monkeypatch):
    """Slurm's own SIGTERM (a time limit reached without the warning, a cancellation, a
    preemption without the user signal) reaches the run directly: it checkpoints, and the
    task ends with an error (not a success) instead of starting its next run."""
    from pathstats.robust.experiments.slurm import RunInterrupted

    jobs = plan("fig2", scale="quick")[:2]
    _slow_env(monkeypatch, jobs[0].id, 0.5)
    tasks = [(job.to_dict(), str(tmp_path / "runs" / job.id), FAKE) for job in jobs]
    batch = RunBatch(stop_timeout_s=20)

    def terminate_the_run():
        log, deadline = tmp_path / "runs" / jobs[0].id / "calls.log", time.monotonic() + 60
        while time.monotonic() < deadline and not log.exists():
            time.sleep(0.05)
        os.kill(batch._child, signal.SIGTERM)

    threading.Thread(target=terminate_the_run, daemon=True).start()
    with pytest.raises(RunInterrupted, match="rerun the experiment command to resume it"):
        batch(tasks)
    with open(tmp_path / "runs" / jobs[0].id / "status.json") as f:
        assert json.load(f)["status"] == "interrupted"
    assert (tmp_path / "runs" / jobs[0].id / "fake_checkpoint.json").exists()
    assert not (tmp_path / "runs" / jobs[1].id).exists()


def test_grid_state_combines_run_folders_and_slurm_states(tmp_path, monkeypatch):
    """Each run's state from its folder and its array task's Slurm state (squeue mocked here;
    the cluster tests below use the real one); ended jobs of running runs are recorded failed."""
    from pathstats._io import write_json
    from pathstats.robust.experiments import slurm
    from pathstats.robust.experiments.store import execute

    out = str(tmp_path)
    jobs = plan("fig2", scale="quick")[:8]
    ids = [job.id for job in jobs]
    runs = os.path.join(out, "runs")
    assert execute(jobs[0].to_dict(), os.path.join(runs, ids[0]), FAKE)["status"] == "done"
    statuses = {1: "running", 3: "interrupted", 4: "interrupted", 5: "running", 6: "failed"}
    for i, status in statuses.items():
        write_json(os.path.join(runs, ids[i], "status.json"), {"status": status, "attempts": 1})
    # task 0: runs 0-2 (running: run 1; run 2 waits behind it), task 1: run 3 (requeued),
    # task 2: run 4 (checkpointed, job ended), task 3: runs 5-6 (killed); run 7 never submitted
    write_json(os.path.join(out, "slurm", "submissions.json"), {"submissions": [{"arrays": [
        {"job_id": "7", "time_min": 1, "task_ids": ["7_0", "7_1", "7_2", "7_3"],
         "tasks": [ids[0:3], ids[3:4], ids[4:5], ids[5:7]]}]}]})
    asked = []

    def states(out_, array_ids):
        asked.append(array_ids)
        return {"7_0": ("RUNNING", "None"), "7_1": ("PENDING", "BeginTime"), "7_3": ("OUT_OF_MEMORY", "")}

    # task 2 is gone from Slurm's memory (no accounting): its state is read from submitit's result file
    with open(os.path.join(out, "slurm", "7_2_0_result.pkl"), "wb") as f:
        pickle.dump(("error", "RunInterrupted: ..."), f)

    monkeypatch.setattr(slurm, "job_states", states)
    state = slurm.grid_state(out, jobs)
    assert [r["state"] for r in state["runs"]] == ["done", "running", "pending", "requeued", "stopped", "failed", "failed",
                                                   "unsubmitted"]
    assert state["runs"][3]["reason"] == "BeginTime" and state["runs"][4]["slurm_state"] == "FAILED"
    assert "rerun the experiment command" in state["runs"][4]["error"]
    assert not state["complete"] and state["counts"]["failed"] == 2 and asked == [["7"]]
    slurm.record_failures(out, state)
    with open(os.path.join(runs, ids[5], "status.json")) as f:
        assert json.load(f) == {"status": "failed", "attempts": 1, "error": "Slurm job 7_3 ended (OUT_OF_MEMORY) before "
                                "the run finished"}
    monkeypatch.setattr(slurm, "job_states", lambda out_, array_ids: None)  # squeue does not answer
    assert [r["state"] for r in slurm.grid_state(out, jobs)["runs"]][1:4] == ["unknown"] * 3


def _cli(*args) -> tuple:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["experiment", *args])
    return code, out.getvalue(), err.getvalue()


def test_status_and_detach_refuse_careless_use(tmp_path):
    code, _, err = _cli("fig2", "--out", str(tmp_path / "nothing"), "--status")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no experiment" in err
    code, _, err = _cli("fig2", "--quick", "--out", str(tmp_path / "x"), "--detach")
    assert code == 2 and "--detach needs --executor slurm" in err


def test_sbatch_refusal_is_a_one_line_error(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", cluster["SLURM_CONF"])
    code, out, err = _cli("fig2", "--quick", "--out", str(tmp_path / "fig2"), "--executor", "slurm", "--partition",
                          "nosuch", "--detach")
    assert code == 2, err
    assert err.startswith("pathstats experiment: error: sbatch refused the job array: ") and "partition" in err.lower()
    assert len(err.strip().splitlines()) == 1 and "internal error" not in err


def test_a_run_longer_than_the_time_limit_is_requeued_and_completes(cluster, tmp_path, monkeypatch):
    """The grid is submitted with --detach and a 2-minute limit, all 18 runs in one task (which
    submitit submits as a plain job, not an array); its first run takes 122 s, so the task
    must reach the limit: Slurm's warning makes it checkpoint and requeue, and the run
    resumes and completes with the result of an uninterrupted run.  --status follows it.

    Two minutes, not Slurm's minimum of one: Slurm warns up to 30 s early (at 20-35 s into a
    1-minute task, measured), and on a loaded machine a task spends that long importing
    torch, so 1-minute tasks can make no progress at all."""
    monkeypatch.setenv("SLURM_CONF", cluster["SLURM_CONF"])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    jobs = plan("fig2", scale="quick")
    slow = jobs[0]
    _slow_env(monkeypatch, slow.id, 15.25)  # 8 epochs: 122 s > 120 s
    out = str(tmp_path / "fig2")
    start = time.monotonic()
    summary = run_experiment("fig2", out, scale="quick", executor="slurm", time_min=2, runs_per_job=len(jobs),
                             run_fn=FAKE, progress=False, detach=True)
    assert summary["detached"] and summary["ran"] == len(jobs)
    assert time.monotonic() - start < 30  # returns after submitting
    assert f"follow it with: pathstats experiment fig2 --out {out} --status" in format_submission(summary)
    with pytest.raises(SlurmError, match="still queued or running on Slurm"):  # no second copy writing the same runs
        run_experiment("fig2", out, scale="quick", executor="slurm", time_min=1, run_fn=FAKE, progress=False, detach=True)
    array = summary["submission"]["arrays"][0]
    assert array["task_ids"] == [array["job_id"]] and array["tasks"][0][0] == slow.id and array["time_min"] == 2
    seen = set()
    deadline = time.monotonic() + 420
    while True:
        code, text, err = _cli("fig2", "--out", out, "--status", "--json")
        assert code == 0, err
        state = json.loads(text)
        now = {r["state"] for r in state["runs"] if r["id"] == slow.id}
        if "requeued" in now and "requeued" not in seen:
            print(_cli("fig2", "--out", out, "--status")[1])  # what a user sees (pytest -s)
        seen |= now
        if state["complete"]:
            break
        assert time.monotonic() < deadline, f"not complete after 420 s: {state['counts']}"
        time.sleep(2)
    elapsed = time.monotonic() - start
    assert state["counts"]["done"] == len(jobs) and state["analysed"], state["counts"]
    assert os.path.exists(os.path.join(out, "report.md"))
    assert "requeued" in seen and "running" in seen, seen
    with open(os.path.join(out, "runs", slow.id, "status.json")) as f:
        assert json.load(f)["attempts"] >= 2
    with open(os.path.join(out, "slurm", f"{array['job_id']}_0_log.out")) as f:
        log = f.read()
    assert "this job is timed-out" in log and f"Requeued job {array['job_id']} (" in log
    assert "Slurm restart 1" in log  # the requeued task started again
    assert os.path.exists(os.path.join(out, "slurm", f"{array['job_id']}_0_result.pkl"))
    assert _files(os.path.join(out, "runs", slow.id)) == _uninterrupted(slow, tmp_path, monkeypatch)
    code, text, _ = _cli("fig2", "--out", out, "--status")
    assert code == 0 and "the grid is complete: analysed" in text
    print(f"time-limit test: {elapsed:.0f} s from submission to the analysed grid")
