"""Model mode's forward laws and gates: exact checks on small nets, Monte Carlo within 4 SE, pinned gaps.

Statistical checks use fixed seeds and tolerances of 4 standard errors computed
from the data.  Where model mode neglects something (cross terms through
pooled ReLU outputs), the test pins the measured gap and checks that the
prediction's notes say so.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pathstats import predict
from pathstats.cli.predict import _predict_text
from pathstats.layer_engine import model_map, propagate_laws
from pathstats.layer_engine.rules import AssumptionError, Note
from pathstats.nets.base import InitialisedNet, conv_bn_relu, spatial_after
from pathstats.nets.probes import Probe
from pathstats.layer_engine.trace import read_model
from pathstats.verify.compare import compare
from pathstats.verify.montecarlo import run_monte_carlo

Z_MAX = 4.0


class PostAdd(nn.Module):
    """``relu(fc2(h) + h)`` with ``h = relu(fc1(x))``: a post-add ReLU on a dense stream."""

    def __init__(self, n=4, m=6):
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(n, m, bias=False), nn.Linear(m, m, bias=False), nn.Linear(m, 2, bias=False)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return self.out(torch.relu(self.fc2(h) + h))


def test_second_relu_on_a_relu_output_passes_everything():
    """Exact: with one gate, not two, the total is 4 * (2/4) * 8 * (1/2) * (2/8) = 2."""
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.ReLU(), nn.Linear(8, 2))
    assert math.isclose(float(model_map(read_model(net, (4,), init="he")).sum()), 2.0, rel_tol=1e-9)


def test_post_add_gate_opens_with_the_orthant_probability():
    """``z = relu(g1) + g2``, equal variances: ``P(z > 0) = 1/2 + arcsin(1/sqrt 2) / (2 pi) = 5/8``."""
    graph = read_model(PostAdd(), (4,), init={"fc1": 1 / 4, "fc2": 2 / 6, "out": 1 / 6})
    gates = propagate_laws(graph).gates
    assert list(gates.values())[0] == pytest.approx(0.5, abs=1e-12)
    assert list(gates.values())[1] == pytest.approx(0.625, abs=2e-3)


def _gap(kind: str, shape=(3, 8, 8), channels=8, samples=1500, seed=1, depth=2):
    model = Probe(kind, shape, channels=channels, depth=depth).eval()
    prediction = predict(model, shape)
    total = compare(run_monte_carlo(model, shape, samples, seed=seed, loss=False), prediction)["grad_sq_total"]
    return total, prediction


def _assumption_notes(prediction) -> list:
    return [n for n in prediction.notes if "(S) fails" not in n]


@pytest.mark.parametrize("kind", ["double-relu", "maxpool", "pool-before-relu", "maxpool-overlap"])
def test_monte_carlo_agrees_within_four_standard_errors(kind):
    total, _ = _gap(kind)
    assert abs(total["z"]) < Z_MAX, total


def test_double_relu_prediction_has_no_notes():
    """A prediction without notes claims agreement (checked above)."""
    assert _assumption_notes(_gap("double-relu", samples=10)[1]) == []


def test_post_add_relu_residual_gap_is_pinned_and_noted():
    """Three post-add-ReLU blocks, 8 ch, 3x8x8: measured +3.0% +- 0.9% (N = 1500, seed 1)."""
    total, prediction = _gap("residual")
    assert abs(total["relative_error"] - 0.030) < Z_MAX * total["stderr"] / total["predicted"], total
    assert any("skip stream" in n for n in prediction.notes)
    assert all(0.5 <= p < 0.8 for p in prediction.gates.values())


def test_global_average_pooling_gap_is_pinned_and_noted():
    """Cross terms through pooled ReLU outputs: measured +19.3% +- 1.5% (8 ch, 3x8x8, N = 1500, seed 1)."""
    total, prediction = _gap("gap")
    assert abs(total["relative_error"] - 0.193) < Z_MAX * total["stderr"] / total["predicted"], total
    assert any("average of activations with a non-zero mean (ReLU" in n for n in prediction.notes)


def test_notes_are_structured_in_json_and_printed():
    prediction = predict(Probe("maxpool", (3, 8, 8), channels=4).eval(), (3, 8, 8))
    notes = prediction.to_dict()["notes"]
    assert all(set(n) == {"layer", "assumption", "effect"} for n in notes)
    assert any(n["layer"] and "max pooling" in n["assumption"] and n["effect"].startswith("measured") for n in notes)
    assert all(isinstance(n, Note) for n in prediction.notes)
    text = _predict_text(prediction)
    assert "max-pooling routing" in text and "avg-pooling factor" not in text and "note: features.3" in text


def test_factor_rows_name_what_they_are():
    text = _predict_text(predict("conv6-maxpool", (3, 16, 16)))
    assert "max-pooling routing (features.6)" in text
    assert "avg-pooling factor 1/(a1...an)" in text and "features.21: a = 4" in text  # the global average pooling


def test_theory_refusals_state_model_modes_accuracy():
    with pytest.raises(AssumptionError, match="arg-max.*measured") as info:
        predict(Probe("maxpool", (3, 8, 8), channels=2).eval(), (3, 8, 8), mode="theory")
    assert "as the real layer" not in str(info.value)
    with pytest.raises(AssumptionError, match="skip stream"):
        predict(Probe("residual", (3, 8, 8), channels=2).eval(), (3, 8, 8), mode="theory")


def test_laws_leave_the_graph_unchanged_and_are_deterministic():
    model = Probe("maxpool-overlap", (3, 8, 8), channels=4).eval()
    first, second = predict(model, (3, 8, 8)), predict(model, (3, 8, 8))
    np.testing.assert_array_equal(first.grad_sq_map, second.grad_sq_map)
    assert first.maxpool_routing == second.maxpool_routing


class SelfAdd(InitialisedNet):
    """``h + branch(h)`` where the branch carries ``h`` itself (perfectly correlated operands), then a conv block.

    ``form``: "dropout" (``h + drop(h)``, eval), "identity" (``short(h) + branch(h)``
    with ``nn.Identity`` and an empty ``nn.Sequential``), "scale" (``h + 0.5 * h``),
    "twice" (``2 * h``: the reference).
    """

    def __init__(self, form, input_shape=(3, 8, 8), classes=10, channels=8):
        super().__init__()
        self.form = form
        self.features = nn.Sequential(*conv_bn_relu(input_shape[0], channels, padding_mode="zeros"))
        self.drop, self.short, self.branch = nn.Dropout(0.3), nn.Identity(), nn.Sequential()
        self.head = nn.Sequential(*conv_bn_relu(channels, channels, padding_mode="zeros"))
        self.classifier = nn.Linear(channels * input_shape[1] * input_shape[2], classes)
        self.reset_parameters()

    def forward(self, x):
        h = self.features(x)
        if self.form == "dropout":
            h = h + self.drop(h)
        elif self.form == "identity":
            h = self.short(h) + self.branch(h)
        elif self.form == "scale":
            h = h + 0.5 * h
        else:
            h = 2 * h
        return self.classifier(torch.flatten(self.head(h), 1))


@pytest.mark.parametrize("form", ["dropout", "identity"])
def test_self_addition_is_twice_the_tensor(form):
    """Two branches that are one tensor: exactly the prediction of ``2 * h`` (gradient 2x, variance 4x)."""
    twice = predict(SelfAdd("twice").eval(), (3, 8, 8)).grad_sq_map
    np.testing.assert_allclose(predict(SelfAdd(form).eval(), (3, 8, 8)).grad_sq_map, twice, rtol=1e-12, atol=0)
    scaled = predict(SelfAdd("scale").eval(), (3, 8, 8)).grad_sq_map
    np.testing.assert_allclose(scaled, twice * (1.5 / 2) ** 2, rtol=1e-12, atol=0)


def test_self_addition_keeps_the_other_operands():
    """``x + x + y`` reads as ``2 x + y``: the repeated operand is scaled, the other one kept."""
    class Three(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.drop, self.out = nn.Linear(4, 6), nn.Linear(4, 6), nn.Dropout(), nn.Linear(6, 2)

        def forward(self, x):
            h = self.a(x)
            return self.out(h + self.drop(h) + self.b(x))

    graph = read_model(Three().eval(), (4,), init="he")
    adds = [r for r in graph.rules.values() if r is not None and r.kind == "node" and r.category == "add"]
    scales = [r for r in graph.rules.values() if r is not None and type(r).__name__ == "ScaleRule"]
    assert [r.operands for r in adds] == [["add", "b"]] and [r.model_gain for r in scales] == [4.0]


@pytest.mark.parametrize("form", ["dropout", "identity"])
def test_self_addition_agrees_with_the_monte_carlo(form):
    model = SelfAdd(form).eval()
    prediction = predict(model, (3, 8, 8))
    total = compare(run_monte_carlo(model, (3, 8, 8), 800, seed=3, loss=False), prediction)["grad_sq_total"]
    assert abs(total["z"]) < Z_MAX, total


def _tap_counts(conv: nn.Conv2d, shape: tuple) -> np.ndarray:
    """``N_k(p)``: how many outputs read input ``p`` through tap ``k`` (by torch: the gradient of the summed
    output of the layer with a one-hot kernel at ``k``), shape ``(taps,) + spatial``."""
    counts = []
    for k in range(conv.kernel_size[0] * conv.kernel_size[1]):
        probe = nn.Conv2d(1, 1, conv.kernel_size, conv.stride, conv.padding, conv.dilation, bias=False, padding_mode=conv.padding_mode)
        with torch.no_grad():
            probe.weight.zero_()
            probe.weight.view(-1)[k] = 1.0
        x = torch.zeros((1, 1) + shape[1:], dtype=torch.float64, requires_grad=True)
        probe.double()(x).sum().backward()
        counts.append(x.grad[0, 0].numpy())
    return np.stack(counts)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular", "zeros"])
@pytest.mark.parametrize("stride", [1, 2])
def test_covariance_through_a_shared_weight_is_exact_on_a_linear_pooled_net(mode, stride):
    """conv -> global average pooling -> linear: ``do/dx_p = (1/n) sum_c v_c sum_k W[c, k] N_k(p)``, so
    ``E[(do/dx_p)^2] = sigma_v^2 C sigma_w^2 / n^2 * sum_k N_k(p)^2`` exactly: paths through one tap add
    coherently (``N_k(p) = 2`` where reflect padding folds two outputs onto ``p``)."""
    shape, channels = (1, 7, 7), 4
    conv = nn.Conv2d(1, channels, 3, stride=stride, padding=1, bias=False, padding_mode=mode)
    net = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 2, bias=False)).eval()
    variances = {"0": 0.3, "3": 0.7}
    n = math.prod(spatial_after(nn.Sequential(conv), shape)[1:])
    counts = _tap_counts(conv, shape)
    expected = 0.7 * channels * 0.3 / n**2 * (counts**2).sum(axis=0)
    got = model_map(read_model(net, shape, init=variances))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_reflect_padding_before_global_pooling_agrees_with_the_monte_carlo():
    """Mechanism 1 alone: 16 input channels (the first layer's fan-in is large, so its gates barely
    correlate with its weights), reflect padding, strided blocks, global average pooling."""
    from pathstats.nets.pooled import PooledConv6

    shape = (16, 16, 16)
    model = PooledConv6(input_shape=shape, channels=16, downsampling="strided").eval()
    prediction = predict(model, shape)
    diagonal = float(model_map(read_model(model, shape, init=model.init_variances()), covariance_between_positions=False).sum())
    total = compare(run_monte_carlo(model, shape, 600, seed=5, loss=False), prediction)["grad_sq_total"]
    assert total["predicted"] > 1.2 * diagonal  # the folds matter here ...
    assert abs(total["z"]) < Z_MAX, total  # ... and the covariance recursion accounts for them
