"""pathstats.robust.runfolder: the one reader of a run folder (collector, evaluations, attack --run)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from pathstats.cli import main
from pathstats.robust.experiments.grid import Job
from pathstats.robust.experiments.store import collect
from pathstats.robust.runfolder import RunFolderError, open_trained, read_run
from pathstats.robust.train import TrainConfig, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny finished run: fc on digits, one short epoch."""
    out = str(tmp_path_factory.mktemp("run") / "run")
    config = TrainConfig("fc", data="digits", epochs=1, steps_per_epoch=3, eval_n=20, train_eval_n=20, eval_eps=0.05)
    train(config, out, progress=False)
    return out, config


def test_open_trained_reads_what_the_trainer_wrote(trained):
    out, config = trained
    run = open_trained(out)
    assert run.config == config.resolved() and run.status == "done"
    assert run.input_shape == (1, 8, 8) and run.classes == 10
    model, state = run.load_model("cpu")
    assert state["epoch"] == 1 and not model.training
    data = run.load_data("cpu")
    with torch.no_grad():
        assert model(data.test_x[:4]).shape == (4, 10)


def test_the_collector_reads_through_the_same_reader(trained):
    out, config = trained
    experiment = os.path.join(os.path.dirname(out), "experiment")
    job = Job(config.to_dict())
    os.makedirs(os.path.join(experiment, "runs"), exist_ok=True)
    target = os.path.join(experiment, "runs", job.id)  # where the collector looks: out/runs/<id>
    if not os.path.exists(target):
        os.symlink(out, target)
    (record,) = collect(experiment, [job])
    on_disk = read_run(out)
    assert record["metrics"] == on_disk["metrics"] and record["metrics"][-1]["epoch"] == 1
    assert record["run_config"] == on_disk["config"] and record["result"]["status"] == "done"


def test_read_run_is_tolerant_of_missing_and_torn_files(tmp_path):
    assert read_run(str(tmp_path)) == {"config": None, "result": None, "metrics": [], "checkpoint": False}
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n{"epo')
    (tmp_path / "result.json").write_text("{half")
    run = read_run(str(tmp_path))
    assert run["metrics"] == [{"epoch": 1}, {"epoch": 2}] and run["result"] is None


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "no such folder"),
    (lambda p: p.mkdir(), "no config.json there"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text("{}")), "no checkpoint.pt yet"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text("{broken"), (p / "checkpoint.pt").write_bytes(b"x")),
     "config.json is unreadable"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text(json.dumps({"config": {"arch": "fc", "colour": 1}})),
                (p / "checkpoint.pt").write_bytes(b"x")), "config.json is unreadable"),
])
def test_open_trained_refuses_what_is_not_a_trained_run_in_one_line(tmp_path, setup, message):
    folder = tmp_path / "run"
    setup(folder)
    with pytest.raises(RunFolderError, match=message) as info:
        open_trained(str(folder), f"--run {folder}")
    assert str(info.value).startswith(f"--run {folder}: ") and "\n" not in str(info.value)


def test_attack_run_refuses_a_folder_that_is_not_a_trained_run(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    assert main(["attack", "--run", str(tmp_path), "--attack", "fgm", "--eps", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint.pt yet" in err and len(err.strip().splitlines()) == 1


def test_attack_run_reads_the_trained_network(trained, capsys):
    out, _ = trained
    assert main(["attack", "--run", out, "--attack", "fgm", "--eps", "0.01", "--n", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "status done" in report["model"]["source"] and report["n"] == 10
