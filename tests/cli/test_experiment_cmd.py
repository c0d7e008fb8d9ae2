"""``pathstats experiment`` as a user meets it: --dry-run, --reanalyse, signals, refusals, exit codes.

The runs are the trainer's test double (``tests/helpers/fake_runs.py``), injected through the
run-function seam; the signal tests run the command in a real subprocess.

The tests named ``*_signal_*``, ``*_exits_4_*``, ``test_reanalyse_gives_*``,
``test_reanalyse_refuses_unreadable_*`` and ``*_incomplete`` run the analysis (``tables.write_tables/read_tables``,
``analysis.analyse_tables``, ``report.write_report(path, experiment, results, analysis,
context)``), which the ``claims`` branch provides.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from pathstats.cli import main
from pathstats.cli import experiment as cli_experiment
from pathstats.robust.experiments import EXPERIMENTS, dry_run, get, plan, run_experiment
from pathstats.robust.experiments.catalogue import SCALES
from pathstats.robust.experiments.driver import (EXPERIMENT_FILE, ExperimentFolderError, check_out_folder, default_out,
                                                 flatten)
from pathstats.robust.experiments.executors import run_local
from pathstats.robust.experiments.grid import run_id
from pathstats.robust.experiments.store import read_status
from pathstats.robust.train import TrainConfig

FAKE = "tests.helpers.fake_runs:fake_run"
#: The repository root: a worker process imports the test double as ``tests.helpers.fake_runs`` from it.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fake_cli(monkeypatch):
    """The command line with the test double as the run function."""
    monkeypatch.setattr(cli_experiment, "run_experiment",
                        functools.partial(run_experiment, run_fn=FAKE, progress=False))


def _scales(name):
    out = []
    for scale in SCALES:
        try:
            get(name).grid(scale)
        except ValueError:  # no grid at that scale yet
            continue
        out.append(scale)
    return out


# ----------------------------------------------------------------------------- --dry-run


def test_dry_run_json_shows_every_run_fully_resolved_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["experiment", "fig2", "--scale", "quick", "--dry-run", "--json", "--out", str(out)]) == 0
    shown = json.loads(capsys.readouterr().out)
    jobs = plan("fig2", "digits", "quick")
    assert (shown["experiment"], shown["scale"], shown["data"]) == ("fig2", "quick", "digits")
    assert shown["n_runs"] == len(jobs) == get("fig2").quick.n_runs
    assert [r["id"] for r in shown["runs"]] == [job.id for job in jobs]  # the ids the runs are stored under
    for run, job in zip(shown["runs"], jobs):
        config = TrainConfig.from_dict(job.train).resolved()
        assert run["train"] == json.loads(json.dumps(config.to_dict()))  # every setting, defaults filled in
        assert run["units"] == json.loads(json.dumps(config.units()))
        assert run["evaluations"] == [dict(e) for e in job.evaluations]
        assert run["status"] == "new"
    # shared + varying partition every setting: a run is the shared settings plus its own
    for run in shown["runs"]:
        flat = flatten({"train": run["train"], "units": run["units"]})
        assert {**shown["shared"], **{k: flat[k] for k in shown["varying"] if k in flat}} == flat
    assert {"train.size", "train.method", "train.eps", "train.seed"} <= set(shown["varying"])
    assert shown["shared"]["train.epochs"] == get("fig2").quick.train["epochs"]
    assert not out.exists()


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_dry_run_resolves_every_grid_at_every_scale(name):
    for scale in _scales(name):
        shown = dry_run(name, "digits", scale)
        assert shown["n_runs"] == get(name).grid(scale).n_runs
        assert all(set(r["units"]) >= {"eps"} and r["train"]["epochs"] is not None for r in shown["runs"])


def test_dry_run_text_is_a_table_of_runs_and_the_shared_settings(capsys):
    assert main(["experiment", "fig1", "--quick", "--dry-run"]) == 0
    text = capsys.readouterr().out
    for job in plan("fig1", "digits", "quick"):
        assert job.id in text
    assert "shared by every run:" in text and "train.epochs" in text and "nothing trained" in text


# ----------------------------------------------------------------------------- refusals before any work


def _cifar(folder, truncate=None):
    """A miniature CIFAR-10 python-batches folder (10 images a batch); ``truncate`` cuts that file in half."""
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), b"labels": list(range(10))}
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(batch, f)
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": [str(i).encode() for i in range(10)]}, f)
    if truncate:
        path = os.path.join(folder, truncate)
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(size // 2)


def _experiment_folder(out, name="fig2", scale="quick", data="digits", runs=None):
    """A folder as run_experiment leaves it (experiment.json names what it holds)."""
    os.makedirs(out, exist_ok=True)
    ids = [job.id for job in plan(name, data, scale)] if runs is None else runs
    with open(os.path.join(out, EXPERIMENT_FILE), "w") as f:
        json.dump({"experiment": name, "scale": scale, "data": data, "runs": ids}, f)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("the earlier report")


def _refused(argv, message, capsys, untouched):
    before = {p: sorted(os.listdir(p)) if os.path.isdir(p) else None for p in untouched}
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert {p: sorted(os.listdir(p)) if os.path.isdir(p) else None for p in untouched} == before


def test_truncated_cifar_batch_is_refused_before_any_work(tmp_path, capsys):
    _cifar(str(tmp_path / "cifar"), truncate="data_batch_3")
    out = tmp_path / "out"
    _refused(["experiment", "fig1", "--quick", "--data", f"cifar10:{tmp_path / 'cifar'}", "--out", str(out)],
             "data_batch_3", capsys, [str(out)])
    assert not out.exists()


def test_readable_cifar_passes_the_data_check(tmp_path):
    from pathstats.robust.data import check_data_files

    _cifar(str(tmp_path / "cifar"))
    check_data_files(f"cifar10:{tmp_path / 'cifar'}")


def test_unreadable_image_in_a_folder_data_set_is_refused(tmp_path):
    from PIL import Image

    from pathstats.robust.data import DataError, check_data_files

    for split in ("train", "test"):
        for c in ("a", "b"):
            os.makedirs(tmp_path / "img" / split / c)
            Image.new("L", (8, 8)).save(tmp_path / "img" / split / c / "0.png")
    check_data_files(f"folder:{tmp_path / 'img'}")
    (tmp_path / "img" / "test" / "b" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        check_data_files(f"folder:{tmp_path / 'img'}")


@pytest.mark.parametrize("held, message", [
    ({"name": "fig1"}, "experiment 'fig1' there, 'fig2' now"),
    ({"scale": "paper"}, "scale 'paper' there, 'quick' now"),
    ({"data": "cifar10:/data/cifar"}, "data 'cifar10:/data/cifar' there, 'digits' now"),
    ({"runs": ["0123456789abcdef"]}, "runs that are not in the fig2 quick grid"),
])
def test_a_folder_of_another_experiment_scale_data_or_grid_is_refused(tmp_path, capsys, held, message):
    out = str(tmp_path / "out")
    _experiment_folder(out, **held)
    _refused(["experiment", "fig2", "--quick", "--out", out], message, capsys, [out])
    with open(os.path.join(out, "report.md")) as f:
        assert f.read() == "the earlier report"


def test_a_dry_run_refuses_the_folder_the_run_would_refuse(tmp_path, capsys):
    out = str(tmp_path / "out")
    _experiment_folder(out, name="fig1")
    _refused(["experiment", "fig2", "--quick", "--dry-run", "--out", out], "experiment 'fig1' there", capsys, [out])


def test_a_non_empty_folder_that_is_no_experiment_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _refused(["experiment", "fig2", "--quick", "--out", str(out)], "holds no readable experiment.json", capsys, [str(out)])


def test_the_same_experiment_or_an_extended_grid_is_accepted():
    ids = [job.id for job in plan("fig2", "digits", "quick")]
    check_out_folder("/nonexistent/folder", "fig2", "quick", "digits", ids)


def test_same_folder_same_grid_and_a_grown_grid_pass(tmp_path):
    ids = [job.id for job in plan("fig2", "digits", "quick")]
    _experiment_folder(str(tmp_path / "a"), runs=ids[:5])
    check_out_folder(str(tmp_path / "a"), "fig2", "quick", "digits", ids)  # the grid grew: the old runs are kept
    with pytest.raises(ExperimentFolderError):
        check_out_folder(str(tmp_path / "a"), "fig2", "quick", "digits", ids[6:])


def test_default_output_folder_names_scale_and_data():
    assert default_out("fig1", "quick", "digits") != default_out("fig1", "quick", "cifar10:/d")
    assert default_out("fig1", "quick", "digits") != default_out("fig1", "medium", "digits")


@pytest.mark.parametrize("argv, message", [
    (["experiment", "fig2", "--reanalyse", "/nonexistent/dir"], "no such folder"),
    (["experiment", "fig2", "--quick", "--dry-run", "--reanalyse", "/tmp"], "exclude each other"),
    (["experiment", "fig2", "--dry-run", "--scale", "quick", "--data", "mnist"], "unknown data spec"),
])
def test_reanalyse_and_dry_run_refuse_bad_input(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_reanalyse_refuses_a_folder_without_the_tables(tmp_path, capsys):
    (tmp_path / "results.csv").write_text("id,status\n")
    _refused(["experiment", "fig2", "--reanalyse", str(tmp_path)], "no epochs.csv there", capsys, [str(tmp_path)])


def test_reanalyse_refuses_unreadable_tables_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "results.csv").write_text('id,status\n"unterminated\n')
    (tmp_path / "epochs.csv").write_bytes(b"\x00\x01\x02")
    before = sorted(os.listdir(tmp_path))
    assert main(["experiment", "fig2", "--reanalyse", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "results.csv" in err and len(err.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == before


KEPT_FIG2 = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "experiments", "fig2-medium")


def _kept_tables_with(tmp_path, edit=None, raw: bytes | None = None):
    """fig2-medium's kept tables copied to ``tmp_path/t``, results.csv rewritten by ``edit(header, rows)``."""
    folder = tmp_path / "t"
    folder.mkdir()
    for name in ("epochs.csv", "experiment.json"):
        shutil.copy(os.path.join(KEPT_FIG2, name), folder / name)
    if raw is not None:
        (folder / "results.csv").write_bytes(raw)
        return folder
    with open(os.path.join(KEPT_FIG2, "results.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0])
    header, rows = edit(header, rows)
    with open(folder / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return folder


def _drop(column):
    return lambda header, rows: ([c for c in header if c != column], rows)


def _set(column, value):
    return lambda header, rows: (header, [{**r, column: value} for r in rows])


@pytest.mark.parametrize("edit, raw, message", [
    (_drop("d"), None, "lacks the column d"),
    (_drop("method"), None, "lacks the column method ("),
    (_set("d", "abc"), None, "line 2: d = 'abc' is not a positive number"),
    (_set("eps", "-1"), None, "line 2: eps = -1 is not a non-negative number"),
    (lambda header, rows: (header, []), None, "holds no runs"),
    (None, bytes(range(128, 256)) * 20, "not UTF-8 text"),
])
def test_reanalyse_refuses_tables_it_would_misread(tmp_path, capsys, edit, raw, message):
    # a table without the dimension column used to exit 0 with fig2's dimension claims silently empty
    folder = _kept_tables_with(tmp_path, edit, raw)
    out = tmp_path / "out"
    assert main(["experiment", "fig2", "--reanalyse", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_reanalyse_refuses_tables_of_another_experiment(tmp_path, capsys):
    _experiment_folder(str(tmp_path), name="fig1")
    (tmp_path / "results.csv").write_text("id,status\n")
    (tmp_path / "epochs.csv").write_text("id,epoch\n")
    _refused(["experiment", "fig2", "--reanalyse", str(tmp_path)], "are experiment 'fig1', not 'fig2'", capsys,
             [str(tmp_path)])


# ----------------------------------------------------------------------------- the local executor


def _task(tmp_path, method, seed=0, epochs=2):
    train = {"arch": "fc", "data": "digits", "size": None, "method": method, "eps": 0.0, "seed": seed, "epochs": epochs}
    job = {"id": run_id(train), "train": train, "evaluations": []}
    return job, str(tmp_path / "runs" / job["id"]), FAKE


def test_a_worker_that_dies_fails_its_run_and_the_grid_goes_on(tmp_path):
    tasks = [_task(tmp_path, "die")] + [_task(tmp_path, "none", seed=s) for s in range(3)]
    statuses = run_local(tasks, jobs=2)
    assert [s["status"] for s in statuses] == ["failed", "done", "done", "done"]
    assert "worker process died" in statuses[0]["error"] and read_status(tasks[0][1])["status"] == "failed"


# ----------------------------------------------------------------------------- signals, in a real subprocess


# the command with the test double as run function (guarded: spawned workers import this module)
_SCRIPT = textwrap.dedent("""
    import functools, sys
    if __name__ == "__main__":
        from pathstats.cli import experiment as cli_experiment
        from pathstats.robust.experiments import run_experiment
        cli_experiment.run_experiment = functools.partial(run_experiment, run_fn="tests.helpers.fake_runs:fake_run", progress=False)
        from pathstats.cli import main
        sys.exit(main(sys.argv[1:]))
""")


def _start(tmp_path, out, jobs, sleep):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO] + sys.path), "FAKE_EPOCH_SLEEP": str(sleep)}
    script = tmp_path / "experiment.py"
    script.write_text(_SCRIPT)
    return subprocess.Popen([sys.executable, str(script), "experiment", "fig2", "--quick", "--out", str(out),
                             "--jobs", str(jobs)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def _calls(out):
    calls = {}
    for job in plan("fig2", "digits", "quick"):
        path = os.path.join(out, "runs", job.id, "calls.log")
        calls[job.id] = open(path).read().split() if os.path.exists(path) else []
    return calls


def _done(out):
    return [job.id for job in plan("fig2", "digits", "quick")
            if read_status(os.path.join(out, "runs", job.id)).get("status") == "done"]


@pytest.mark.parametrize("jobs, signum, to_group", [(1, signal.SIGTERM, False), (2, signal.SIGTERM, False),
                                                     (2, signal.SIGINT, True)])
def test_a_signal_stops_the_whole_grid_and_the_same_command_finishes_it(tmp_path, jobs, signum, to_group):
    """SIGTERM to the command (or Ctrl-C: SIGINT to its whole process group, workers included)
    stops every run within seconds with 143 / 130; the rerun computes each epoch once."""
    out = tmp_path / "fig2"
    epochs = get("fig2").quick.train["epochs"]
    process = _start(tmp_path, out, jobs, sleep=0.2)
    deadline = time.time() + 600  # generous: on a crowded machine a fresh torch process starts slowly
    while len(_done(out)) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert process.poll() is None and len(_done(out)) >= 2, ("no two runs finished", process.poll())
    sent = time.time()
    (os.killpg if to_group else os.kill)(process.pid, signum)
    _, err = process.communicate(timeout=60)  # the runs stop, the tables of what finished are written
    assert process.returncode == 128 + signum, err.decode()
    assert f"stopped by {signal.Signals(signum).name}" in err.decode()
    stopped = _calls(out)
    time.sleep(1)
    assert _calls(out) == stopped  # no worker goes on after the command ended
    # every run stopped within seconds of the signal: its last status was written by then
    last = max(os.path.getmtime(os.path.join(out, "runs", i, "status.json")) for i, c in stopped.items() if c)
    assert last - sent < 8, last - sent
    done = _done(out)
    assert 2 <= len(done) < len(stopped) and all(len(stopped[i]) == epochs for i in done)
    statuses = {i: read_status(os.path.join(out, "runs", i))["status"] for i in stopped}
    assert {s for i, s in statuses.items() if i not in done} <= {"interrupted", "new"}
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(stopped)

    again = _start(tmp_path, out, 1, sleep=0)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err.decode()
    for i, calls in _calls(out).items():
        assert calls == [str(e) for e in range(1, epochs + 1)], i  # every epoch computed exactly once
    assert set(_done(out)) == set(stopped)


# ----------------------------------------------------------------------------- exit codes, reanalysis


def test_a_grid_whose_runs_all_fail_exits_4_and_some_failed_exits_3(tmp_path, capsys, monkeypatch):
    _fake_cli(monkeypatch)
    monkeypatch.setenv("FAKE_CRASH", "all")
    out = str(tmp_path / "all")
    assert main(["experiment", "fig2", "--quick", "--out", out]) == 4
    err = capsys.readouterr().err
    assert "every run failed" in err and "simulated crash" in err and len(err.strip().splitlines()) == 1
    with open(os.path.join(out, "results.csv")) as f:
        assert {row["status"] for row in csv.DictReader(f)} == {"failed"}

    monkeypatch.setenv("FAKE_CRASH", "pgd")
    out = str(tmp_path / "some")
    assert main(["experiment", "fig2", "--quick", "--out", out, "--json"]) == 3
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["failed"] == sum(job.train["method"] == "pgd" for job in plan("fig2", "digits", "quick"))
    assert summary["done"] == summary["runs"] - summary["failed"] and summary["complete"]
    assert f"{summary['failed']} of {summary['runs']} runs failed" in captured.err


def test_reanalyse_gives_the_claims_from_the_tables_alone(tmp_path, capsys, monkeypatch):
    _fake_cli(monkeypatch)
    out = tmp_path / "fig2"
    assert main(["experiment", "fig2", "--quick", "--out", str(out), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["complete"] and first["claims"]
    tables = tmp_path / "tables"
    tables.mkdir()
    for name in ("results.csv", "epochs.csv"):
        shutil.copy(out / name, tables / name)
    assert main(["experiment", "fig2", "--reanalyse", str(tables), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["scale"] == "quick" and again["complete"]  # the tables' run ids are the quick grid's
    assert [(c["claim"], c["verdict"]) for c in again["claims"]] == [(c["claim"], c["verdict"]) for c in first["claims"]]
    with open(tables / "claims.json") as f:
        assert json.load(f) == again["claims"]
    assert os.path.exists(tables / "report.md") and not os.path.exists(tables / "runs")

    elsewhere = tmp_path / "elsewhere"
    assert main(["experiment", "fig2", "--reanalyse", str(tables), "--out", str(elsewhere), "--json"]) == 0
    assert os.path.exists(elsewhere / "claims.json") and json.loads(capsys.readouterr().out)["out"] == str(elsewhere)


def test_an_interrupted_grid_is_analysed_as_incomplete(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_STOP_AFTER", "2")
    summary = run_experiment("fig2", str(tmp_path / "fig2"), scale="quick", run_fn=FAKE, progress=False)
    assert not summary["complete"] and summary["pending"] == summary["runs"]
    monkeypatch.delenv("FAKE_STOP_AFTER")
    summary = run_experiment("fig2", str(tmp_path / "fig2"), scale="quick", run_fn=FAKE, progress=False)
    assert summary["complete"] and summary["done"] == summary["runs"]
