"""verify on a module of the user's own, under each ``init`` that predict takes.

The prediction and the Monte Carlo take the same ``init``; the Monte Carlo must agree
with the prediction within 4 standard errors (fixed seeds, small nets, small N).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from pathstats.cli import main
from pathstats.errors import PathstatsError
from pathstats.verify.batched import BatchedInitialisations
from pathstats.verify.montecarlo import init_law, run_monte_carlo
from pathstats.verify.report import verify

Z_MAX = 4.0


class Mine(nn.Module):
    """A user's model: PyTorch-default layers (biases included), functional ReLU, no registry."""

    def __init__(self, channels: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.hidden = nn.Linear(channels * 6 * 6, 32)
        self.out = nn.Linear(32, 4)

    def forward(self, x):
        h = torch.relu(self.conv(x)).flatten(1)
        return self.out(torch.relu(self.hidden(h)))


SHAPE = (3, 6, 6)
INITS = {"he": "he", "torch": "torch", "weights": "weights", "mapping": {"conv": 0.1, "hidden": 0.01, "out": 0.05}}


def _mine() -> nn.Module:
    torch.manual_seed(0)
    net = Mine()
    with torch.no_grad():  # a scale of its own, so that "weights" is neither He nor PyTorch's default
        net.conv.weight.mul_(3.0)
    return net


@pytest.mark.parametrize("init", sorted(INITS))
def test_monte_carlo_agrees_with_the_prediction_on_a_users_module(init):
    report, result, prediction = verify(_mine(), SHAPE, samples=300, seed=3, init=INITS[init])
    total = report["grad_sq_total"]
    assert report["arch"] == "Mine" and report["init"] == prediction.init and result.samples == 300
    assert total["stderr"] > 0 and abs(total["z"]) < Z_MAX, total
    assert report["map_fit"]["p_value"] > 1e-4, report["map_fit"]


def test_weights_are_redrawn_at_the_present_scale():
    net = _mine()
    law = init_law(net, "weights")
    expected = {name: float(m.weight.detach().double().pow(2).mean()) for name, m in net.named_children()}
    assert law.variances == pytest.approx(expected, rel=1e-12)
    assert law.variances["conv"] == pytest.approx(9 * init_law(Mine(), "weights").variances["conv"], rel=0.3)


def test_torch_init_draws_each_layers_own_reset_parameters():
    """A subclass that draws He-normal weights in its reset_parameters: the torch law follows
    the subclass (its total matches the He law's), and leaves the caller's RNG alone."""

    class HeLinear(nn.Linear):
        def reset_parameters(self):
            nn.init.normal_(self.weight, 0.0, (2.0 / self.in_features) ** 0.5)
            nn.init.zeros_(self.bias)

    net = nn.Sequential(HeLinear(12, 24), nn.ReLU(), HeLinear(24, 3))
    state = torch.get_rng_state()
    own = run_monte_carlo(net, (12,), 400, init="torch", seed=1, loss=False)
    assert torch.equal(state, torch.get_rng_state())
    he = run_monte_carlo(net, (12,), 400, init="he", seed=2, loss=False)
    a, b = own.total(), he.total()
    assert abs(a.value - b.value) < Z_MAX * np.hypot(a.stderr, b.stderr), (a, b)
    stock = run_monte_carlo(nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 3)), (12,), 400, init="torch", seed=1,
                            loss=False).total()
    assert stock.value < a.value / 3  # PyTorch's default variance is 1/(3 fan_in), He's 2/fan_in


def test_batched_biases_equal_the_module_one_initialisation_at_a_time():
    net = Mine(channels=3).eval()
    gen = torch.Generator().manual_seed(5)
    layers = dict(net.named_children())
    weights = {name: torch.randn((3,) + m.weight.shape, generator=gen) for name, m in layers.items()}
    biases = {name: torch.randn((3,) + m.bias.shape, generator=gen) for name, m in layers.items()}
    x = torch.randn((3,) + SHAPE, generator=gen)
    out = BatchedInitialisations(net).run_batch(weights, x, biases)
    for b in range(3):
        with torch.no_grad():
            for name, m in layers.items():
                m.weight.copy_(weights[name][b])
                m.bias.copy_(biases[name][b])
            torch.testing.assert_close(out[b], net(x[b : b + 1])[0], rtol=1e-5, atol=1e-5)


def test_the_users_module_is_left_as_it_was():
    net = _mine().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    verify(net, SHAPE, samples=20, seed=0, init="torch")
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("init, message", [
    ("xavier", r"^init must be None, 'he', 'torch', 'weights' or a mapping, not 'xavier'$"),
    ({"conv": 0.1}, r"^init mapping has no variance for weight layer 'hidden'"),
])
def test_a_bad_init_is_refused_in_one_line_before_the_monte_carlo(init, message):
    with pytest.raises(PathstatsError, match=message) as caught:
        verify(_mine(), SHAPE, samples=20, init=init)
    assert "\n" not in str(caught.value)
    with pytest.raises(PathstatsError, match=message):
        run_monte_carlo(_mine(), SHAPE, 20, init=init)


def test_verify_command_takes_init(capsys):
    assert main(["verify", "--arch", "fc", "--d", "24", "--samples", "40", "--init", "torch", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["init"].startswith("torch") and "reset_parameters" in report["draws"]
    assert "init 'torch'" in report["estimator"]  # nothing integrated: uniform weights, non-zero biases
    with pytest.raises(SystemExit) as exit_:
        main(["verify", "--arch", "fc", "--d", "24", "--init", "xavier"])
    assert exit_.value.code == 2
    assert "invalid choice: 'xavier'" in capsys.readouterr().err


def test_a_sweep_records_its_init_and_resumes_only_with_it():
    from pathstats.errors import InvalidArgumentError
    from pathstats.verify.scaling import resumable_rows, verify_sweep

    shapes = [(16,), (32,)]
    data = verify_sweep("fc", shapes, samples=20, init="torch")
    assert data["options"]["init"] == "torch"
    assert len(resumable_rows(data, "fc", shapes, 20, "cpu", init="torch")) == 2
    with pytest.raises(InvalidArgumentError, match="another options"):
        resumable_rows(data, "fc", shapes, 20, "cpu")  # a sweep of the declared init must not reuse these rows


class OwnWeight(nn.Module):
    """A custom block that keeps its own weight and calls F.linear: predict reads it as a layer."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 16) / 4)

    def forward(self, x):
        return torch.nn.functional.linear(x, self.weight)


@pytest.mark.parametrize("init", ["he", "torch", "weights"])
def test_a_weight_read_by_f_linear_in_a_custom_block_is_drawn_too(init):
    net = nn.Sequential(nn.Linear(12, 16), nn.ReLU(), OwnWeight())
    report, result, _ = verify(net, (12,), samples=300, seed=4, init=init)
    assert set(init_law(net, init).variances or {"0": 0, "2": 0}) == {"0", "2"}
    assert abs(report["grad_sq_total"]["z"]) < Z_MAX, report["grad_sq_total"]
