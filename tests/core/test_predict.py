"""Predictions of registered architectures and user modules; the theorems they must obey."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from pathstats import nets
from pathstats import PathstatsError
from pathstats.layer_engine.algebra import ExactAlgebra
from pathstats.cli import main
from pathstats.layer_engine import backward_map
from pathstats.layer_engine.rules import AssumptionError, UnsupportedLayerError
from pathstats.prediction import loss_gradient_factor, predict
from pathstats.layer_engine.trace import read_model

SMALLEST = {"conv6": 17, "conv8": 32, "conv6-avgpool": 8, "conv6-maxpool": 8, "conv6-strided": 8, "resnet": 8,
            "resnet18": 32, "resnet18-nopool": 16, "vgg": 32}
WIDTH_OPTION = {"resnet18", "resnet18-nopool", "vgg"}  # these scale their channels by ``width``
THEORY_OK = {"conv6": 1, "conv6-strided": 1, "conv6-avgpool": 1, "fc": 1}


def _small(name):
    arch = nets.get(name)
    shape = (3, SMALLEST[name], SMALLEST[name]) if arch.image else (12,)
    if name == "fc":
        return arch.build(shape, widths=(5, 4)), shape
    return arch.build(shape, **({"width": 2} if name in WIDTH_OPTION else {"channels": 2})), shape


@pytest.mark.parametrize("name", sorted(nets.ARCHITECTURES))
def test_lemma7_total_is_exactly_one_for_every_architecture(name):
    model, shape = _small(name)
    assert backward_map(read_model(model, shape), "path_sum", ExactAlgebra()).sum() == 1


@pytest.mark.parametrize("name", sorted(THEORY_OK))
def test_theory_total_is_the_average_pooling_factor_exactly(name):
    """Theorems 5 and 11: sum_x E[(do/dx)^2] = 1/(a_1...a_n) in theory mode."""
    model, shape = _small(name)
    graph = read_model(model, shape)
    total = backward_map(graph, "theory", ExactAlgebra()).sum()
    factor = Fraction(1)
    for rule in graph.node_rules():
        if rule.category == "avgpool":
            factor /= int(rule.divisor.max())
    assert total == factor
    assert math.isclose(predict(model, shape, mode="theory").avgpool_factor, float(factor), rel_tol=1e-15)


def test_conv6_avgpool_factor_at_32_is_one_over_1024():
    p = predict("conv6-avgpool", (3, 32, 32), mode="theory")
    assert p.avgpool_factor == 1 / 1024  # 2x2, 2x2, 2x2 pools and a 4x4 global pool
    assert math.isclose(p.grad_sq_map.sum(), 1 / 1024, rel_tol=1e-12)


@pytest.mark.parametrize("name, layer", [("conv8", "AdaptiveMaxPool2d"), ("conv6-maxpool", "MaxPool2d"), ("resnet", "add")])
def test_theory_mode_refuses_layers_outside_the_assumptions(name, layer):
    model, shape = _small(name)
    with pytest.raises(AssumptionError, match=layer):
        predict(model, shape, mode="theory")


def _circular_net(pools=(), kernel=3, stride=1, channels=2, size=12):
    layers, c = [], 1
    for a in (None,) + tuple(pools):
        layers += [nn.Conv2d(c, channels, kernel, stride=stride, padding=(kernel - stride) // 2, padding_mode="circular", bias=False), nn.ReLU()]
        c = channels
        if a:
            layers.append(nn.AvgPool2d(a))
    model = nn.Sequential(*layers, nn.Flatten())
    out = math.prod(nets.base.spatial_after(model, (1, size, size)))
    return nn.Sequential(model, nn.Linear(out, 3)).eval(), (1, size, size)


@pytest.mark.parametrize("kernel, stride", [(3, 1), (2, 2), (4, 2), (3, 3)])
def test_lemma8_circular_padding_with_kernel_a_multiple_of_stride_gives_one_over_d(kernel, stride):
    model, shape = _circular_net(kernel=kernel, stride=stride)
    graph = read_model(model, shape)
    d = math.prod(shape)
    assert set(backward_map(graph, "path_sum", ExactAlgebra()).ravel()) == {Fraction(1, d)}
    assert set(backward_map(graph, "theory", ExactAlgebra()).ravel()) == {Fraction(1, d)}
    assert predict(model, shape, mode="theory").symmetric


def test_stride_two_kernel_three_breaks_symmetry():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, 2, 1, padding_mode="circular", bias=False), nn.Flatten(), nn.Linear(2 * 36, 2)).eval()
    p = predict(model, (1, 12, 12), mode="theory")
    assert not p.symmetric and p.symmetry_classes > 1
    assert any("(S) fails" in note for note in p.notes)


def test_theorem11_disjoint_average_pooling_divides_each_coordinate_by_the_pool_sizes():
    model, shape = _circular_net(pools=(2, 3))
    d = math.prod(shape)
    theory = backward_map(read_model(model, shape), "theory", ExactAlgebra())
    assert set(theory.ravel()) == {Fraction(1, d * 2 * 2 * 3 * 3)}  # 1/a^2 per pool node, a = 4 and 9: 1/(d a1 a2)
    assert predict(model, shape, mode="theory").avgpool_factor == 1 / 36


def test_fc_model_mode_equals_theory_equals_one_over_d():
    p_model, p_theory = predict("fc", (50,)), predict("fc", (50,), mode="theory")
    np.testing.assert_allclose(p_model.grad_sq_map, 1 / 50, rtol=1e-12)
    np.testing.assert_allclose(p_theory.grad_sq_map, 1 / 50, rtol=1e-12)
    assert p_model.symmetric and p_model.to_dict()["n_paths"] == {"min": str(512**3), "max": str(512**3)}


def test_init_policies_scale_model_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    he, torch_default = predict(model, (8,), init="he"), predict(model, (8,), init="torch")
    assert math.isclose(he.grad_sq_map.sum(), (2 / 8) * 8 * 0.5 * (2 / 6) * 6, rel_tol=1e-12)
    assert math.isclose(torch_default.grad_sq_map.sum(), (1 / 24) * 8 * 0.5 * (1 / 18) * 6, rel_tol=1e-12)
    mapping = predict(model, (8,), init={"1": 0.1, "3": 0.2})
    assert math.isclose(mapping.grad_sq_map.sum(), 0.1 * 8 * 0.5 * 0.2 * 6, rel_tol=1e-12)
    weights = predict(model, (8,))
    expected = model[1].weight.double().pow(2).mean().item() * 8 * 0.5 * model[3].weight.double().pow(2).mean().item() * 6
    assert math.isclose(weights.grad_sq_map.sum(), expected, rel_tol=1e-12) and weights.init.startswith("weights")


def test_nonzero_biases_are_reported():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    assert any("non-zero bias" in note for note in predict(model, (4,)).notes)


def test_loss_gradient_uses_the_uniform_softmax_factor():
    p = predict("fc", (20,), classes=4)
    assert loss_gradient_factor(4) == pytest.approx(3 / 4)
    assert p.loss_grad["l2"] == pytest.approx(math.sqrt(0.75 * p.grad_sq_map.sum()))
    assert p.loss_grad["l1_upper"] == pytest.approx(math.sqrt(0.75) * p.logit_grad["l1_upper"])
    assert p.logit_grad["l1"] == pytest.approx(math.sqrt(2 / math.pi) * p.logit_grad["l1_upper"])


@pytest.mark.parametrize("bad, error", [
    (lambda: predict(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Sigmoid()), (4,)), "Sigmoid"),
    (lambda: predict(nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 3)), (4,)), "training mode"),
    (lambda: predict(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), (5,)), "does not fit"),
    (lambda: predict("nope", (3, 32, 32)), "unknown architecture"),
    (lambda: predict("conv6", (3, 32, 32), mode="exact"), "mode must be"),
    (lambda: predict(nn.Linear(4, 3), (4,), classes=5), "3 logits"),
    (lambda: predict(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), (4,), init="xavier"), "init must be"),
])
def test_bad_predictions_are_refused_with_a_pathstats_error(bad, error):
    with pytest.raises(PathstatsError, match=error):
        bad()


def test_unsupported_layer_error_names_the_layer_and_is_a_value_error():
    with pytest.raises(UnsupportedLayerError, match="'2' \\(Sigmoid\\)") as info:
        predict(nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Sigmoid()), (4,))
    assert isinstance(info.value, ValueError)


SPEC_KEYS = {"arch", "input_shape", "d", "mode", "lemma7_total", "path_sum", "symmetric", "grad_sq", "grad_l1_upper",
             "grad_l1_gauss", "avgpool_factor", "n_paths", "loss_grad", "elapsed_s"}


def test_cli_predict_json_and_map(tmp_path, capsys):
    path = tmp_path / "map.npy"
    assert main(["predict", "--arch", "conv6", "--d", "3072", "--json", "--save-map", str(path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert SPEC_KEYS <= set(result)
    assert result["input_shape"] == [3, 32, 32] and result["d"] == 3072 and result["mode"] == "model"
    assert {"min", "mean", "max"} <= set(result["path_sum"]) and {"min", "mean", "max", "total"} <= set(result["grad_sq"])
    assert {"l1", "l2"} <= set(result["loss_grad"]) and int(result["n_paths"]["min"]) > 0
    saved = np.load(path)
    assert saved.dtype == np.float64 and saved.shape == (3, 32, 32)
    assert saved.sum() == pytest.approx(result["grad_sq"]["total"], rel=1e-12)


def test_cli_predict_table_and_shape(capsys):
    assert main(["predict", "--arch", "conv6-avgpool", "--shape", "3,16,24", "--mode", "theory"]) == 0
    out = capsys.readouterr().out
    assert "3x16x24" in out and "Lemma 7" in out and "avg-pooling factor" in out


@pytest.mark.parametrize("argv, message", [
    (["predict", "--arch", "nope", "--d", "3072"], "unknown architecture"),
    (["predict", "--arch", "conv6", "--d", "3000"], "try --d 2883"),
    (["predict", "--arch", "conv6", "--shape", "3,x"], "comma-separated"),
    (["predict", "--arch", "conv6", "--d", "12"], "cannot read inputs"),
    (["predict", "--arch", "resnet", "--d", "3072", "--mode", "theory"], "outside the paper's assumptions"),
    (["sweep", "--arch", "conv6", "--sizes", "32,a"], "comma-separated"),
])
def test_cli_refusals_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and message in err[0], err


def test_cli_archs_lists_every_architecture(capsys):
    assert main(["archs", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == set(nets.ARCHITECTURES)


def test_path_counts_beyond_64_bits_are_exact():
    p = predict("conv8", (3, 32, 32))
    counts = p.path_count_map
    assert counts.dtype == object and max(counts.ravel()) > 2**63
    # every path picks one of the 64 output channels of each of the 8 convolutions
    assert all(c % 64**8 == 0 for c in counts.ravel())


def test_sweep_of_a_globally_pooled_net_follows_theorem_11(capsys):
    """conv6-strided ends with a global average pooling over (s/8)^2 nodes: E||do/dx||^2 ~ 1/d under H5.

    Theory mode: model mode adds the paths that reflect padding folds onto one
    weight at the borders, a share of the total that shrinks with the size, so
    its slope is not exactly -1/2 (the Monte Carlo's neither)."""
    assert main(["sweep", "--arch", "conv6-strided", "--sizes", "16,32,64", "--mode", "theory", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["slopes"]["loss_l2"]["fitted"] == pytest.approx(-0.5, abs=1e-12)


def test_cli_sweep_fits_the_sqrt_d_law(tmp_path, capsys):
    figure = tmp_path / "sweep.png"
    assert main(["sweep", "--arch", "conv6", "--sizes", "32,64,128", "--json", "--figure", str(figure)]) == 0
    result = json.loads(capsys.readouterr().out)
    slopes = result["slopes"]
    assert slopes["loss_l2"]["fitted"] == pytest.approx(0, abs=1e-12)  # the total is the same at every size
    assert slopes["grad_sq_mean"]["fitted"] == pytest.approx(-1, abs=1e-12)
    assert 0.4 < slopes["loss_l1"]["fitted"] < 0.6 and slopes["loss_l1"]["theory"] == 0.5
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
