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
                        "--eps", "0.005", "--n", "16", "--json")
    assert code == 0
    report = json.loads(out)
    assert SPEC_KEYS <= set(report)
    assert (report["attack"], report["norm"], report["d"], report["n"], report["steps"]) == ("pgd", "inf", 1024, 16, 7)
    assert report["eps_inf"] == report["eps_p"] == 0.005
    for key in ("vulnerability", "loss_damage", "first_order_damage", "grad_l1", "first_order_ratio"):
        assert math.isfinite(report[key]) and math.isfinite(report[f"{key}_stderr"])
    assert report["provenance"]["seed"] == 0 and report["provenance"]["command"].startswith("pathstats attack")
    # the command is the Python API on the same model and data: one description, two uses
    data = load_dataset("digits", size=32)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nets.build("conv6", data.input_shape, data.classes)
    direct = vulnerability(model, data.test_x[:16], data.test_y[:16], attack="pgd", norm="inf", eps=0.005, steps=7, seed=0)
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
                        "--eps", "0.05", "--n", "6", "--steps", "5", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["steps"] == 5 and report["eps_p"] == pytest.approx(0.05 * 8)
    assert 0 <= report["deepfool_success"] <= 1 and report["vulnerability"] <= report["deepfool_success"]


@pytest.mark.parametrize("argv,words", [
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
])
def test_bad_flags_are_one_line_exit_2(capsys, argv, words):
    code, out, err = _run(capsys, "attack", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err
