"""The Slurm executor against a REAL single-node Slurm cluster that the test starts and stops.

Debian's slurmctld, slurmd and munge (``.ci/run`` installs them); outside CI the test is
skipped when they are missing, in CI (``CI`` set) it fails instead.
"""

from __future__ import annotations

import csv
import glob
import os
import sys

import pytest

from slurm_cluster import SlurmUnavailable, slurm_available, slurm_cluster

from pathstats.robust.experiments import get, run_experiment

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = slurm_available()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Slurm test: {reason}")
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    try:
        with slurm_cluster(str(root)) as env:
            yield env
    except SlurmUnavailable as exc:
        pytest.fail(f"the test cluster did not start: {exc}")


def test_grid_runs_as_a_job_array_on_slurm(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", cluster["SLURM_CONF"])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    out = str(tmp_path / "fig2")
    n = get("fig2").quick.n_runs
    summary = run_experiment("fig2", out, scale="quick", executor="slurm", runs_per_job=9, time_min=5,
                             run_fn="fake_runs:fake_run", progress=False)
    assert (summary["ran"], summary["done"], summary["failed"]) == (n, n, 0)
    with open(os.path.join(out, "results.csv")) as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["done"] * n
    # one array of two tasks (9 runs packed per task), run with this very Python
    scripts = glob.glob(os.path.join(out, "slurm", "*submission.sh"))
    assert len(scripts) == 1
    with open(scripts[0]) as f:
        script = f.read()
    assert "#SBATCH --array=0-1" in script and sys.executable in script
    again = run_experiment("fig2", out, scale="quick", executor="slurm", run_fn="fake_runs:fake_run", progress=False)
    assert (again["ran"], again["skipped"]) == (0, n)
