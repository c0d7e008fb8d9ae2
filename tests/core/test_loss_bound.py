"""The loss-gradient bounds of predict: each stated under the assumption that makes it hold.

At initialisation the logits are not equal, so the softmax is not uniform and the
uniform-softmax value sqrt((K-1)/K E||do/dx||^2) is exceeded by the measured
E||dL/dx||_2; the statement true at initialisation (logit gradients uncorrelated, any
softmax) is E||dL/dx||_2 < sqrt(2 E||do/dx||^2), with (K-1)/K E||do/dx||^2 below
E||dL/dx||_2^2.
"""

from __future__ import annotations

import json
import math

import numpy as np

from pathstats import nets
from pathstats.cli import main
from pathstats.prediction import predict
from pathstats.verify.montecarlo import run_monte_carlo

Z = 4.0


def _se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values)))


def test_the_uniform_softmax_value_is_not_a_bound_at_initialisation_and_the_stated_bounds_hold():
    net = nets.build("fc", (256,), widths=(256, 256))
    loss = predict(net, (256,)).loss_grad
    result = run_monte_carlo(net, (256,), 800, seed=0, batch=400)
    norm, square = result.loss_l2, result.loss_l2**2
    assert norm.mean() - Z * _se(norm) > loss["l2"]  # the uniform-softmax value: exceeded, so no bound at init
    assert norm.mean() + Z * _se(norm) < loss["any_softmax"]["l2_upper"]  # the bound for any softmax holds
    assert square.mean() + Z * _se(square) > loss["l2_sq"]  # (K-1)/K E||do/dx||^2: a lower bound
    assert result.softmax_factor.mean() - Z * _se(result.softmax_factor) > loss["factor"]  # E[F] > (K-1)/K
    l1 = result.loss_l1
    assert l1.mean() + Z * _se(l1) < loss["any_softmax"]["l1_upper"]


def test_predict_names_the_assumption_of_each_loss_bound(capsys):
    assert main(["predict", "--arch", "fc", "--d", "3072"]) == 0
    lines = capsys.readouterr().out.splitlines()
    bound = next(line for line in lines if "<= 0.94868" in line)
    assert "if the softmax is uniform" in bound and "(K-1)/K" in bound
    assert any("< 1.4142 for any softmax" in line for line in lines)
    assert main(["predict", "--arch", "fc", "--d", "3072", "--json"]) == 0
    loss = json.loads(capsys.readouterr().out)["loss_grad"]
    assert math.isclose(loss["l2"], math.sqrt(0.9)) and "uniform softmax" in loss["assumption"] and "not bounds" in loss["assumption"]
    assert math.isclose(loss["any_softmax"]["l2_upper"], math.sqrt(2)) and "any softmax" in loss["any_softmax"]["assumption"]
