"""pathstats train: every method runs, runs resume exactly, bad input is refused in one line."""

import json
import os
import signal

import pytest
import torch

from pathstats.cli import main
from pathstats.robust import methods as methods_module
from pathstats.robust import train as train_module
from pathstats.robust.data import DataError
from pathstats.robust.methods import METHODS, MethodError
from pathstats.robust.train import CheckpointError, ConfigMismatchError, TrainConfig, TrainError, train

SPEC_FIELDS = ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "test_grad_l1", "test_grad_l2",
               "train_grad_l1", "train_grad_l2", "vulnerability", "loss_damage", "accuracy_adv", "elapsed_s"]


def tiny(method="none", **changes) -> TrainConfig:
    """Digits at 8x8, a few steps of batch 16, evaluation on 20 + 20 images."""
    base = dict(arch="fc", data="digits", method=method, eps=0.0 if method == "none" else 0.02, epochs=1, batch=16,
                steps_per_epoch=3, eval_n=20, train_eval_n=20)
    return TrainConfig(**{**base, **changes})


def read_metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def without_time(rows):
    return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in rows]


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_trains_one_epoch_on_digits(tmp_path, name):
    result = train(tiny(name, opnorm_iters=2), str(tmp_path), progress=False)
    assert result["status"] == "done" and result["epochs_done"] == 1 and result["steps_done"] == 3
    init, row = read_metrics(tmp_path)
    assert init["epoch"] == 0 and init["step"] == 0 and init["objective"] is None and set(init) == set(row)
    for field in SPEC_FIELDS:
        assert isinstance(row[field], (int, float)), field
    for field in SPEC_FIELDS[1:-1]:
        assert row[field + "_se"] >= 0, field
    assert row["test_n"] == 20 and row["train_n"] == 20
    assert 0 <= row["vulnerability"] <= 1 and row["test_grad_l1"] >= row["test_grad_l2"] > 0
    assert set(result["provenance"]) >= {"torch_version", "seed", "device", "command"}
    with open(tmp_path / "config.json") as f:
        written = json.load(f)
    assert written["config"] == result["config"] and "provenance" in written
    assert written["method"]["strength"] == METHODS[name].strength(result["config"]["eps"], 64)


def test_resumed_runs_end_with_identical_metrics(tmp_path):
    """Stopped mid-epoch or at an epoch's end, then continued: the same metrics (CPU, same
    seed) as one uninterrupted run -- momentum, schedule, shuffling and PGD starts included."""
    config = tiny("pgd", epochs=2, eps=0.03)
    reference = train(config, str(tmp_path / "whole"), progress=False)
    assert reference["status"] == "done" and reference["steps_done"] == 6
    for stop_after in (2, 3):  # mid-epoch; at the end of epoch 1
        out = str(tmp_path / f"stopped{stop_after}")
        first = train(config, out, progress=False, max_steps=stop_after)
        assert first["status"] == "interrupted" and first["stopped_by"] == "max_steps"
        assert first["steps_done"] == stop_after
        assert train(config, out, progress=False)["status"] == "done"
        assert without_time(read_metrics(out)) == without_time(read_metrics(tmp_path / "whole"))
        with open(os.path.join(out, "result.json")) as f:
            assert json.load(f)["steps_done"] == 6


def test_a_finished_run_is_returned_without_work(tmp_path):
    first = train(tiny(), str(tmp_path), progress=False)
    mtime = os.path.getmtime(tmp_path / "checkpoint.pt")
    again = train(tiny(), str(tmp_path), progress=False)
    assert again["metrics"] == first["metrics"] and os.path.getmtime(tmp_path / "checkpoint.pt") == mtime


