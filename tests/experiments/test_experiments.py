"""pathstats.robust.experiments: grids, run ids, bookkeeping, claims on known answers, the CLI.

The bookkeeping tests inject a test double of the trainer (``tests/helpers/fake_runs.py``) through
the run-function seam; the end-to-end test trains for real.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os

import numpy as np
import pytest

from pathstats.cli import main
from pathstats.robust.experiments import EXPERIMENTS, analyse, expand, get, plan, run_experiment, run_id
from pathstats.robust.experiments.executors import run_local
from pathstats.robust.experiments.grid import Grid, canonical_json
from pathstats.robust.experiments.store import collect, execute, read_status
from pathstats.robust.experiments.tables import write_tables

FAKE = "tests.helpers.fake_runs:fake_run"


# ----------------------------------------------------------------------------- grids and ids


@pytest.mark.parametrize("name", list(EXPERIMENTS))
@pytest.mark.parametrize("scale", ["paper", "quick"])
def test_grid_expands_to_its_size_with_distinct_stable_ids(name, scale):
    grid = get(name).grid(scale)
    jobs = expand(grid, "digits")
    assert len(jobs) == grid.n_runs
    ids = [job.id for job in jobs]
    assert len(set(ids)) == len(ids)
    assert ids == [job.id for job in plan(name, "digits", scale)]  # the same grid gives the same ids
    assert all(job.train["data"] == "digits" for job in jobs)


def test_run_id_is_the_hash_of_the_canonical_configuration():
    config = {"method": "pgd", "eps": 0.01, "arch": "fc", "seed": 3, "size": None}
    expected = hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    assert run_id(config) == expected
    assert run_id(dict(reversed(list(config.items())))) == expected  # key order does not matter
    assert run_id({**config, "device": "cuda:1"}) == expected  # where it runs is not what it computes
    assert run_id({**config, "eps": 0.02}) != expected
    assert canonical_json({"b": 1.0, "a": None}) == '{"a":null,"b":1.0}'


def test_paper_grids_follow_the_papers():
    fig1, fig2, fig3 = (get(n).paper for n in ("fig1", "fig2", "fig3"))
    assert {m for m, _ in fig1.methods} >= {"grad-l1", "grad-l2", "fgsm", "fgm-l2", "pgd", "crosslip"}
    assert len(fig1.seeds) >= 3  # matching per strength needs seed-based intervals
    assert fig2.sizes == (32, 64, 128, 256) and fig2.archs == ("conv8",)
    assert fig2.train["normalise"] and fig2.train["eval_eps"] == 0.004  # Section 4.2's 0.08% of the pixel range
    assert len(fig3.seeds) == 20 and set(fig3.archs) == {"conv6-avgpool", "conv6-strided", "conv6-maxpool"}


# ----------------------------------------------------------------------------- bookkeeping


def _task(tmp_path, method, eps=0.0, epochs=2, **extra):
    train = {"arch": "fc", "data": "digits", "size": None, "method": method, "eps": eps, "seed": 0, "epochs": epochs,
             **extra}
    job = {"id": run_id(train), "train": train, "evaluations": []}
    return job, str(tmp_path / "runs" / job["id"]), FAKE


def test_failed_runs_are_recorded_and_the_grid_goes_on(tmp_path):
    tasks = [_task(tmp_path, "crash"), _task(tmp_path, "nan"), _task(tmp_path, "none")]
    statuses = run_local(tasks, jobs=1)
    assert [s["status"] for s in statuses] == ["failed", "failed", "done"]
    assert statuses[0]["error"] == "RuntimeError: simulated crash"
    assert statuses[1]["error"].startswith("FloatingPointError: non-finite metrics.test_grad_l1")
    assert read_status(tasks[0][1])["status"] == "failed" and "Traceback" in read_status(tasks[0][1])["traceback"]


def test_parallel_local_processes_run_every_task(tmp_path):
    tasks = [_task(tmp_path, "none", seed=s) for s in range(3)] + [_task(tmp_path, "crash")]
    statuses = run_local(tasks, jobs=2)
    assert [s["status"] for s in statuses] == ["done"] * 3 + ["failed"]
    assert all(read_status(t[1])["status"] == s["status"] for t, s in zip(tasks, statuses))


def test_experiment_resumes_interrupted_runs_and_skips_finished_ones(tmp_path, monkeypatch):
    out = str(tmp_path / "fig2")
    n = get("fig2").quick.n_runs
    epochs = get("fig2").quick.train["epochs"]
    monkeypatch.setenv("FAKE_STOP_AFTER", "2")
    first = run_experiment("fig2", out, scale="quick", run_fn=FAKE, progress=False)
    assert (first["ran"], first["done"]) == (n, 0)
    with open(os.path.join(out, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n and {r["status"] for r in rows} == {"interrupted"} and {r["epochs_done"] for r in rows} == {"2"}

    monkeypatch.delenv("FAKE_STOP_AFTER")
    second = run_experiment("fig2", out, scale="quick", run_fn=FAKE, progress=False)
    assert (second["ran"], second["done"], second["failed"]) == (n, n, 0)
    for job in plan("fig2", scale="quick"):
        with open(os.path.join(out, "runs", job.id, "calls.log")) as f:
            assert f.read().split() == [str(e) for e in range(1, epochs + 1)]  # each epoch computed once

    _check_fig2_known_laws(out, second)

    third = run_experiment("fig2", out, scale="quick", run_fn=FAKE, progress=False)
    assert (third["ran"], third["skipped"], third["done"]) == (0, n, n)
    assert third["claims"] == json.loads(json.dumps(second["claims"]))  # nothing changed: the analysis is kept
    for name in ("results.csv", "claims.json", "report.md", "fig2.png", "fig2.pdf", "fig12.png", "fig12.pdf"):
        assert os.path.getsize(os.path.join(out, name)) > 0


def _check_fig2_known_laws(out, summary):
    """The claims of fig2 on the test double's synthetic laws (tests/helpers/fake_runs.py) have known verdicts."""
    claims = {c["claim"]: c for c in summary["claims"]}
    slope = claims["E||dL/dx||_1 grows like sqrt(d) after usual training"]
    assert slope["ci_low"] <= 0.5 <= slope["ci_high"] and abs(slope["value"] - 0.5) < 0.01 and slope["verdict"] == "holds"
    assert claims["accuracies are dimension independent"]["verdict"] == "holds"
    assert claims["gradient norms do not generalise: larger on the test set than on the training set"]["verdict"] == "holds"
    assert claims["on the training set the gradient norms become dimension independent"]["verdict"] == "holds"
    assert claims["adversarial vulnerability increases with the input dimension"]["verdict"] == "holds"
    # the synthetic strength only rescales the gradients: the slope does not change, so no dampening is shown
    assert claims["larger PGD regularisation decreases the slope of the dimension dependence"]["verdict"] != "holds"
    # the synthetic trade-off depends on d (vulnerability ~ sqrt(d), accuracy not): the claim must fail
    assert claims["PGD reaches the same accuracy-vulnerability trade-off whatever the input dimension"]["verdict"] == "fails"
    with open(os.path.join(out, "claims.json")) as f:
        on_disk = json.load(f)
    assert on_disk == json.loads(json.dumps(summary["claims"]))
    for c in on_disk:
        assert {"claim", "source", "statistic", "value", "ci_low", "ci_high", "expected", "verdict"} <= set(c)


