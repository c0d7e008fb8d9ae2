"""Papercuts a new user hit (issue 19), each fixed: a difference of two branches, a
refusal that names its flag, no empty folder after a refused run, a resumed run's
progress out of the whole run, claims wrapped rather than cut."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

import pathstats
from pathstats.cli import main
from pathstats.layer_engine.rules import UnsupportedLayerError  # re-exported from pathstats.errors (as on main)


class Branches(nn.Module):
    """``relu(c0(x))`` combined with ``c1`` of itself: ``h - c1(h)``, ``h + (-1) c1(h)`` or ``h + c1(h)``."""

    def __init__(self, form: str, gate_after: bool = False) -> None:
        super().__init__()
        self.form, self.gate_after = form, gate_after
        self.c0 = nn.Conv2d(1, 4, 3, padding=1)
        self.c1 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 5 * 5, 3)

    def forward(self, x):
        h = torch.relu(self.c0(x))
        if self.form == "sub":
            h = h - self.c1(h)
        elif self.form == "negated":
            h = h + (-1.0) * self.c1(h)
        else:
            h = h + self.c1(h)
        if self.gate_after:
            h = torch.relu(h)
        return self.fc(h.flatten(1))


class GatedDifference(nn.Module):
    """``relu(a) - relu(b)``: both operands have a positive mean, so the sign matters to the forward law."""

    def __init__(self, form: str) -> None:
        super().__init__()
        self.form = form
        self.a, self.b = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(1, 4, 3, padding=1)
        self.c = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 5 * 5, 3)

    def forward(self, x):
        a, b = torch.relu(self.a(x)), torch.relu(self.b(x))
        h = a - b if self.form == "sub" else a + (-1.0) * b if self.form == "negated" else a + b
        return self.fc(torch.relu(self.c(torch.relu(h))).flatten(1))


# ------------------------------------------------------------------ subtraction
@pytest.mark.parametrize("gate_after", [False, True])
def test_a_difference_of_two_branches_is_the_sum_with_one_branch_negated(gate_after):
    """``h - c1(h)`` is read (it was refused as "adding a constant"), exactly as ``h + (-1) c1(h)``;
    c1(h) has mean zero under zero-mean weights, so the law is the sum's."""
    predictions = {form: pathstats.predict(Branches(form, gate_after), (1, 5, 5), init="he") for form in
                   ("sub", "negated", "add")}
    assert np.array_equal(predictions["sub"].grad_sq_map, predictions["negated"].grad_sq_map)
    np.testing.assert_allclose(predictions["sub"].grad_sq_map, predictions["add"].grad_sq_map, rtol=1e-12)


def test_the_sign_of_a_subtracted_branch_reaches_the_forward_law():
    """``relu(a) - relu(b)`` has mean zero where ``relu(a) + relu(b)`` has a positive one: the
    ReLU after it opens less often, and model mode sees it (as it sees ``a + (-1) b``)."""
    maps = {form: pathstats.predict(GatedDifference(form), (1, 5, 5), init="he").grad_sq_map
            for form in ("sub", "negated", "add")}
    assert np.array_equal(maps["sub"], maps["negated"])
    assert maps["sub"].sum() < 0.9 * maps["add"].sum()


def test_a_difference_of_two_branches_agrees_with_the_monte_carlo():
    """Where model mode is exact (no gate after the difference), the Monte Carlo of ``h - c1(h)``
    agrees with the prediction within 4 standard errors, and with the Monte Carlo of the sum
    (independent seeds): a difference of two paths has the same second-moment law."""
    from pathstats.verify.report import verify

    torch.manual_seed(0)
    totals = {}
    for form, seed in (("sub", 0), ("add", 1)):
        report, _, _ = verify(Branches(form), (1, 5, 5), samples=1500, seed=seed, init="he")
        totals[form] = report["grad_sq_total"]
    sub, add = totals["sub"], totals["add"]
    assert abs(sub["z"]) < 4
    assert abs(sub["estimate"] - add["estimate"]) < 4 * np.hypot(sub["stderr"], add["stderr"])
    assert sub["predicted"] == pytest.approx(add["predicted"], rel=1e-12)