def test_sigterm_stops_after_a_checkpoint_and_the_run_continues(tmp_path, monkeypatch):
    """The signal arrives during the second step: that step finishes, a checkpoint is
    written, the run reports it; repeating the command ends as an uninterrupted run."""
    calls = {"n": 0}
    plain = METHODS["none"]

    def signalling_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return plain.loss(*args, **kwargs)

    patched = methods_module.Method(plain.name, plain.description, plain.source, plain.norm, signalling_loss)
    monkeypatch.setattr(train_module, "get_method", lambda name: patched)
    stopped = train(tiny(), str(tmp_path / "a"), progress=False)
    assert stopped["status"] == "interrupted" and stopped["stopped_by"] == "SIGTERM" and stopped["steps_done"] == 2
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is put back
    monkeypatch.undo()
    assert train(tiny(), str(tmp_path / "a"), progress=False)["status"] == "done"
    train(tiny(), str(tmp_path / "b"), progress=False)
    assert without_time(read_metrics(tmp_path / "a")) == without_time(read_metrics(tmp_path / "b"))


def test_a_diverging_run_stops_and_says_why(tmp_path, capsys):
    args = ["train", "--arch", "fc", "--data", "digits", "--method", "grad-l1", "--eps", "0.1", "--lr", "1e30",
            "--epochs", "1", "--steps-per-epoch", "5", "--eval-n", "20", "--train-eval-n", "20", "--quiet",
            "--out", str(tmp_path)]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "training loss became" in err and "lower --eps or --lr" in err
    with open(tmp_path / "result.json") as f:
        result = json.load(f)
    assert result["status"] == "diverged" and "nan" in result["reason"] or "inf" in result["reason"]
    assert main(args) == 3  # repeating it reports the same, without work


@pytest.mark.parametrize("changes, error, message", [
    ({"method": "adv"}, MethodError, "unknown method 'adv'"),
    ({"method": "grad-l1", "eps": -0.1}, TrainError, "--eps must be a finite number >= 0"),
    ({"eps": 0.1}, TrainError, "--method none takes no strength"),
    ({"epochs": 0}, TrainError, "--epochs must be a positive integer"),
    ({"lr": 0.0}, TrainError, "--lr must be a finite number > 0"),
    ({"method": "fd-l2", "eps": 1.0, "fd_h": 0.0}, TrainError, "--fd-h must be a finite number > 0"),
    ({"batch": 1}, TrainError, "--batch must be at least 2"),
    ({"data": "folder:/nonexistent/images"}, DataError, "DIR/train/<class>"),
    ({"data": "cifar10:/nonexistent"}, DataError, "data_batch_1"),
    ({"arch": "conv6"}, DataError, "up-sample with --size"),
    ({"device": "cuda:0" if not torch.cuda.is_available() else "tpu"}, TrainError, "device"),
    ({"schedule": "halving"}, TrainError, "--schedule halving restarts from the best-validation checkpoint"),
    ({"augment": "crop,rotate"}, TrainError, "--augment takes"),
    ({"adv_mode": "test"}, TrainError, "--adv-mode must be one of"),
    ({"opnorm_form": "cube"}, TrainError, "--opnorm-form must be one of"),
    ({"eval_every": 0}, TrainError, "--eval-every must be an integer >= 1"),
    ({"channels": 0}, TrainError, "--channels must be an integer >= 1"),
    ({"adv_clip": "no"}, TrainError, "--adv-clip must be true or false"),
    ({"eval_step_frac": 0.0}, TrainError, "--eval-step-frac must be a finite number > 0"),
    ({"val_split": 5000}, DataError, "--val-split must be an integer in 0..1437"),
])
def test_bad_configurations_are_refused_before_any_work(tmp_path, changes, error, message):
    out = tmp_path / "run"
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        train(tiny(**changes), str(out), progress=False)
    assert not (out / "checkpoint.pt").exists()


def test_another_configuration_on_the_same_folder_is_refused(tmp_path):
    train(tiny(), str(tmp_path), progress=False, max_steps=1)
    with pytest.raises(ConfigMismatchError, match="lr: 0.05 there, 0.1 now"):
        train(tiny(lr=0.1), str(tmp_path), progress=False)


def test_a_corrupt_checkpoint_is_refused(tmp_path):
    train(tiny(), str(tmp_path), progress=False, max_steps=1)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="checkpoint .* is unreadable .*delete it"):
        train(tiny(), str(tmp_path), progress=False)


