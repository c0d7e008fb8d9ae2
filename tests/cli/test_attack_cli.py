"""`pathstats attack`: the JSON contract, eps_inf -> eps_p, the text report and one-line refusals."""

from __future__ import annotations

import json
import math

import pytest
import torch

from pathstats import nets
from pathstats.cli import main
from pathstats.robust.data import load_dataset
from pathstats.robust.vulnerability import vulnerability

SPEC_KEYS = {"attack", "norm", "eps_inf", "eps_p", "d", "n", "accuracy_clean", "accuracy_adv", "vulnerability",
             "loss_damage", "first_order_damage", "grad_l1", "grad_l2", "elapsed_s"}


def _run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_smoke_json_conv6_digits_32(capsys):
    code, out, _ = _run(capsys, "attack", "--arch", "conv6", "--data", "digits", "--size", "32", "--attack", "pgd",
                        "--eps", "0.005", "--n", "8", "--json")
    assert code == 0
    report = json.loads(out)
    assert SPEC_KEYS <= set(report)
    assert (report["attack"], report["norm"], report["d"], report["n"], report["steps"]) == ("pgd", "inf", 1024, 8, 7)
    assert report["eps_inf"] == report["eps_p"] == 0.005
    for key in ("vulnerability", "loss_damage", "first_order_damage", "grad_l1", "first_order_ratio"):
        assert math.isfinite(report[key]) and math.isfinite(report[f"{key}_se"])
    assert report["provenance"]["seed"] == 0 and report["provenance"]["command"].startswith("pathstats attack")
    # the command is the Python API on the same model and data: one description, two uses
    data = load_dataset("digits", size=32)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nets.build("conv6", data.input_shape, data.classes)
    direct = vulnerability(model, data.test_x[:8], data.test_y[:8], attack="pgd", norm="inf", eps=0.005, steps=7, seed=0)
    for key in ("vulnerability", "loss_damage", "first_order_damage", "grad_l1", "accuracy_adv"):
        assert report[key] == direct[key], key


def test_l2_radius_scales_with_sqrt_d_and_text_prints_both(capsys):
    code, out, _ = _run(capsys, "attack", "--arch", "conv6-avgpool", "--data", "digits", "--attack", "fgm", "--norm", "2",
                        "--eps", "0.01", "--n", "8")
    assert code == 0
    assert "eps_inf = 0.01, eps_2 = eps_inf d^(1/2) = 0.08 (d = 64)" in out
    assert "Lemma 2" in out and "vulnerability" in out and "n = 8" in out


def test_deepfool_report(capsys):
    code, out, _ = _run(capsys, "attack", "--arch", "conv6-avgpool", "--data", "digits", "--attack", "deepfool",
                        "--norm", "2", "--eps", "0.05", "--n", "6", "--steps", "5", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["steps"] == 5 and report["eps_p"] == pytest.approx(0.05 * 8)
    assert 0 <= report["deepfool_success"] <= 1 and report["vulnerability"] <= report["deepfool_success"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny finished training run (fc on digits, 2 optimisation steps)."""
    from pathstats.robust.train import TrainConfig, train

    out = str(tmp_path_factory.mktemp("run"))
    config = TrainConfig("fc", data="digits", method="none", epochs=1, batch=32, lr=0.05, steps_per_epoch=2, eval_n=8,
                         train_eval_n=8)
    assert train(config, out, progress=False)["status"] == "done"
    return out


def test_run_attacks_the_trained_weights(capsys, trained_run):
    code, out, _ = _run(capsys, "attack", "--run", trained_run, "--attack", "fgm", "--eps", "0.01", "--n", "12", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["model"]["arch"] == "fc" and "trained run" in report["model"]["source"]
    assert report["data"]["spec"] == "digits" and report["d"] == 64
    # the same numbers from the checkpoint's weights loaded by hand
    data = load_dataset("digits")
    model = nets.build("fc", data.input_shape, data.classes)
    model.load_state_dict(torch.load(f"{trained_run}/checkpoint.pt", weights_only=True)["model"])
    direct = vulnerability(model, data.test_x[:12], data.test_y[:12], attack="fgm", norm="inf", eps=0.01)
    for key in ("accuracy_clean", "vulnerability", "loss_damage", "grad_l1"):
        assert report[key] == direct[key], key


@pytest.mark.parametrize("argv,words", [
    (["--run", "/nonexistent/run", "--attack", "pgd", "--eps", "0.01"], "no such folder"),
    (["--run", ".", "--attack", "pgd", "--eps", "0.01"], "not the folder of a pathstats train run"),
    (["--arch", "conv6", "--data", "digits", "--size", "32", "--attack", "pgd", "--eps", "0"], "--eps must be a positive"),
    (["--arch", "conv6", "--data", "digits", "--size", "32", "--attack", "pgd", "--eps", "nan"], "--eps must be a positive"),
    (["--arch", "conv6", "--data", "digits", "--size", "32", "--attack", "fgm", "--eps", "0.01", "--steps", "3"], "fgm"),
    (["--arch", "conv6", "--data", "digits", "--size", "32", "--attack", "pgd", "--eps", "0.01", "--steps", "0"], "--steps"),
    (["--arch", "conv6", "--data", "digits", "--size", "32", "--attack", "pgd", "--eps", "0.01", "--n", "0"], "--n must"),
    (["--arch", "conv9", "--data", "digits", "--attack", "pgd", "--eps", "0.01"], "unknown architecture"),
    (["--arch", "conv6", "--data", "mnist", "--attack", "pgd", "--eps", "0.01"], "unknown data spec"),
    (["--arch", "conv6", "--data", "digits", "--size", "12", "--attack", "pgd", "--eps", "0.01"], "not a multiple"),
    (["--arch", "conv6", "--data", "digits", "--attack", "pgd", "--eps", "0.01"], "--size 24"),
    (["--arch", "conv6", "--attack", "pgd", "--eps", "0.01"], "--arch needs --data"),
    (["--arch", "conv6", "--data", "cifar10:/nonexistent", "--attack", "pgd", "--eps", "0.01"], "never downloaded"),
    (["--arch", "conv6", "--data", "digits", "--size", "32", "--attack", "pgd", "--eps", "0.01", "--device", "cuda:x"], "--device"),
    (["--arch", "conv6", "--data", "digits", "--size", "32", "--attack", "pgd", "--norm", "1", "--eps", "0.01"], "invalid choice"),
    (["--arch", "conv6", "--data", "digits", "--size", "32", "--attack", "pgd", "--eps", "0.01", "--seed", "-1"], "--seed"),
])
def test_bad_flags_are_one_line_exit_2(capsys, argv, words):
    code, out, err = _run(capsys, "attack", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err


def test_run_refuses_other_data(capsys, trained_run):
    code, _, err = _run(capsys, "attack", "--run", trained_run, "--data", "digits", "--size", "16", "--attack", "pgd",
                        "--eps", "0.01")
    assert code == 2 and "trained without --size" in err and len(err.strip().splitlines()) == 1


def test_grayscale_folder_is_checked_with_its_own_channels(capsys, tmp_path):
    # a folder of grayscale images has 1 channel, not the 3 the command assumed for any data but digits
    from tests.robust.test_data import _write_folder

    _write_folder(tmp_path, ["a", "b"], mode="L", size=(8, 8), per_class=3)
    code, out, err = _run(capsys, "attack", "--arch", "fc", "--data", f"folder:{tmp_path}", "--attack", "fgm",
                          "--eps", "0.01", "--n", "4", "--json")
    assert code == 0, err
    assert json.loads(out)["d"] == 64