def test_subtracting_a_constant_is_refused_naming_subtraction():
    class MinusOne(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x) - 1.0

    with pytest.raises(UnsupportedLayerError, match="subtract"):
        pathstats.predict(MinusOne(), (4,))


# ----------------------------------------------------------------- the commands
def test_a_bad_opnorm_exponent_names_its_flag(tmp_path, capsys):
    argv = ["train", "--arch", "fc", "--data", "digits", "--method", "opnorm", "--eps", "0.01", "--out", str(tmp_path / "r")]
    for flag in ("--opnorm-p", "--opnorm-q"):
        assert main(argv + [flag, "3"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("pathstats train: error: " + flag) and "'inf', 2 or 1" in err and "\n" not in err


def test_a_refused_train_leaves_no_run_folder(tmp_path, capsys):
    """conv6 cannot read 8 x 8 digits: refused (after the data are read), with no folder left behind."""
    out = tmp_path / "runs" / "conv6"
    assert main(["train", "--arch", "conv6", "--data", "digits", "--method", "none", "--epochs", "1", "--out", str(out)]) == 2
    assert "--size" in capsys.readouterr().err
    assert not out.exists()


def test_a_resumed_run_counts_its_progress_out_of_the_whole_run(tmp_path, capsys):
    from pathstats.robust.train import TrainConfig, train

    config = TrainConfig(arch="fc", data="digits", epochs=1, batch=16, steps_per_epoch=3, eval_n=20, train_eval_n=20)
    out = str(tmp_path / "run")
    assert train(config, out, progress=True, max_steps=2)["status"] == "interrupted"
    capsys.readouterr()
    assert train(config, out, progress=True)["status"] == "done"
    counts = re.findall(r"(\d+)/(\d+) step", capsys.readouterr().err)
    assert counts[0] == ("2", "3") and counts[-1] == ("3", "3")


def test_the_claims_table_wraps_claims_at_word_boundaries():
    """Every word of a long claim is in the terminal table, whole and in order (it was cut at
    70 characters, mid-word); the row's numbers stay on its first line."""
    from pathstats.cli.experiment import _text

    claim = ("the input-gradient l1 norm of PGD-trained nets grows as the square root of the input dimension "
             "at every strength, within the interval")
    summary = {"experiment": "fig2", "runs": 2, "done": 2, "failed": 0, "pending": 0, "ran": 2, "skipped": 0,
               "elapsed_s": 1.0, "complete": True, "files": {}, "figures": [],
               "claims": [{"claim": claim, "value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "expected": "0.5",
                           "verdict": "holds"}]}
    table = _text(summary).split("\n\n")[1].splitlines()
    words = [w for line in table[1:] for w in line.split()]
    expected = claim.split()
    assert [w for w in words if w in expected] == expected
    assert len(table) > 2 and table[1].split()[-1] == "holds"
    assert max(len(line) for line in table) < len(claim)


@pytest.mark.parametrize("argv, flag", [
    (["train", "--arch", "fc", "--data", "mnist", "--method", "none"], "--data"),
    (["train", "--arch", "fc", "--data", "cifar10:", "--method", "none"], "--data"),
    (["train", "--arch", "fc", "--data", "digits", "--method", "opnorm", "--eps", "0.01", "--opnorm-q", "0"], "--opnorm-q"),
    (["attack", "--arch", "fc", "--data", "digits", "--attack", "pgd", "--eps", "-1"], "--eps"),
    (["experiment", "fig2", "--quick", "--scale", "medium", "--dry-run"], "--quick"),
    (["predict", "--arch", "conv6", "--d", "3000"], "--d"),
])
def test_a_flag_error_names_its_flag_in_one_line(argv, flag, tmp_path, capsys):
    if argv[0] == "train":
        argv = argv + ["--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and flag in err.split("error: ", 1)[1], err
    assert not (tmp_path / "run").exists()