def test_results_csv_has_one_row_per_run_with_config_status_and_metrics(tmp_path):
    tasks = [_task(tmp_path, "none"), _task(tmp_path, "crash")]
    run_local(tasks, jobs=1)
    from pathstats.robust.experiments.grid import Job

    jobs = [Job(t[0]["train"]) for t in tasks]
    records = collect(str(tmp_path), jobs)
    write_tables(str(tmp_path), records)
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0])
    assert [r["status"] for r in rows] == ["done", "failed"]
    assert rows[1]["error"] == "RuntimeError: simulated crash"
    assert {"id", "method", "eps", "seed", "test_grad_l1", "vulnerability"} <= set(columns)
    assert float(rows[0]["test_grad_l1"]) == pytest.approx(records[0]["metrics"][-1]["test_grad_l1"])


# ----------------------------------------------------------------------------- claims on known answers


def test_fig1_claims_on_synthetic_runs(tmp_path):
    summary = run_experiment("fig1", str(tmp_path / "fig1"), scale="quick", run_fn=FAKE, progress=False)
    claims = {c["claim"]: c for c in summary["claims"]}
    # every method follows the same synthetic law: the curves match, and vulnerability is a function of the gradient
    prop3 = "l1 gradient regularisation matches l_inf adversarial augmentation (Proposition 3)"
    assert claims[f"{prop3}: E||dL/dx||_1"]["verdict"] == "holds"
    assert claims[f"{prop3}: accuracy"]["verdict"] == "holds"
    assert claims["vulnerability is a function of E||dL/dx||_1 whatever the training method"]["verdict"] == "holds"
    assert claims["E||dL/dx||_2 is proportional to E||dL/dx||_1 (near-perfect linear relation)"]["verdict"] == "holds"


