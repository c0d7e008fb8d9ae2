"""Monte Carlo against the model-mode prediction: fixed seeds, tolerances from the data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers.batched_check import assert_batched_equals_module
from pathstats import nets
from pathstats.nets.base import InitialisedNet, conv_bn_relu, spatial_after
from pathstats.cli import main
from pathstats.prediction import predict
from pathstats.verify.compare import compare
from pathstats.verify.batched import BatchedInitialisations
from pathstats.stats import Estimate, loglog_slope
from pathstats.verify.montecarlo import run_monte_carlo, sample_gradients

Z_MAX = 4.0  # |z| below 4 standard errors: a false alarm has probability 6e-5 per check


class SmallNet(InitialisedNet):
    """Conv blocks with a chosen padding, optional disjoint average pooling or residual block, dense head."""

    def __init__(self, input_shape, padding_mode="zeros", pool=None, residual=False, relu=True, classes=5, channels=4):
        super().__init__()
        layers = conv_bn_relu(input_shape[0], channels, padding_mode=padding_mode)
        if not relu:
            layers = layers[:1]
        if pool == "input":  # averages inputs: no gate inside a window, so H5 holds
            layers.insert(0, nn.AvgPool2d(2))
        elif pool == "features":  # averages ReLU outputs of one kernel: their gates correlate (H5 fails)
            layers.append(nn.AvgPool2d(2))
        self.body = nn.Sequential(*layers)
        self.residual = residual  # None, "linear" (conv branch) or "relu" (conv -> ReLU branch)
        self.branch = nn.Conv2d(channels, channels, 3, padding=1, bias=False, padding_mode=padding_mode) if residual else None
        features = math.prod(spatial_after(self.body, input_shape))
        self.classifier = nn.Linear(features, classes)
        self.reset_parameters()

    def forward(self, x):
        h = self.body(x)
        if self.residual == "linear":
            h = self.branch(h) + h
        elif self.residual == "relu":
            h = torch.relu(self.branch(h)) + h
        return self.classifier(torch.flatten(h, 1))


CASES = {
    "fc": lambda: (nets.build("fc", (24,), widths=(16, 16)), (24,)),
    "conv-zeros": lambda: (SmallNet((2, 6, 6), "zeros").eval(), (2, 6, 6)),
    "conv-circular": lambda: (SmallNet((2, 6, 6), "circular").eval(), (2, 6, 6)),
    "conv-reflect": lambda: (SmallNet((2, 6, 6), "reflect").eval(), (2, 6, 6)),
    "disjoint-avgpool": lambda: (SmallNet((2, 8, 8), "circular", pool="input").eval(), (2, 8, 8)),
    "residual": lambda: (SmallNet((2, 6, 6), "zeros", residual="linear").eval(), (2, 6, 6)),
    "conv6-small": lambda: (nets.build("conv6", (3, 17, 17), channels=4), (3, 17, 17)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_total_matches_model_mode_within_4_standard_errors(case):
    model, shape = CASES[case]()
    result = run_monte_carlo(model, shape, 400, seed=7, batch=100)
    report = compare(result, predict(model, shape))
    total = report["grad_sq_total"]
    assert total["stderr"] > 0 and total["samples"] == 400
    assert abs(total["z"]) < Z_MAX, total


# Where H5 fails, the model-mode prediction misses the cross terms between paths; the
# gap is a finding, measured at high N and pinned here, never absorbed into a tolerance.
RECORDED_GAPS = {
    # a ReLU inside the residual branch: its gate correlates with the branch weights
    "residual-relu-branch": (lambda: (SmallNet((2, 6, 6), "zeros", residual="relu").eval(), (2, 6, 6)), 0.033),
}


def test_pooled_relu_outputs_of_the_first_layer_are_exact():
    """Pooled ReLU outputs of one kernel: the gates correlate with the shared first-layer weights.
    Once a recorded gap (+2.7%, z > 4 at this N); model mode now treats the first layer's gate-weight
    correlation exactly (the wedge moment), and the prediction agrees with the Monte Carlo."""
    model, shape = SmallNet((2, 6, 6), "circular", pool="features").eval(), (2, 6, 6)
    total = compare(run_monte_carlo(model, shape, 6000, seed=123, batch=500, loss=False), predict(model, shape))["grad_sq_total"]
    assert abs(total["z"]) < Z_MAX, total


@pytest.mark.parametrize("case", sorted(RECORDED_GAPS))
def test_recorded_gaps_where_h5_fails(case):
    build, gap = RECORDED_GAPS[case]
    model, shape = build()
    total = compare(run_monte_carlo(model, shape, 6000, seed=123, batch=500, loss=False), predict(model, shape))["grad_sq_total"]
    assert total["z"] > 4  # the prediction is too low, beyond the statistics
    assert abs(total["relative_error"] - gap) < 4 * total["stderr"] / total["predicted"]  # and by the recorded amount


def test_linear_net_is_exact_and_jacobians_are_the_baselines():
    """No ReLU: the gradient is a product of Gaussian weights, and the prediction is exact."""
    model, shape = SmallNet((1, 5, 5), "circular", relu=False).eval(), (1, 5, 5)
    result = run_monte_carlo(model, shape, 400, seed=3, batch=100)
    total = compare(result, predict(model, shape))["grad_sq_total"]
    assert abs(total["z"]) < Z_MAX
    # the batched jacobian equals one autograd.grad per logit with the same weights
    gen = torch.Generator().manual_seed(0)
    weights = {name: torch.randn((2,) + m.weight.shape, generator=gen) for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    inputs = torch.randn((2,) + shape, generator=gen)
    classes = model.classifier.out_features
    every_logit = lambda out: torch.eye(classes).unsqueeze(1).expand(classes, out.shape[0], classes)  # noqa: E731
    jac, logits = sample_gradients(BatchedInitialisations(model), weights, inputs, every_logit)
    for b in range(2):
        with torch.no_grad():
            for name, value in weights.items():
                model.get_submodule(name).weight.copy_(value[b])
        x = inputs[b : b + 1].clone().requires_grad_(True)
        out = model(x)
        for k in range(out.shape[1]):
            (grad,) = torch.autograd.grad(out[0, k], x, retain_graph=True)
            torch.testing.assert_close(jac[b, k], grad[0])
        torch.testing.assert_close(logits[b], out[0].detach())


@pytest.mark.parametrize("case", ["conv-reflect", "residual", "disjoint-avgpool", "fc"])
def test_batched_initialisations_equal_the_module_one_by_one(case):
    assert_batched_equals_module(*CASES[case]())


def test_skipping_the_loss_gradient_keeps_the_logit_samples():
    model, shape = CASES["conv-zeros"]()
    full, logit_only = run_monte_carlo(model, shape, 20, seed=2, batch=8), run_monte_carlo(model, shape, 20, seed=2, batch=8, loss=False)
    np.testing.assert_array_equal(full.grad_sq_samples, logit_only.grad_sq_samples)
    assert logit_only.loss_l1 is None and "loss_grad_l1" not in compare(logit_only, predict(model, shape))


def test_runs_are_deterministic_for_a_seed():
    model, shape = CASES["conv-zeros"]()
    first, second = run_monte_carlo(model, shape, 20, seed=5, batch=8), run_monte_carlo(model, shape, 20, seed=5, batch=8)
    np.testing.assert_array_equal(first.grad_sq_samples, second.grad_sq_samples)
    assert not np.array_equal(first.grad_sq_samples, run_monte_carlo(model, shape, 20, seed=6, batch=8).grad_sq_samples)


def test_standard_error_is_the_sample_standard_deviation_over_root_n():
    values = np.array([1.0, 2.0, 4.0, 7.0])
    estimate = Estimate.of(values)
    assert estimate.value == 3.5 and estimate.stderr == pytest.approx(values.std(ddof=1) / 2)
    assert estimate.z(3.0) == pytest.approx(0.5 / estimate.stderr)


def test_slope_fit_recovers_a_known_slope():
    d = np.array([3072, 12288, 49152, 196608])
    rng = np.random.default_rng(0)
    assert loglog_slope(d, 3 * d**0.5).value == pytest.approx(0.5, abs=1e-12)
    noisy = 3 * d**0.5 * np.exp(rng.normal(0, 0.01, d.size))
    assert abs(loglog_slope(d, noisy).value - 0.5) < 0.05


def test_map_fit_rejects_a_wrong_map_and_accepts_the_right_one():
    model, shape = CASES["conv-zeros"]()
    result = run_monte_carlo(model, shape, 400, seed=11, batch=100)
    right = predict(model, shape)
    assert compare(result, right)["map_fit"]["p_value"] > 1e-4
    wrong = predict(model, shape)
    wrong.grad_sq_map = np.full(shape, wrong.grad_sq_map.mean())  # the Lemma 8 answer, wrong with zero padding
    assert compare(result, wrong)["map_fit"]["p_value"] < 1e-4


def test_cli_verify_json_follows_the_spec(tmp_path, capsys):
    assert main(["verify", "--arch", "fc", "--d", "16", "--samples", "40", "--json", "--out", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ["arch", "input_shape", "samples", "device", "elapsed_s"]:
        assert key in report
    assert {"estimate", "stderr", "predicted", "z"} <= set(report["grad_sq_total"])
    assert {"statistic", "dof", "p_value"} <= set(report["map_fit"])
    for key in ["logit_grad_l1", "loss_grad_l1", "loss_grad_l2"]:
        assert {"estimate", "stderr", "predicted"} <= set(report[key])
    assert json.loads((tmp_path / "verify.json").read_text())["samples"] == 40
    assert (tmp_path / "maps.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_verify_refuses_cuda_without_a_gpu_too_few_samples_and_empty_batches(capsys):
    if not torch.cuda.is_available():
        assert main(["verify", "--arch", "fc", "--d", "16", "--samples", "20", "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    assert main(["verify", "--arch", "fc", "--d", "16", "--samples", "3"]) == 2
    assert main(["verify", "--arch", "fc", "--d", "16", "--samples", "20", "--batch", "0"]) == 2
    assert "--batch must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("pads", [(1, 1, 1, 1), (1, 2, 2, 1), (0, 2, 1, 0)])
@pytest.mark.parametrize("channels_inner", [False, True])
def test_layout_keeping_padding_equals_f_pad_with_its_gradient(mode, pads, channels_inner):
    from pathstats.verify.batched import _pad

    x = torch.randn(3, 4, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    if channels_inner:  # the (H, W, B, C) memory order of grouped activations
        x = x.permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1)
    ours, reference = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    padded, expected = _pad(ours, pads, mode), torch.nn.functional.pad(reference, pads, mode=mode)
    assert torch.equal(padded, expected)
    cotangent = torch.randn_like(expected)
    torch.testing.assert_close(torch.autograd.grad(padded, ours, cotangent)[0], torch.autograd.grad(expected, reference, cotangent)[0],
                               rtol=0, atol=1e-12)  # sums of up to 4 float64 terms in another order


def test_frozen_batchnorm_equals_eval_batchnorm_and_keeps_the_layout():
    from pathstats.verify.batched import _frozen_batchnorm

    gen = torch.Generator().manual_seed(0)
    norm = nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        for tensor in (norm.weight, norm.bias, norm.running_mean):
            tensor.copy_(torch.randn(4, generator=gen))
        norm.running_var.copy_(torch.rand(4, generator=gen) + 0.5)
    x = torch.randn(3, 4, 5, 5, generator=gen).permute(2, 3, 0, 1).contiguous().permute(2, 3, 0, 1)
    out = _frozen_batchnorm(norm, x)
    torch.testing.assert_close(out, norm(x.contiguous()))
    assert out.stride() == x.stride()