def test_cli_refusals_are_one_line(tmp_path, capsys):
    assert main(["train", "--arch", "fc", "--data", "digits", "--method", "grad-l1", "--eps", "-1",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("pathstats train: error: --eps must be")
    assert main(["train", "--arch", "fc", "--data", "folder:" + str(tmp_path / "missing"), "--method", "none",
                 "--out", str(tmp_path / "run")]) == 2
    assert "DIR/train/<class>" in capsys.readouterr().err


def test_cli_json_and_table(tmp_path, capsys):
    args = ["train", "--arch", "fc", "--data", "digits", "--method", "fd-l2", "--eps", "0.5", "--epochs", "1",
            "--batch", "16", "--steps-per-epoch", "2", "--eval-n", "30", "--train-eval-n", "30", "--quiet",
            "--out", str(tmp_path)]
    assert main(args + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "done" and result["config"]["fd_h"] == 0.01 and result["config"]["method"] == "fd-l2"
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "E||dL/dx||_1" in out and "+-" in out and "test  (n=30)" in out


def test_config_round_trip_and_defaults():
    config = TrainConfig("conv6", data="cifar10:/data", method="pgd", eps=0.01, opnorm_p="inf")
    assert TrainConfig.from_dict(config.to_dict()) == config
    resolved = config.resolved()
    assert (resolved.epochs, resolved.batch, resolved.lr, resolved.opnorm_p) == (200, 128, 0.01, "inf")
    with pytest.raises(TrainError, match="unknown training configuration keys"):
        TrainConfig.from_dict({**config.to_dict(), "colour": "red"})


PROTOCOL = dict(normalise=True, augment="crop,flip", val_split=40, schedule="halving", halve_every=1,
                adv_mode="train", adv_clip=False)


def test_resume_is_exact_with_the_papers_protocol(tmp_path):
    """Normalisation, augmentation, validation split, halving restarts and train-mode
    unclipped attacks: stopped mid-epoch or at an epoch's end, the same metrics."""
    config = tiny("pgd", epochs=2, eps=0.03, **PROTOCOL)
    reference = train(config, str(tmp_path / "whole"), progress=False)
    assert reference["status"] == "done"
    rows = read_metrics(tmp_path / "whole")
    assert [r["epoch"] for r in rows] == [0, 1, 2] and all("val_accuracy" in r and "val_loss" in r for r in rows)
    for stop_after in (2, 3):
        out = str(tmp_path / f"stopped{stop_after}")
        assert train(config, out, progress=False, max_steps=stop_after)["status"] == "interrupted"
        assert train(config, out, progress=False)["status"] == "done"
        assert without_time(read_metrics(out)) == without_time(rows)


def test_halving_restarts_from_the_best_validation_weights_with_half_the_rate(tmp_path, monkeypatch):
    """Constructed validation accuracies 0.5 after epoch 1, 0.3 after epoch 2: the run
    continues from epoch 1's weights at the end of epoch 2, with the rate halved twice."""
    scores = iter([0.1, 0.5, 0.3, 0.2])
    real = train_module._clean_evaluate

    def constructed(*args):
        out = real(*args)
        out["accuracy"] = next(scores)
        return out

    monkeypatch.setattr(train_module, "_clean_evaluate", constructed)
    config = tiny(epochs=3, val_split=40, schedule="halving", halve_every=2)
    train(config, str(tmp_path / "two"), progress=False, max_steps=6)  # stops after epoch 2's restart
    scores = iter([0.1, 0.5])
    train(config, str(tmp_path / "one"), progress=False, max_steps=3)  # stops after epoch 1
    two = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    one = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    assert two["epoch"] == 2 and one["epoch"] == 1 and two["best"]["epoch"] == 1
    for key, value in one["model"].items():
        assert torch.equal(two["model"][key], value), key
    rows = read_metrics(tmp_path / "two")
    assert rows[-1]["restarted_from_epoch"] == 1 and rows[-1]["lr"] == 0.05 / 2
    assert [r["lr"] for r in read_metrics(tmp_path / "one")] == [0.05, 0.05]


def test_eval_every_keeps_the_initialisation_and_the_last_epoch(tmp_path):
    train(tiny(epochs=3, steps_per_epoch=1, eval_every=2), str(tmp_path), progress=False)
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [0, 2, 3]


def test_units_convert_normalised_strengths_to_pixels(tmp_path):
    result = train(tiny("grad-l2", normalise=True), str(tmp_path), progress=False)
    with open(tmp_path / "config.json") as f:
        written = json.load(f)
    units, std = written["units"], written["data"]["std"]
    (mean,) = written["data"]["mean"]
    assert written["data"]["bounds"] == [[pytest.approx(-mean / std[0])], [pytest.approx((1 - mean) / std[0])]]
    assert units["input_units"] == "normalised" and units["d"] == 64 and units["sigma"] == pytest.approx(std[0])
    eps = result["config"]["eps"]
    assert units["eps"]["normalised"] == {"inf": eps, "2": pytest.approx(eps * 8), "1": pytest.approx(eps * 64)}
    assert units["eps"]["pixel"]["inf"] == pytest.approx(eps * std[0])
    assert TrainConfig("fc", method="grad-l2", eps=eps, normalise=True).units(d=64) == units


def test_cli_takes_every_protocol_flag(tmp_path, capsys):
    args = ["train", "--arch", "conv6", "--data", "digits", "--size", "24", "--method", "fgsm", "--eps", "0.01",
            "--epochs", "1", "--batch", "8", "--steps-per-epoch", "1", "--normalise", "--augment", "crop,flip",
            "--crop-pad", "2", "--val-split", "16", "--schedule", "halving", "--halve-every", "5", "--channels", "4",
            "--limit-train", "64", "--limit-test", "10", "--eval-batch", "4", "--eval-every", "1", "--adv-mode", "train",
            "--no-adv-clip", "--eval-steps", "2", "--eval-step-frac", "0.5", "--no-eval-random-start",
            "--opnorm-form", "squared", "--train-eval-n", "8", "--quiet", "--json", "--out", str(tmp_path)]
    assert main(args) == 0
    config = json.loads(capsys.readouterr().out)["config"]
    assert config == {**config, "normalise": True, "augment": "crop,flip", "crop_pad": 2, "val_split": 16,
                      "schedule": "halving", "halve_every": 5, "channels": 4, "limit_train": 64, "limit_test": 10,
                      "eval_batch": 4, "eval_every": 1, "adv_mode": "train", "adv_clip": False, "eval_steps": 2,
                      "eval_step_frac": 0.5, "eval_random_start": False, "opnorm_form": "squared"}
    rows = read_metrics(tmp_path)
    assert rows[-1]["test_n"] == 10 and rows[-1]["val_n"] == 16
    with open(tmp_path / "config.json") as f:
        written = json.load(f)
    assert written["data"]["train"] == 48 and written["native_shape"] == [1, 8, 8]


def test_a_normalised_run_is_evaluated_in_its_own_units(tmp_path):
    train(tiny(normalise=True, limit_test=30), str(tmp_path), progress=False)
    data = train_module.load_run_dataset(str(tmp_path))
    model, _ = train_module.load_trained_model(str(tmp_path))
    with open(tmp_path / "config.json") as f:
        written = json.load(f)
    assert data.test_x.shape == (30, 1, 8, 8) and abs(float(data.test_x.mean())) < 1.0
    low, high = data.bounds
    assert torch.allclose(low.flatten(), torch.tensor([-written["data"]["mean"][0] / written["data"]["std"][0]]))
    stats = train_module.evaluate(model, data.test_x[:20], data.test_y[:20], 0.005, seed=0, bounds=data.bounds)  # eval_n 20
    assert stats["accuracy"] == read_metrics(tmp_path)[-1]["test_accuracy"]