# ----------------------------------------------------------------------------- command line


def test_cli_lists_experiments(capsys):
    assert main(["experiment", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["experiments"]
    assert [e["name"] for e in listed] == list(EXPERIMENTS)
    assert all(e["runs"] == EXPERIMENTS[e["name"]].paper.n_runs for e in listed)


@pytest.mark.parametrize("argv, message", [
    (["experiment", "fig9"], "unknown experiment 'fig9'"),
    (["experiment", "fig1", "--quick", "--jobs", "0"], "--jobs must be a positive integer"),
    (["experiment", "fig1", "--quick", "--executor", "pbs"], "--executor must be local or slurm"),
    (["experiment", "fig1", "--quick", "--data", "cifar10:/nonexistent"], "cifar10"),
])
def test_cli_refuses_bad_input_before_any_work(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_refuses_a_file_as_output_folder(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["experiment", "fig1", "--quick", "--out", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the real trainer, end to end


def test_real_runs_train_evaluate_and_resume_without_recomputing(tmp_path):
    """Two tiny real runs (fc on digits, one short epoch) through the trainer and every evaluation."""
    grid = Grid(("fc",), (None,), (("none", (0.0,)), ("pgd", (0.05,))), (0,),
                {"epochs": 1, "batch": 32, "lr": 0.05, "eval_eps": 0.05, "steps_per_epoch": 5, "eval_n": 40,
                 "train_eval_n": 40},
                ({"name": "attacks", "n": 20, "eps": 0.05, "steps": 3},
                 {"name": "alignment", "n": 10, "align_eps": 0.05, "eps": (0.0, 0.05)},
                 {"name": "bounds", "n": 40, "norm": 2}))
    jobs = expand(grid, "digits")
    tasks = [(job.to_dict(), str(tmp_path / "runs" / job.id), "pathstats.robust.experiments.runner:run_one")
             for job in jobs]
    statuses = run_local(tasks, jobs=1)
    assert [s["status"] for s in statuses] == ["done", "done"], [s.get("error") for s in statuses]
    records = collect(str(tmp_path), jobs)
    for record in records:
        assert [row["epoch"] for row in record["metrics"]] == [0, 1] and record["result"]["status"] == "done"
        attacks = record["evaluations"]["attacks"]["thresholds"]
        assert set(attacks) == {"inf", "2"} and set(attacks["inf"]) == {"fgsm", "fgm-l2", "pgd-inf", "pgd-l2", "deepfool"}
        assert attacks["2"]["pgd-l2"]["radius"] == pytest.approx(0.05 * 8)  # eps sqrt(d), d = 64
        alignment = record["evaluations"]["alignment"]
        assert np.asarray(alignment["singular_values"]).shape == (10, 10)
        cos = np.asarray(alignment["cos_by_rank"])
        # the right singular vectors are orthonormal, so the squared cosines over all ranks sum to at most 1
        assert np.all((cos**2).sum(1) <= 1 + 1e-4)
        assert len(record["evaluations"]["bounds"]["distance"]) == record["evaluations"]["bounds"]["n"]
    stamps = {t[1]: os.path.getmtime(os.path.join(t[1], "checkpoint.pt")) for t in tasks}
    again = run_local(tasks, jobs=1)  # finished: the trainer returns its result, evaluations are on disk
    assert [s["status"] for s in again] == ["done", "done"]
    assert all(os.path.getmtime(os.path.join(d, "checkpoint.pt")) == stamp for d, stamp in stamps.items())
